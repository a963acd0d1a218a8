"""Per-task artifacts of a run: checkpoint, sample grid and metrics."""

import csv
import os
import time
from pathlib import Path

import keras
import numpy as np

from keras_mergan.data.tasks import TaskStream
from keras_mergan.evaluation.accuracy import (
    CURVE_FIELDS,
    class_sampler,
    generated_accuracy,
    generated_scores,
    read_curve_rows,
)
from keras_mergan.evaluation.evaluator import CONFIDENCE_THRESHOLD
from keras_mergan.evaluation.scores import feature_distance, kernel_distance
from keras_mergan.run_folder import (
    ACCURACY_CURVE,
    GRID_FILE,
    METRICS_FILE,
    METRICS_TABLE,
    MODEL_FILE,
    atomic_open,
    read_task_metrics,
    save_model,
    task_dir,
    write_json,
)
from keras_mergan.sampling import (
    draws_classes,
    fixed_latents,
    sample_grid,
    save_grid,
    unconditional_grid,
)


def noise_states(model) -> list[list[int]]:
    """The states of `model`'s random-number generators, in variable order.

    By order, not by name: Keras numbers generator names per process.
    """
    return [
        np.asarray(keras.ops.convert_to_numpy(v)).tolist()
        for v in noise_variables(model)
    ]


def noise_variables(model) -> list:
    """`model`'s random-number generator states, in variable order."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


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
        budget: the run's `AdaptiveBudget`, whose report (why the task
            stopped, its checks) goes into `metrics.json`; None for a fixed
            budget.

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
        budget=None,
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
        self.budget = budget

    def on_train_begin(self, logs=None):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_info.write(self.run_dir)
        self._z = fixed_latents(self.grid_columns, self.model.latent_dim, self.seed)
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if (task_dir(self.run_dir, epoch + 1) / METRICS_FILE).exists():
            raise FileExistsError(
                f"{self.run_dir} already holds a finished task {epoch + 1}: "
                "refusing to train it again (train_run resumes a run; fit "
                "from run.start, or choose another folder)"
            )
        self._started = time.time()
        self._task = epoch
        # a fit resumed part-way through a task runs only its remaining steps
        self._steps_before = self.stream.steps_per_task - self.params.get(
            "steps", self.stream.steps_per_task
        )
        self._steps_done = self._steps_before
        # Tasks may differ in length (an adaptive budget): the curve counts
        # the iterations the earlier tasks used.
        self._iterations_before = sum(
            read_task_metrics(self.run_dir, number)["iterations"]
            for number in range(1, epoch + 1)
        )
        if self._first_epoch:
            self._first_epoch = False
            self._drop_curve_after(self._iterations_before + self._steps_before)

    def on_train_batch_end(self, batch, logs=None):
        step = self._steps_before + batch + 1
        self._steps_done = step
        if (
            self.eval_every
            and step % self.eval_every == 0
            and step < self.stream.steps_per_task
        ):
            scored = self._scored(self.stream.seen_classes(self._task))
            accuracy = generated_accuracy(
                self.model, self.evaluator, scored, self.eval_samples, self.seed
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
            # The names of the classes by index, as the run knows them.
            "categories": {str(c): self.run_info.class_names[c] for c in seen},
            "iterations": self._steps_done,
            "stop_reason": "fixed",
            "seconds": round(time.time() - self._started, 2),
            "losses": {k: float(v) for k, v in (logs or {}).items()},
        }
        if self.budget is not None:
            metrics["budget"] = self.budget.report()
            metrics["stop_reason"] = metrics["budget"]["stop_reason"]
        if self.evaluator is not None:
            scored = self._scored(seen)
            accuracy, confident = generated_scores(
                self.model, self.evaluator, scored, self.eval_samples, self.seed
            )
            unscored = [c for c in seen if c not in scored]
            if unscored:
                metrics["unscored"] = {
                    self.run_info.class_names[c]: self._unscored_report(c)
                    for c in unscored
                }
            metrics["accuracy"] = {str(c): a for c, a in accuracy.items()}
            metrics["mean_accuracy"] = float(np.mean(list(accuracy.values())))
            # Beside the papers' argmax accuracy: the share the evaluator is
            # sure of, which an untrained generator's noise does not reach.
            metrics["confident_share"] = {str(c): s for c, s in confident.items()}
            metrics["mean_confident_share"] = float(np.mean(list(confident.values())))
            metrics["confidence_threshold"] = CONFIDENCE_THRESHOLD
            if self.eval_every:
                self._append_curve(self._steps_done, accuracy)
        # `gan.keras` leaves random-number states out; a run continued from
        # this task (extended later) draws the same noise as one that went on.
        metrics["noise_states"] = noise_states(self.model)
        save_model(self.model, folder / MODEL_FILE)
        grid, row_labels = self._grid(seen)
        save_grid(grid, folder / GRID_FILE, row_labels=row_labels)
        write_json(folder / METRICS_FILE, metrics)
        self._append_csv(metrics)

    def _grid(self, seen: list[int]) -> tuple[np.ndarray, list[str] | None]:
        """The task's sample grid and its row labels: a row per seen class,
        or for a method that ignores classes, as many rows of other samples,
        unlabelled."""
        if not draws_classes(self.run_info.method):
            z = fixed_latents(
                len(seen) * self.grid_columns, self.model.latent_dim, self.seed
            )
            return unconditional_grid(self.model, z, self.grid_columns), None
        names = self.run_info.class_names
        labels = [names[c] for c in seen] if names else None
        return sample_grid(self.model, seen, self._z), labels

    def _unscored_report(self, label: int) -> dict:
        """Why a class has no accuracy, and how far its samples are from the
        task's real images of it on the evaluator's features (FID, KID)."""
        report = {"reason": "the run's evaluator does not know this category"}
        real = self.stream.images_of(label, self.eval_samples)
        if len(real) < 2:
            return report
        generated = class_sampler(self.model, self.seed)(label, len(real))
        real_features = self.evaluator.features(real)
        generated_features = self.evaluator.features(generated)
        return {
            **report,
            "fid": feature_distance(real_features, generated_features),
            "kid": kernel_distance(real_features, generated_features),
            "samples": len(real),
        }

    def _scored(self, classes: list[int]) -> list[int]:
        """The classes the evaluator knows: a run grown by categories its
        evaluator never saw leaves those unscored."""
        return [c for c in classes if c < self.evaluator.num_classes]

    def _append_csv(self, metrics):
        path = self.run_dir / METRICS_TABLE
        row = {k: metrics[k] for k in ("task", "iterations", "stop_reason", "seconds")}
        row["seen_classes"] = " ".join(map(str, metrics["seen_classes"]))
        row["mean_accuracy"] = metrics.get("mean_accuracy", "")
        row["mean_confident_share"] = metrics.get("mean_confident_share", "")
        row.update(metrics["losses"])
        rows = read_curve_rows(path)
        if rows and list(rows[0]) != list(row):
            # A run extended by a newer version, or whose losses differ:
            # the file is rewritten with every column.
            fields = list(dict.fromkeys([*rows[0], *row]))
            with atomic_open(path, newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields, restval="")
                writer.writeheader()
                writer.writerows([*rows, row])
            return
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if not rows:
                writer.writeheader()
            writer.writerow(row)

    def _append_curve(self, step: int, accuracy: dict[int, float]) -> None:
        path = self.run_dir / ACCURACY_CURVE
        iteration = self._iterations_before + step
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(CURVE_FIELDS)
            for label, value in accuracy.items():
                writer.writerow([iteration, self._task + 1, label, f"{value:.6g}"])

    def _drop_curve_after(self, iteration: int) -> None:
        path = self.run_dir / ACCURACY_CURVE
        rows = read_curve_rows(path)
        kept = [row for row in rows if int(row["iteration"]) <= iteration]
        if len(kept) == len(rows):
            return
        with atomic_open(path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CURVE_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
