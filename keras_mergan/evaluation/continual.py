"""The task-by-class accuracy matrix and the continual-learning summaries.

After task ``t`` the evaluator's accuracy on the generated images of every
seen class ``c`` gives one entry ``R[t, c]`` of the accuracy matrix; classes
not yet seen are NaN. Columns are named by class and kept in the order the
classes were learned, so that runs trained in different class orders can be
compared class by class. From the matrix (``T`` tasks, ``C`` seen classes):

- average accuracy after task ``t``: the mean of ``R[t, :]`` over the
  classes seen by then (MeRGAN's Table 1 metric);
- average incremental accuracy (Rebuffi et al., 2017): the mean of the
  average accuracies after each task;
- forgetting of class ``c`` (Chaudhry et al., 2018): the best value of
  ``R[t, c]`` before the last task minus the last value, for the classes
  learned before the last task;
- backward transfer (Lopez-Paz and Ranzato, 2017), per class: the mean over
  those classes of the last value minus the value right after the class was
  learned (negative when learning later tasks hurts earlier ones).

Rows are the tasks given (an evaluation of tasks 5 and 10 only has two
rows): "before the last task" means in those rows. Numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AccuracyMatrix",
    "average_accuracy",
    "average_incremental_accuracy",
    "backward_transfer",
    "class_forgetting",
    "summarize",
]


@dataclass(frozen=True)
class AccuracyMatrix:
    """Accuracy ``values[t, j]`` of class ``classes[j]`` after task ``tasks[t]``.

    NaN where the class was not seen yet. Classes are named (a class order
    permutes which class a column holds, not what it is called) and come in
    the order they were learned.

    Example:
        >>> rows = [
        ...     {"task": 1, "accuracy": {"3": 1.0}},
        ...     {"task": 2, "accuracy": {"3": 0.5, "1": 0.9}},
        ... ]
        >>> matrix = AccuracyMatrix.from_rows(rows, [str(c) for c in range(10)])
        >>> matrix.classes, matrix.values.tolist()
        (('3', '1'), [[1.0, nan], [0.5, 0.9]])
    """

    tasks: tuple[int, ...]
    classes: tuple[str, ...]
    values: np.ndarray

    def __post_init__(self):
        shape = (len(self.tasks), len(self.classes))
        if np.shape(self.values) != shape:
            raise ValueError(f"values of shape {np.shape(self.values)}, need {shape}")

    @classmethod
    def from_rows(
        cls, rows: Sequence[dict], class_names: Sequence[str]
    ) -> AccuracyMatrix:
        """From per-task ``{"task", "accuracy": {class index: value}}`` rows.

        The rows of ``metrics.json`` and of ``evaluation.json`` both have
        this form; rows without ``accuracy`` (LT-GANs) are left out.
        """
        scored = sorted((r for r in rows if r.get("accuracy")), key=lambda r: r["task"])
        order: list[str] = []
        for row in scored:
            order += [key for key in row["accuracy"] if key not in order]
        values = np.full((len(scored), len(order)), np.nan)
        for t, row in enumerate(scored):
            for key, value in row["accuracy"].items():
                values[t, order.index(key)] = float(value)
        return cls(
            tuple(int(row["task"]) for row in scored),
            tuple(str(class_names[int(key)]) for key in order),
            values,
        )

    def to_dict(self) -> dict:
        """JSON-able: ``tasks``, ``classes`` and ``values`` (None for NaN)."""
        return {
            "tasks": list(self.tasks),
            "classes": list(self.classes),
            "values": [
                [None if np.isnan(v) else float(v) for v in row] for row in self.values
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> AccuracyMatrix:
        """The inverse of `to_dict`."""
        values = [[np.nan if v is None else v for v in row] for row in data["values"]]
        return cls(
            tuple(data["tasks"]),
            tuple(data["classes"]),
            np.array(values, float).reshape(len(data["tasks"]), len(data["classes"])),
        )


def average_accuracy(values: np.ndarray) -> np.ndarray:
    """Mean accuracy over the seen (non-NaN) classes after each task ``[T]``.

    Example:
        >>> average_accuracy(np.array([[1.0, np.nan], [0.5, 0.9]])).tolist()
        [1.0, 0.7]
    """
    values = np.asarray(values, float)
    if np.isnan(values).all(axis=1).any():
        raise ValueError("every task needs at least one seen class")
    return np.nanmean(values, axis=1)


def average_incremental_accuracy(values: np.ndarray) -> float:
    """Mean over tasks of the average accuracy after each task.

    Example:
        >>> average_incremental_accuracy(np.array([[1.0, np.nan], [0.5, 0.9]]))
        0.85
    """
    return float(np.mean(average_accuracy(values)))


def _first_seen(values: np.ndarray) -> np.ndarray:
    """Row index at which each class (column) is first seen."""
    seen = ~np.isnan(values)
    if not seen.any(axis=0).all():
        raise ValueError("every class needs at least one value")
    return np.argmax(seen, axis=0)


def class_forgetting(values: np.ndarray) -> np.ndarray:
    """Best value before the last task minus the last one, per class ``[C]``.

    NaN for the classes first seen in the last task (nothing to forget yet).

    Example:
        >>> class_forgetting(np.array([[1.0, np.nan], [0.5, 0.9]])).tolist()
        [0.5, nan]
    """
    values = np.asarray(values, float)
    earlier = _first_seen(values) < len(values) - 1
    best = np.full(values.shape[1], np.nan)
    if earlier.any():
        best[earlier] = np.nanmax(values[:-1, earlier], axis=0)
    return best - values[-1]


def backward_transfer(values: np.ndarray) -> float | None:
    """Mean over earlier classes of the last value minus that when learned.

    None when every class was learned in the last task.

    Example:
        >>> values = np.array([[0.8, np.nan], [0.9, 0.9], [0.6, 0.7]])
        >>> round(backward_transfer(values), 6)
        -0.2
    """
    values = np.asarray(values, float)
    first = _first_seen(values)
    earlier = np.flatnonzero(first < len(values) - 1)
    if not len(earlier):
        return None
    learned = values[first[earlier], earlier]
    return float(np.mean(values[-1, earlier] - learned))


def summarize(matrix: AccuracyMatrix) -> dict:
    """The summaries of a matrix, JSON-able.

    ``average_accuracy`` (by task), ``average_incremental_accuracy``,
    ``forgetting`` (by class, classes learned before the last task),
    ``mean_forgetting`` (None without such a class) and
    ``backward_transfer``.

    Example:
        >>> values = np.array([[1.0, np.nan], [0.5, 0.9]])
        >>> matrix = AccuracyMatrix((1, 2), ("0", "1"), values)
        >>> summarize(matrix)["forgetting"]
        {'0': 0.5}
    """
    forgetting = class_forgetting(matrix.values)
    kept = ~np.isnan(forgetting)
    return {
        "average_accuracy": {
            str(task): float(value)
            for task, value in zip(
                matrix.tasks, average_accuracy(matrix.values), strict=True
            )
        },
        "average_incremental_accuracy": average_incremental_accuracy(matrix.values),
        "forgetting": {
            name: float(value)
            for name, value, keep in zip(matrix.classes, forgetting, kept, strict=True)
            if keep
        },
        "mean_forgetting": float(np.mean(forgetting[kept])) if kept.any() else None,
        "backward_transfer": backward_transfer(matrix.values),
    }
