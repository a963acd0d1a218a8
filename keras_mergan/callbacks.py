"""The Keras callbacks a run is made of, for `model.fit` users.

`keras-mergan train` and `train_run` fit with exactly these, in this order:

1. `TaskSequence`: one task per epoch (`begin_task` at each epoch begin);
2. `RunRecorder`: each task's `gan.keras`, `grid.png`, `metrics.json` and
   `metrics.csv` row, and `run.json`;
3. `UnconditionalReport` (DGR, LT-GANs): class shares, FID, solver accuracy
   and student NLL of the task, merged into its `metrics.json`;
4. `TaskExport` (optional): each task's SavedModel and ONNX export;
5. `TrainingCheckpoint`: the mid-task training state under `resume/`.

Callbacks after `RunRecorder` find the task's folder written; the
checkpoint comes last so that a task counts as done only once every file of
it exists. `keras_mergan.training.prepare_run` builds the list for a
`RunConfig`.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from keras_mergan.resume import TrainingCheckpoint
from keras_mergan.run import RunRecorder
from keras_mergan.run_folder import task_dir
from keras_mergan.tasks import TaskSequence, TaskStream

__all__ = [
    "RunRecorder",
    "TaskExport",
    "TaskSequence",
    "TrainingCheckpoint",
    "UnconditionalReport",
]


class TaskExport(keras.callbacks.Callback):
    """Exports each finished task's generator to SavedModel and ONNX.

    Place it after `RunRecorder`, which writes the `gan.keras` it exports.
    The export runs in a TensorFlow subprocess whatever the training backend
    (`keras_mergan.export`).

    Args:
        run_dir: the run folder `RunRecorder` writes.
        out_dir: where `task_XX` exports go (default `run_dir/export`).

    Example:

    >>> # model.fit(stream, ..., callbacks=[TaskSequence(stream), recorder,
    >>> #                                   TaskExport("runs/ra")])
    """

    def __init__(self, run_dir: str | Path, out_dir: str | Path | None = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.out_dir = out_dir

    def on_epoch_end(self, epoch, logs=None):
        from keras_mergan.export import export_task

        export_task(self.run_dir, epoch + 1, self.out_dir)


class UnconditionalReport(keras.callbacks.Callback):
    """After each task of DGR or LT-GANs, scores what the model now generates.

    Merged into the task's `metrics.json`: the evaluator's class shares of
    unconditional samples and their FID against the seen classes' test
    images, the solver's accuracy on them (DGR) and the student's NLL
    (LT-GANs); see `keras_mergan.unconditional.task_report`.

    Args:
        run_dir: the run folder `RunRecorder` writes (place this after it).
        stream: the task stream being trained.
        test_images: real test images of every class.
        test_labels: their labels.
        evaluator: a `keras_mergan.evaluator.Evaluator`, or None (solver
            accuracy and NLL only).
        samples: generated images scored.
        seed: seed of those images' latent vectors.
        log: receives one summary line per task.

    Example:

    >>> # callbacks=[TaskSequence(stream), recorder,
    >>> #            UnconditionalReport("runs/dgr", stream, x_test, y_test)]
    """

    def __init__(
        self,
        run_dir: str | Path,
        stream: TaskStream,
        test_images: np.ndarray | Sequence,
        test_labels: np.ndarray,
        evaluator=None,
        samples: int = 1000,
        seed: int = 0,
        log: Callable[[str], None] = print,
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.stream = stream
        self.test_images = test_images
        self.test_labels = test_labels
        self.evaluator = evaluator
        self.samples = samples
        self.seed = seed
        self.log = log

    def on_epoch_end(self, epoch, logs=None):
        from keras_mergan.unconditional import add_task_report, task_report

        report = task_report(
            self.model,
            self.stream.seen_classes(epoch),
            self.test_images,
            self.test_labels,
            self.evaluator,
            self.samples,
            self.seed,
        )
        add_task_report(task_dir(self.run_dir, epoch + 1), report)
        summary = ", ".join(
            f"{k} {v:.4g}" for k, v in report.items() if isinstance(v, float)
        )
        self.log(f"Task {epoch + 1}: {summary}")
