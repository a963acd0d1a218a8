"""Evaluator accuracy of generated images: per class, and over training.

`class_sampler` draws a seeded stream of images per class, so that scores
computed during training (`keras_mergan.run.recorder.RunRecorder`) and by
`keras-mergan evaluate` agree; `read_accuracy_curve` reads them back from a
run folder.
"""

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from keras_mergan.run_folder import ACCURACY_CURVE, finished_tasks, read_task_metrics

CURVE_FIELDS = ("iteration", "task", "class", "accuracy")


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
    return generated_scores(gan, evaluator, classes, n_per_class, seed)[0]


def generated_scores(
    gan, evaluator, classes: Sequence[int], n_per_class: int, seed: int = 0
) -> tuple[dict[int, float], dict[int, float]]:
    """`(accuracy, confident share)` of `n_per_class` generated images per class
    (`Evaluator.scores_per_class`)."""
    return evaluator.scores_per_class(
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
    ends = task_end_iterations(run_dir)
    for number in finished_tasks(run_dir):
        metrics = read_task_metrics(run_dir, number)
        for label, accuracy in metrics.get("accuracy", {}).items():
            points[ends[number], int(label)] = (number, float(accuracy))
    for row in read_curve_rows(run_dir / ACCURACY_CURVE):
        key = int(row["iteration"]), int(row["class"])
        points[key] = (int(row["task"]), float(row["accuracy"]))
    return [
        {"iteration": i, "task": task, "class": label, "accuracy": accuracy}
        for (i, label), (task, accuracy) in sorted(points.items())
    ]


def task_end_iterations(run_dir: str | os.PathLike) -> dict[int, int]:
    """The iteration of the whole run at which each finished task ended.

    Tasks may differ in length (an adaptive budget), so this adds up the
    iterations each one used.
    """
    ends, total = {}, 0
    for number in finished_tasks(run_dir):
        total += int(read_task_metrics(run_dir, number)["iterations"])
        ends[number] = total
    return ends


def read_curve_rows(path: Path) -> list[dict]:
    """The rows of an accuracy-curve CSV file; none if it does not exist."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
