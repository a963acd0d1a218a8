"""Progress a person reads: a header per task, a bar or lines, a summary.

Keras' own progress counts epochs ("Epoch 2/2" for task 2 of 3 after a
resume) and, written to a file, turns its bar into one line of carriage
returns. `TaskProgress` speaks in tasks instead::

    Task 2/3: learning 1 (seen: 0, 1)
    300/300 ━━━━━━━━━━━━━━━━━━━━ 95s 316ms/step - critic_loss: -1.2 - ...
    Task 2/3 done in 95 s: accuracy 0 98.1%, 1 95.0%; mean 96.6% (94.0% with p >= 0.9)

On a terminal the middle line is Keras' `Progbar`; otherwise one plain line
is written every `every` iterations. The lines are records of the
`keras_mergan` logger (`keras_mergan.logs`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import keras

from keras_mergan.data.tasks import TaskStream
from keras_mergan.run_folder import read_task_metrics, task_accuracy

__all__ = ["TaskProgress"]

logger = logging.getLogger(__name__)

# Lines per task when the output is not a terminal.
LINES_PER_TASK = 10
# Backends that compile the step, and what the message adds: JAX keeps
# compiled programs in a persistent cache (keras_mergan.backend.jax).
_COMPILING = {"tensorflow": "", "jax": " (cached for later runs)"}


class TaskProgress(keras.callbacks.Callback):
    """Per-task header, progress and accuracy line; use with `fit(verbose=0)`.

    Place it after `RunRecorder`: the summary line reads the accuracies it
    wrote to the task's `metrics.json`.

    Args:
        stream: the whole task sequence.
        class_names: the dataset's category names, by label.
        run_dir: the run folder (None: no accuracy line).
        start_task: the task a resumed run starts in (0-based).
        start_step: the iteration it resumes that task at.
        every: iterations between two lines off a terminal (default: a
            tenth of a task).
        output: the stream of the bar (default `sys.stdout`): a terminal
            gets the bar, anything else progress lines.
        log: receives the headers, the summaries and the progress lines
            (default: the `keras_mergan` logger, at INFO).

    Example:

    >>> # model.fit(stream, ..., verbose=0, callbacks=[TaskSequence(stream),
    >>> #     recorder, TaskProgress(stream, dataset.class_names, "runs/jtr")])
    """

    def __init__(
        self,
        stream: TaskStream,
        class_names: Sequence[str],
        run_dir: str | Path | None = None,
        start_task: int = 0,
        start_step: int = 0,
        every: int | None = None,
        output: TextIO | None = None,
        log: Callable[[str], None] | None = None,
    ):
        super().__init__()
        self.stream = stream
        self.class_names = list(class_names)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.start_task = start_task
        self.start_step = start_step
        self.every = every or max(1, stream.steps_per_task // LINES_PER_TASK)
        self.output = output
        self.log = log or logger.info
        self._bar = None
        self._offset = 0
        self._iteration = 0
        self._started = 0.0
        self._compile_started = 0.0

    def _out(self) -> TextIO:
        return self.output or sys.stdout

    def _names(self, labels) -> str:
        return ", ".join(self.class_names[c] for c in labels)

    def _task(self, epoch: int) -> str:
        return f"Task {epoch + 1}/{self.stream.num_tasks}"

    def on_epoch_begin(self, epoch, logs=None):
        seen = self.stream.seen_classes(epoch)
        before = set(self.stream.seen_classes(epoch - 1)) if epoch else set()
        new = [c for c in self.stream.tasks[epoch] if c not in before]
        header = f"{self._task(epoch)}: learning {self._names(new)} "
        header += f"(seen: {self._names(seen)})"
        self._offset = self.start_step if epoch == self.start_task else 0
        if self._offset:
            header += f", resumed at iteration {self._offset}"
        self.log(header)
        self._started = time.time()
        self._bar = None

    def on_train_begin(self, logs=None):
        # A fit traces and compiles its step on its first batch: seconds on
        # TensorFlow, up to a minute under JAX on a CPU, silent without this.
        # PyTorch runs the step eagerly.
        self._compile_started = None if keras.config.backend() in _COMPILING else 0.0

    def on_train_batch_begin(self, batch, logs=None):
        if self._compile_started is None:
            note = _COMPILING[keras.config.backend()]
            self.log(f"  compiling the training step{note}...")
            self._compile_started = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if self._compile_started:
            seconds = time.time() - self._compile_started
            self.log(f"  compiled; first iteration done in {seconds:.0f} s")
            self._compile_started = 0.0
        iteration = self._offset + batch + 1
        self._iteration = iteration
        values = [(k, float(v)) for k, v in (logs or {}).items()]
        if self._bar is None and self._out().isatty():
            # Keras' logs are running means already: shown as they are.
            self._bar = keras.utils.Progbar(
                self.stream.steps_per_task,
                stateful_metrics=[k for k, _ in values],
                unit_name="iteration",
            )
        if self._bar is not None:
            self._bar.update(iteration, values, finalize=False)
            return
        steps = self.stream.steps_per_task
        if iteration % self.every and iteration != steps:
            return
        seconds = time.time() - self._started
        losses = " - ".join(f"{k} {v:.4g}" for k, v in values)
        self.log(f"  iteration {iteration}/{steps} - {seconds:.0f} s - {losses}")

    def on_epoch_end(self, epoch, logs=None):
        if self._bar is not None:
            # An adaptive task ends before its cap.
            self._bar.target = self._iteration
            self._bar.update(self._iteration, finalize=True)
        line = f"{self._task(epoch)} done in {time.time() - self._started:.0f} s"
        accuracy = (
            None if self.run_dir is None else task_accuracy(self.run_dir, epoch + 1)
        )
        budget = (
            None
            if self.run_dir is None
            else read_task_metrics(self.run_dir, epoch + 1).get("budget")
        )
        if budget:
            self.log(f"{self._task(epoch)}: {budget['summary']}")
        if accuracy:
            cells = ", ".join(
                f"{self.class_names[int(c)]} {100 * a:.1f}%"
                for c, a in accuracy.items()
            )
            mean = sum(accuracy.values()) / len(accuracy)
            line += f": accuracy {cells}; mean {100 * mean:.1f}%"
            metrics = read_task_metrics(self.run_dir, epoch + 1)
            if "mean_confident_share" in metrics:
                line += (
                    f" ({100 * metrics['mean_confident_share']:.1f}% with "
                    f"p >= {metrics['confidence_threshold']:g})"
                )
        self.log(line)
