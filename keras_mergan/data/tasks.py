"""Task streams: one category group per task, one Keras epoch per task."""

import copy
import weakref
from collections.abc import Sequence

import keras
import numpy as np


def split_tasks(classes: Sequence[int], classes_per_task: int = 1) -> list[list[int]]:
    """Consecutive groups of `classes_per_task` classes, one group per task."""
    if classes_per_task < 1:
        raise ValueError(f"classes_per_task must be >= 1, got {classes_per_task}")
    classes = [int(c) for c in classes]
    return [
        classes[i : i + classes_per_task]
        for i in range(0, len(classes), classes_per_task)
    ]


def cumulative_tasks(tasks: Sequence[Sequence[int]]) -> list[list[int]]:
    """Joint training's tasks: task t holds every class of tasks 0..t."""
    seen: list[int] = []
    result = []
    for task in tasks:
        seen = seen + [c for c in task if c not in seen]
        result.append(list(seen))
    return result


class TaskStream(keras.utils.PyDataset):
    """Endless batches of real images, the task chosen by the step index.

    Step `i` of `model.fit` is iteration `initial_task * steps_per_task +
    initial_step + i` of the whole sequence and belongs to the task of that
    iteration. Tying the task to the index (rather than to a switch flipped
    by a callback) keeps batches exact even when a backend's input pipeline
    prefetches across a task boundary, and makes every batch reproducible
    from `(seed, iteration)`, also in a run resumed part-way. Each batch
    holds `n_critic * batch_size` images: one real batch per critic update
    of a WGAN-GP iteration.

    Args:
        images: float array [N, H, W, C] in [-1, 1].
        labels: int array [N].
        tasks: the classes of each task, e.g. `[[0], [1], [2]]`.
        steps_per_task: WGAN-GP iterations (Keras steps) per task.
        batch_size: real images per critic update.
        n_critic: critic updates per iteration.
        seed: seed of the sampling.
        initial_task: task of step 0, to resume a sequence part-way with
            `fit(initial_epoch=initial_task)`.
        initial_step: iterations of `initial_task` already done; the first
            epoch of a resumed fit then has `steps_per_task - initial_step`
            steps.
        trained_tasks: tasks already trained (a finished run being extended
            with new ones): their classes need no images, and they are never
            drawn from.

    Example:

    >>> x = np.zeros((20, 32, 32, 1), "float32"); y = np.arange(20) % 2
    >>> stream = TaskStream(x, y, [[0], [1]], steps_per_task=3, batch_size=4)
    >>> images, labels = stream[3]
    >>> images.shape, set(labels.tolist())
    ((20, 32, 32, 1), {1})
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        tasks: Sequence[Sequence[int]],
        steps_per_task: int,
        batch_size: int = 64,
        n_critic: int = 5,
        seed: int = 0,
        initial_task: int = 0,
        initial_step: int = 0,
        trained_tasks: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        labels = np.asarray(labels).astype("int32").reshape(-1)
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if steps_per_task < 1:
            raise ValueError(f"steps_per_task must be >= 1, got {steps_per_task}")
        self.tasks = [[int(c) for c in task] for task in tasks]
        if not self.tasks or any(not task for task in self.tasks):
            raise ValueError(f"every task needs at least one class, got {tasks}")
        if not 0 <= initial_task < len(self.tasks):
            raise ValueError(
                f"initial_task {initial_task} outside 0..{len(self.tasks) - 1}"
            )
        self.images = images
        self.labels = labels
        self.steps_per_task = int(steps_per_task)
        self.batch_size = int(batch_size)
        self.n_critic = int(n_critic)
        self.seed = int(seed)
        self.initial_task = int(initial_task)
        if not 0 <= initial_step < self.steps_per_task:
            raise ValueError(
                f"initial_step {initial_step} outside 0..{self.steps_per_task - 1}"
            )
        self.initial_step = int(initial_step)
        self._pools = []
        for t, task in enumerate(self.tasks):
            pool = np.flatnonzero(np.isin(labels, task))
            missing = sorted(set(task) - set(labels[pool].tolist()))
            # A run being extended trained its first tasks already: their
            # data need not be at hand (continual learning's premise).
            if missing and t >= trained_tasks:
                raise ValueError(f"task {t} asks for classes {missing} with no images")
            self._pools.append(pool)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def num_batches(self):
        return None

    def iteration_of_step(self, index: int) -> int:
        """Iteration of the whole task sequence that fit's step `index` runs."""
        return self.initial_task * self.steps_per_task + self.initial_step + index

    def task_of_step(self, index: int) -> int:
        return min(
            self.iteration_of_step(index) // self.steps_per_task, self.num_tasks - 1
        )

    def starting_at(self, task: int, step: int = 0) -> "TaskStream":
        """The same stream, its step 0 being iteration `step` of `task`."""
        if not 0 <= task < self.num_tasks:
            raise ValueError(f"task {task} outside 0..{self.num_tasks - 1}")
        if not 0 <= step < self.steps_per_task:
            raise ValueError(f"step {step} outside 0..{self.steps_per_task - 1}")
        stream = copy.copy(self)
        stream.initial_task, stream.initial_step = int(task), int(step)
        return stream

    def seen_classes(self, task: int) -> list[int]:
        """Classes of tasks 0..task, in order of first appearance."""
        return cumulative_tasks(self.tasks[: task + 1])[-1]

    def images_of(self, label: int, limit: int) -> np.ndarray:
        """Up to `limit` of the real images of class `label` (the first ones)."""
        return self.images[np.flatnonzero(self.labels == label)[:limit]]

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.iteration_of_step(int(index))])
        pool = self._pools[self.task_of_step(int(index))]
        chosen = rng.choice(pool, size=self.batch_size * self.n_critic)
        return self.images[chosen], self.labels[chosen]


# The `step_variant()` each model's train function was made for.
_traced_variants: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_NOT_TRACED = object()


class TaskSequence(keras.callbacks.Callback):
    """Runs one task per epoch of `model.fit` over a `TaskStream`.

    At each epoch begin it starts the stream's task on the model
    (`begin_task`: snapshot of the replay generator, fresh optimizer state,
    method-specific work such as an EWC Fisher). The compiled train function
    is kept across tasks: per-task values are variables the step reads, and
    it is traced again only when the model's `step_variant()` changes.

    Example:

    >>> # model.fit(stream, epochs=stream.num_tasks,
    >>> #           steps_per_epoch=stream.steps_per_task,
    >>> #           callbacks=[TaskSequence(stream)])
    """

    def __init__(self, stream: TaskStream):
        super().__init__()
        self.stream = stream

    def on_train_begin(self, logs=None):
        steps = self.params.get("steps")
        epochs = self.params.get("epochs")
        remaining = self.stream.steps_per_task - self.stream.initial_step
        if steps != remaining:
            raise ValueError(
                f"fit(steps_per_epoch={steps}) must equal the stream's "
                f"steps_per_task={self.stream.steps_per_task}"
                + (
                    f" minus its initial_step={self.stream.initial_step}"
                    if self.stream.initial_step
                    else ""
                )
                + ": one epoch is one task"
            )
        if self.stream.initial_step and epochs != self.stream.initial_task + 1:
            raise ValueError(
                f"a stream starting part-way through task {self.stream.initial_task}"
                f" covers only that task: fit(epochs={self.stream.initial_task + 1}, "
                f"initial_epoch={self.stream.initial_task})"
            )
        if epochs is not None and epochs > self.stream.num_tasks:
            raise ValueError(
                f"fit(epochs={epochs}) asks for more tasks than the stream's "
                f"{self.stream.num_tasks}"
            )

    def on_epoch_begin(self, epoch, logs=None):
        # Epoch t is task t; a resumed fit(initial_epoch=k) pairs with a
        # stream built with initial_task=k. A fit resumed part-way through
        # task k still begins it here, from the task's starting state, and
        # then loads the mid-task state (keras_mergan.run.resume).
        self.model.begin_task(
            epoch, self.stream.tasks[epoch], self.stream.seen_classes(epoch)
        )
        # Per-task values are variables the compiled step reads: the step is
        # traced again only when the model says it changed (a fit's first
        # task included, since Keras keeps a model's step across fits).
        variant = self.model.step_variant()
        if _traced_variants.get(self.model, _NOT_TRACED) != variant:
            self.model.make_train_function(force=True)
            _traced_variants[self.model] = variant
