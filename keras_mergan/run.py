"""Per-task artifacts of a run: checkpoint, sample grid and metrics."""

import csv
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from keras_mergan.sampling import fixed_latents, sample_grid, save_grid
from keras_mergan.tasks import TaskStream


def task_dir(run_dir: str | os.PathLike, task_number: int) -> Path:
    """Folder of task `task_number` (1-based) inside a run directory."""
    return Path(run_dir) / f"task_{task_number:02d}"


def write_json(path: str | os.PathLike, data) -> Path:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as tmp:
        json.dump(data, tmp, indent=2)
    os.replace(tmp.name, path)
    return path


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """`model.save` to a temp name, then rename: never a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return path


def generated_accuracy(
    gan, evaluator, classes: Sequence[int], n_per_class: int, seed: int = 0
) -> dict[int, float]:
    """Evaluator accuracy of `n_per_class` generated images per class."""
    rng = np.random.default_rng(seed)

    def generate(label, n):
        z = rng.standard_normal((n, gan.latent_dim)).astype("float32")
        return gan.generate(z, np.full((n,), label, "int32"))

    return evaluator.accuracy_per_class(generate, classes, n_per_class=n_per_class)


class RunRecorder(keras.callbacks.Callback):
    """Writes every task's `gan.keras`, `grid.png` and `metrics.json`.

    The run folder gets `run.json` (what was trained, on what) at the start
    and one `metrics.csv` row per task. Files are written atomically, so a
    crash leaves the last finished task's files whole.

    Args:
        run_dir: the run's folder.
        stream: the `TaskStream` being trained on.
        run_info: JSON-able facts about the run for `run.json`.
        evaluator: scores generated images per seen class, or None.
        eval_samples: generated images per class for the evaluator.
        grid_columns: latent vectors (columns) of the sample grid.
        seed: seed of the grid's fixed z and of the evaluation samples.
        on_task_end: called with (task_number, task_folder) after each task.

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
        on_task_end: Sequence[Callable[[int, Path], None]] = (),
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.stream = stream
        self.run_info = run_info
        self.evaluator = evaluator
        self.eval_samples = eval_samples
        self.grid_columns = grid_columns
        self.seed = seed
        self.on_task_end = list(on_task_end)

    def on_train_begin(self, logs=None):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / "run.json", self.run_info)
        self._z = fixed_latents(self.grid_columns, self.model.latent_dim, self.seed)

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.time()

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
        save_model(self.model, folder / "gan.keras")
        save_grid(sample_grid(self.model, seen, self._z), folder / "grid.png")
        write_json(folder / "metrics.json", metrics)
        self._append_csv(metrics)
        for hook in self.on_task_end:
            hook(number, folder)

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
