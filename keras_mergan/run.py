"""Per-task artifacts of a run: checkpoint, sample grid and metrics."""

import csv
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from keras_mergan.run_folder import (
    GRID_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RUN_INFO,
    atomic_open,
    finished_tasks,
    read_task_metrics,
    save_model,
    task_dir,
    write_json,
)
from keras_mergan.sampling import fixed_latents, sample_grid, save_grid
from keras_mergan.tasks import TaskStream

#: Accuracy per seen class every `eval_every` iterations (`RunRecorder`).
ACCURACY_CURVE = "accuracy_curve.csv"
_CURVE_FIELDS = ("iteration", "task", "class", "accuracy")


def class_sampler(gan, seed: int = 0) -> Callable[[int, int], np.ndarray]:
    """`generate(label, n)`: `n` images of class `label` from one seeded z stream.

    The same seed and the same sequence of calls give the same images, so
    scores computed during training and by `keras-mergan evaluate` agree.
    """
    rng = np.random.default_rng(seed)

    def generate(label: int, n: int) -> np.ndarray:
        z = rng.standard_normal((n, gan.latent_dim)).astype("float32")
        return np.asarray(gan.generate(z, np.full((n,), label, "int32")))

    return generate


def generated_accuracy(
    gan, evaluator, classes: Sequence[int], n_per_class: int, seed: int = 0
) -> dict[int, float]:
    """Evaluator accuracy of `n_per_class` generated images per class."""
    return evaluator.accuracy_per_class(
        class_sampler(gan, seed), classes, n_per_class=n_per_class
    )


def read_accuracy_curve(run_dir: str | os.PathLike) -> list[dict]:
    """Accuracy per class over training: `{iteration, task, class, accuracy}` rows.

    Rows come from `accuracy_curve.csv` (written every `eval_every`
    iterations by `RunRecorder`) and from the task ends' `metrics.json`,
    sorted by iteration then class; a run trained without `eval_every` has
    only the task-end points.
    """
    run_dir = Path(run_dir)
    points = {}
    for number in finished_tasks(run_dir):
        metrics = read_task_metrics(run_dir, number)
        iteration = number * metrics["iterations"]
        for label, accuracy in metrics.get("accuracy", {}).items():
            points[iteration, int(label)] = (number, float(accuracy))
    for row in _read_csv(run_dir / ACCURACY_CURVE):
        key = int(row["iteration"]), int(row["class"])
        points[key] = (int(row["task"]), float(row["accuracy"]))
    return [
        {"iteration": i, "task": task, "class": label, "accuracy": accuracy}
        for (i, label), (task, accuracy) in sorted(points.items())
    ]


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class RunRecorder(keras.callbacks.Callback):
    """Writes every task's `gan.keras`, `grid.png` and `metrics.json`.

    The run folder gets `run.json` (what was trained, on what) at the start
    and one `metrics.csv` row per task. Files are written atomically, so a
    crash leaves the last finished task's files whole. With `eval_every`,
    `accuracy_curve.csv` also gets the accuracy of every seen class every
    `eval_every` iterations and at each task end (forgetting curves); rows
    past the point a resumed run continues from are dropped.

    Args:
        run_dir: the run's folder.
        stream: the `TaskStream` being trained on.
        run_info: JSON-able facts about the run for `run.json`.
        evaluator: scores generated images per seen class, or None.
        eval_samples: generated images per class for the evaluator.
        grid_columns: latent vectors (columns) of the sample grid.
        seed: seed of the grid's fixed z and of the evaluation samples.
        eval_every: iterations between two evaluations inside a task (0:
            only at task ends); needs an evaluator.

    Example:

    >>> # model.fit(stream, epochs=stream.num_tasks, steps_per_epoch=...,
    >>> #           callbacks=[TaskSequence(stream), RunRecorder("run", stream, {})])
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        stream: TaskStream,
        run_info: dict,
        evaluator=None,
        eval_samples: int = 1000,
        grid_columns: int = 8,
        seed: int = 0,
        eval_every: int = 0,
    ):
        super().__init__()
        if eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {eval_every}")
        if eval_every and evaluator is None:
            raise ValueError("eval_every needs an evaluator")
        self.run_dir = Path(run_dir)
        self.stream = stream
        self.run_info = run_info
        self.evaluator = evaluator
        self.eval_samples = eval_samples
        self.grid_columns = grid_columns
        self.seed = seed
        self.eval_every = int(eval_every)

    def on_train_begin(self, logs=None):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / RUN_INFO, self.run_info)
        self._z = fixed_latents(self.grid_columns, self.model.latent_dim, self.seed)
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.time()
        self._task = epoch
        # a fit resumed part-way through a task runs only its remaining steps
        self._steps_before = self.stream.steps_per_task - self.params.get(
            "steps", self.stream.steps_per_task
        )
        if self._first_epoch:
            self._first_epoch = False
            self._drop_curve_after(
                epoch * self.stream.steps_per_task + self._steps_before
            )

    def on_train_batch_end(self, batch, logs=None):
        step = self._steps_before + batch + 1
        if (
            self.eval_every
            and step % self.eval_every == 0
            and step < self.stream.steps_per_task
        ):
            seen = self.stream.seen_classes(self._task)
            accuracy = generated_accuracy(
                self.model, self.evaluator, seen, self.eval_samples, self.seed
            )
            self._append_curve(step, accuracy)

    def on_epoch_end(self, epoch, logs=None):
        number = epoch + 1
        folder = task_dir(self.run_dir, number)
        seen = self.stream.seen_classes(epoch)
        metrics = {
            "task": number,
            "task_classes": self.stream.tasks[epoch],
            "seen_classes": seen,
            "iterations": self.stream.steps_per_task,
            "seconds": round(time.time() - self._started, 2),
            "losses": {k: float(v) for k, v in (logs or {}).items()},
        }
        if self.evaluator is not None:
            accuracy = generated_accuracy(
                self.model, self.evaluator, seen, self.eval_samples, self.seed
            )
            metrics["accuracy"] = {str(c): a for c, a in accuracy.items()}
            metrics["mean_accuracy"] = float(np.mean(list(accuracy.values())))
            if self.eval_every:
                self._append_curve(self.stream.steps_per_task, accuracy)
        save_model(self.model, folder / MODEL_FILE)
        names = self.run_info.get("class_names")
        save_grid(
            sample_grid(self.model, seen, self._z),
            folder / GRID_FILE,
            row_labels=[names[c] for c in seen] if names else None,
        )
        write_json(folder / METRICS_FILE, metrics)
        self._append_csv(metrics)

    def _append_csv(self, metrics):
        path = self.run_dir / "metrics.csv"
        row = {k: metrics[k] for k in ("task", "iterations", "seconds")}
        row["seen_classes"] = " ".join(map(str, metrics["seen_classes"]))
        row["mean_accuracy"] = metrics.get("mean_accuracy", "")
        row.update(metrics["losses"])
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _append_curve(self, step: int, accuracy: dict[int, float]) -> None:
        path = self.run_dir / ACCURACY_CURVE
        iteration = self._task * self.stream.steps_per_task + step
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(_CURVE_FIELDS)
            for label, value in accuracy.items():
                writer.writerow([iteration, self._task + 1, label, f"{value:.6g}"])

    def _drop_curve_after(self, iteration: int) -> None:
        path = self.run_dir / ACCURACY_CURVE
        rows = _read_csv(path)
        kept = [row for row in rows if int(row["iteration"]) <= iteration]
        if len(kept) == len(rows):
            return
        with atomic_open(path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=_CURVE_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
