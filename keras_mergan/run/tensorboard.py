"""TensorBoard for a run: losses per iteration, accuracy and grids per task.

`tensorboard_callbacks` gives two callbacks writing under one log folder:

- `keras.callbacks.TensorBoard` (``train/``): every loss at every
  iteration (``batch_<loss>``) and per task (``epoch_<loss>``);
- `TaskSummaries` (``tasks/``): after each task, the evaluator accuracy of
  each seen category and their mean (``accuracy/<category>``,
  ``accuracy/mean``) and the task's sample grid (``samples``), at the run's
  iteration count.

Both need TensorFlow installed, whatever the training backend. Keras'
callback numbers the iterations of each `fit`: a run resumed part-way
through a task starts its loss curves from 0 again.

Example::

    keras-mergan train --method jtr --preset fast --tensorboard
    tensorboard --logdir runs/jtr-digits/tensorboard
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from keras_mergan.data.tasks import TaskStream
from keras_mergan.run_folder import GRID_FILE, task_accuracy, task_dir

__all__ = ["TaskSummaries", "tensorboard_callbacks"]


class TaskSummaries(keras.callbacks.Callback):
    """Writes each task's accuracy and sample grid as TensorBoard summaries.

    Place it after `RunRecorder`, whose `metrics.json` and `grid.png` it
    reads.

    Args:
        log_dir: the summaries go to ``log_dir/tasks``.
        run_dir: the run folder `RunRecorder` writes.
        stream: the whole task sequence.
        class_names: the dataset's category names, by label.

    Example:

    >>> # callbacks=[TaskSequence(stream), recorder,
    >>> #            TaskSummaries("runs/jtr/tensorboard", "runs/jtr", stream, names)]
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        run_dir: str | os.PathLike,
        stream: TaskStream,
        class_names: Sequence[str],
    ):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.run_dir = Path(run_dir)
        self.stream = stream
        self.class_names = list(class_names)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        folder = task_dir(self.run_dir, epoch + 1)
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir / "tasks"))
        step = (epoch + 1) * self.stream.steps_per_task
        with self._writer.as_default():
            accuracy = task_accuracy(self.run_dir, epoch + 1)
            for label, value in (accuracy or {}).items():
                name = self.class_names[int(label)]
                tf.summary.scalar(f"accuracy/{name}", value, step=step)
            if accuracy:
                mean = float(np.mean(list(accuracy.values())))
                tf.summary.scalar("accuracy/mean", mean, step=step)
            if (folder / GRID_FILE).exists():
                grid = np.asarray(Image.open(folder / GRID_FILE))
                if grid.ndim == 2:
                    grid = grid[..., None]
                tf.summary.image("samples", grid[None], step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def tensorboard_callbacks(
    log_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    stream: TaskStream,
    class_names: Sequence[str],
) -> list[keras.callbacks.Callback]:
    """Keras' `TensorBoard` (losses per iteration) and `TaskSummaries`.

    Example:

    >>> # run.callbacks += tensorboard_callbacks("tb", run.run_dir, run.stream, names)
    """
    losses = keras.callbacks.TensorBoard(
        str(log_dir), write_graph=False, update_freq=1, profile_batch=0
    )
    return [losses, TaskSummaries(log_dir, run_dir, stream, class_names)]
