"""The Keras callbacks a run is made of, for `model.fit` users.

`keras-mergan train` and `train_run` fit with exactly these, in this order:

1. `InterruptGuard`: Ctrl-C stops the fit even where a library swallows it;
2. `TaskSequence`: one task per epoch (`begin_task` at each epoch begin);
3. `RunRecorder`: each task's `gan.keras`, `grid.png`, `metrics.json` and
   `metrics.csv` row, and `run.json`;
   `TaskProgress` (with `verbose`): a header, progress and an accuracy line
   per task, for a `fit(verbose=0)`;
4. `UnconditionalReport` (DGR, LT-GANs): class shares, FID, solver accuracy
   and student NLL of the task, merged into its `metrics.json`;
5. `ReplayHealth` (replay methods, with an evaluator): the evaluator's
   accuracy and class shares on the replay generator's samples of the old
   classes, merged into `metrics.json`, with a `ReplayHealthWarning` for a
   class that collapsed;
6. `TaskExport` (optional): each task's SavedModel and ONNX export;
7. `TrainingCheckpoint`: the mid-task training state under `resume/`.

Callbacks after `RunRecorder` find the task's folder written; the
checkpoint comes last so that a task counts as done only once every file of
it exists. `keras_mergan.run.training.prepare_run` builds the list for a
`RunConfig`.
"""

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from keras_mergan.data.tasks import TaskSequence, TaskStream
from keras_mergan.evaluation import replay_health
from keras_mergan.logs import warn
from keras_mergan.run.interrupt import InterruptGuard
from keras_mergan.run.progress import TaskProgress
from keras_mergan.run.recorder import RunRecorder
from keras_mergan.run.resume import TrainingCheckpoint
from keras_mergan.run_folder import task_dir

logger = logging.getLogger(__name__)

__all__ = [
    "InterruptGuard",
    "ReplayHealth",
    "RunRecorder",
    "TaskExport",
    "TaskProgress",
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
    (LT-GANs); see `keras_mergan.evaluation.unconditional.task_report`.

    Args:
        run_dir: the run folder `RunRecorder` writes (place this after it).
        stream: the task stream being trained.
        test_images: real test images of every class.
        test_labels: their labels.
        evaluator: a `keras_mergan.evaluation.evaluator.Evaluator`, or None (solver
            accuracy and NLL only).
        samples: generated images scored.
        seed: seed of those images' latent vectors.
        log: receives one summary line per task (default: the
            `keras_mergan` logger, at INFO).

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
        log: Callable[[str], None] | None = None,
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.stream = stream
        self.test_images = test_images
        self.test_labels = test_labels
        self.evaluator = evaluator
        self.samples = samples
        self.seed = seed
        self.log = log or logger.info

    def on_epoch_end(self, epoch, logs=None):
        from keras_mergan.evaluation.unconditional import add_task_report, task_report

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


class ReplayHealth(keras.callbacks.Callback):
    """Scores the replay of the old classes after each task, and warns.

    At the end of task ``t`` the model's frozen ``replay_generator`` is the
    one that replayed the old classes during ``t``. `samples` images per old
    class are drawn from it (`replay_health.replay_samples`) and classified
    by the evaluator; `replay_health.replay_health` turns them into per-class
    accuracy and shares. The report goes into the task's ``metrics.json``
    under ``"replay_health"`` and each problem is raised as a
    `replay_health.ReplayHealthWarning`. The first task has no old classes
    and is skipped. Place it after `RunRecorder`.

    Args:
        run_dir: the run folder `RunRecorder` writes.
        stream: the task stream being fitted.
        evaluator: classifies images (`predict(images) -> labels`).
        log: receives one summary line per task (default: the
            `keras_mergan` logger, at INFO).
        samples: replayed images per old class.
        seed: seed of the replayed latent codes.
        min_accuracy: a class replayed with a lower accuracy is warned of.
        min_share: a class with less than this fraction of an even share of
            the replay is warned of.
        class_names: names of the classes by index, for the summary line
            and the warnings.

    Example:

    >>> # model.fit(stream, ..., callbacks=[TaskSequence(stream), recorder,
    >>> #     ReplayHealth("runs/jtr", stream, Evaluator.for_dataset(data))])
    """

    def __init__(
        self,
        run_dir: str | Path,
        stream: TaskStream,
        evaluator,
        log: Callable[[str], None] | None = None,
        samples: int = replay_health.SAMPLES_PER_CLASS,
        seed: int = 0,
        min_accuracy: float = replay_health.MIN_ACCURACY,
        min_share: float = replay_health.MIN_SHARE,
        class_names: Sequence[str] | None = None,
    ):
        super().__init__()
        self.class_names = list(class_names) if class_names else None
        self.run_dir = Path(run_dir)
        self.stream = stream
        self.evaluator = evaluator
        self.log = log or logger.info
        self.samples = samples
        self.seed = seed
        self.min_accuracy = min_accuracy
        self.min_share = min_share

    def on_epoch_end(self, epoch, logs=None):
        from keras_mergan.evaluation.unconditional import add_task_report

        new = self.stream.tasks[epoch]
        old = [c for c in self.stream.seen_classes(epoch) if c not in new]
        if not old:
            return
        images, labels = replay_health.replay_samples(
            self.model, old, self.samples, self.seed
        )
        report = replay_health.replay_health(
            self.evaluator.predict(images),
            labels,
            old,
            self.min_accuracy,
            self.min_share,
            self.class_names,
        )
        add_task_report(task_dir(self.run_dir, epoch + 1), {"replay_health": report})
        names = self.class_names
        # Three decimals, as the warnings': a share and its warning agree.
        shares = ", ".join(
            f"{names[int(c)] if names else c}: {s:.3f}"
            for c, s in report["class_share"].items()
        )
        self.log(f"Task {epoch + 1} replay health: class shares {shares}")
        for problem in report["warnings"]:
            warn(f"task {epoch + 1}: {problem}", replay_health.ReplayHealthWarning)


@dataclasses.dataclass(frozen=True)
class ReportContext:
    """What a method's per-task report callbacks are built from.

    Attributes:
        run_dir: the run folder.
        stream: the task stream being trained.
        dataset: the run's `ImageDataset` (its test split is scored against).
        evaluator: the run's evaluator, or None when evaluation is off.
        samples: generated images per report.
        seed: seed of the reports' latent vectors.
        log: receives their summary lines.
    """

    run_dir: Path
    stream: TaskStream
    dataset: object
    evaluator: object
    samples: int
    seed: int
    log: Callable[[str], None]


def _unconditional_report(context: ReportContext) -> keras.callbacks.Callback:
    return UnconditionalReport(
        context.run_dir,
        context.stream,
        context.dataset.x_test,
        context.dataset.y_test,
        context.evaluator,
        max(context.samples, 1),
        context.seed,
        context.log,
    )


def _replay_health(context: ReportContext) -> keras.callbacks.Callback | None:
    if context.evaluator is None:
        return None
    return ReplayHealth(
        context.run_dir,
        context.stream,
        context.evaluator,
        context.log,
        seed=context.seed,
        class_names=context.dataset.class_names,
    )


#: A method's `reports` (`keras_mergan.methods.Method.reports`) by name: each
#: builds its callback from a `ReportContext`, or None when it cannot run.
REPORTS: dict[str, Callable[[ReportContext], keras.callbacks.Callback | None]] = {
    "unconditional": _unconditional_report,
    "replay_health": _replay_health,
}


def report_callbacks(
    reports: Sequence[str], context: ReportContext
) -> list[keras.callbacks.Callback]:
    """The callbacks of a method's `reports`, in order; unknown names are an error.

    Example:

    >>> report_callbacks((), None)
    []
    """
    unknown = [name for name in reports if name not in REPORTS]
    if unknown:
        raise ValueError(f"unknown reports {unknown}: known are {sorted(REPORTS)}")
    built = (REPORTS[name](context) for name in reports)
    return [callback for callback in built if callback is not None]
