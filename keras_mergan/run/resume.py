# Over 400 lines on purpose: finding the resume point, the checkpoint
# callback and the state loader read and write one checkpoint format
# (checkpoint.json and its state file); kept in one module so that format
# has one owner.
"""Resume a task sequence after a crash: mid-task checkpoints, checked on load.

A run folder holds one `task_XX/` per finished task (written by
`keras_mergan.run.recorder.RunRecorder`) and, while training, `resume/`: the latest
training state and `checkpoint.json`, its manifest. The state is every
variable a step reads or writes (networks, frozen replay generator, both
optimizers, loss trackers, noise seed), so a resumed run continues exactly
where the saved one stood. The manifest names the state file with its
size and SHA-256; a state that does not match is reported, never loaded.

Resuming part-way through task `k` first puts the model in the state it had
when task `k` began (task folder `k`, or the initial weights), runs
`begin_task` from there as the first run did, and only then loads the
mid-task state. Work derived from the weights at the task start (the replay
generator's snapshot, a method's per-task statistics) is therefore the
original's, not a snapshot of a half-trained model.
"""

import json
import math
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from keras_mergan.data.tasks import TaskSequence, TaskStream
from keras_mergan.logs import warn
from keras_mergan.methods.growth import grow_categories
from keras_mergan.run.budget import AdaptiveBudget, ended_by_budget
from keras_mergan.run.interrupt import InterruptGuard
from keras_mergan.run.recorder import noise_variables
from keras_mergan.run_folder import (
    CHECKPOINT_FOLDER,
    RUN_INFO,
    RunInfo,
    atomic_open,
    finished_tasks,
    model_path,
    read_task_metrics,
    sha256_file,
    task_dir,
    task_number,
    write_json,
)

MANIFEST_NAME = "checkpoint.json"
MANIFEST_FORMAT = 1
# Facts of run.json that may change between a run and its resumption (a
# data-parallel step computes what one device computes on the same batch).
RESUMABLE_DIFFERENCES = ("backend", "keras_version", "devices", "evaluator")
_RESTATED_SETTINGS = (
    "tasks",
    "dataset",
    "preset",
    "classes_per_task",
    "checkpoint_every",
    "eval_samples",
    "eval_every",
    "export",
    "devices",
    "stream_images",
    "evaluator",
)
_MISSING = "<missing>"


class CheckpointError(ValueError):
    """A checkpoint is corrupt, truncated or does not belong to this run."""


class RunMismatchError(ValueError):
    """The run folder holds a run with another configuration."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss or weight and was stopped."""


@dataclass(frozen=True)
class ResumePoint:
    """Where a task sequence continues.

    Attributes:
        task: 0-based task to train next (`num_tasks` when all are done).
        step: iterations of `task` already done.
        completed_tasks: tasks whose folders are written.
        state: the verified mid-task or task-start state to load, or None
            to start `task` from the last finished task's `gan.keras` (or
            from the initial weights when `task` is 0).

    Example:

    >>> ResumePoint(task=1, step=40, completed_tasks=1, state=None).describe(200)
    'task 2, iteration 40/200'
    """

    task: int
    step: int
    completed_tasks: int
    state: Path | None = None

    def describe(self, steps_per_task: int) -> str:
        return f"task {self.task + 1}, iteration {self.step}/{steps_per_task}"


def where_it_stopped(run_dir: str | os.PathLike) -> str:
    """Where an interrupted run stands, in words: its finished tasks and, if
    a mid-task state was saved, the task and iteration it resumes from."""
    run_dir = Path(run_dir)
    done = len(finished_tasks(run_dir))
    words = f"{done} finished task{'s' if done != 1 else ''}"
    try:
        manifest = json.loads((run_dir / CHECKPOINT_FOLDER / MANIFEST_NAME).read_text())
        task, step = manifest["task"], manifest["step"]
        steps = manifest["steps_per_task"]
    except (OSError, ValueError, KeyError, TypeError):
        return words
    if task == done and step:
        words += f" and task {task + 1} saved at iteration {step}/{steps}"
    return words


def training_state(model: keras.Model) -> list:
    """Every variable a training step reads or writes, in a fixed order."""
    return [
        *model.trainable_variables,
        *model.non_trainable_variables,
        *model.optimizer.variables,
        *model.metrics_variables,
    ]


def check_run_info(run_dir: str | os.PathLike, run_info: RunInfo) -> None:
    """Refuse to train into a folder that holds a differently configured run.

    Raises:
        RunMismatchError: `run.json` differs from `run_info` in anything but
            `RESUMABLE_DIFFERENCES`, or the folder has task folders or a
            checkpoint but no `run.json`.
    """
    run_dir = Path(run_dir)
    info_path = run_dir / RUN_INFO
    if not info_path.exists():
        tasks = [p.name for p in run_dir.glob("*") if task_number(p.name)]
        leftovers = sorted(tasks) + (
            [CHECKPOINT_FOLDER] if (run_dir / CHECKPOINT_FOLDER).exists() else []
        )
        if leftovers:
            raise RunMismatchError(
                f"{run_dir} holds {', '.join(leftovers)} but no run.json: not a "
                "run folder this command can continue; choose another --out"
            )
        return
    try:
        stored = RunInfo.read(run_dir)
    except (OSError, ValueError) as error:
        raise RunMismatchError(f"{info_path} is unreadable ({error})") from error
    stored = _training_facts(stored.to_dict())
    wanted = _training_facts(run_info.to_dict())
    differences = [
        f"{key}: {stored.get(key, _MISSING)!r} there, {wanted.get(key, _MISSING)!r} now"
        for key in sorted(set(stored) | set(wanted))
        if stored.get(key) != wanted.get(key)
    ]
    if differences:
        raise RunMismatchError(
            f"{run_dir} holds a run with another configuration; refusing to mix "
            "them (choose another --out, or repeat the first run's options):\n  "
            + "\n  ".join(differences)
        )


def _training_facts(run_info: dict) -> dict:
    facts = json.loads(json.dumps(run_info))
    for key in RESUMABLE_DIFFERENCES:
        facts.pop(key, None)
    # Each resolved setting of the config is a fact, but for those that may
    # change between a run and its resumption (checkpoint and evaluation
    # frequency, exports, device count) and those whose resolved form the
    # record holds beside it (the task list, the dataset, the preset).
    config = facts.pop("config", None) or {}
    for key, value in config.items():
        if key not in _RESTATED_SETTINGS:
            facts.setdefault(key, value)
    # Runs recorded before it was left out kept Keras' per-process model name.
    facts.get("model_config", {}).pop("name", None)
    # Runs recorded before the precision option trained in float32.
    facts.setdefault("precision", "float32")
    return facts


def find_resume_point(run_dir: str | os.PathLike, stream: TaskStream) -> ResumePoint:
    """The latest consistent state of the run in `run_dir`, verified.

    Raises:
        CheckpointError: the checkpoint is corrupt, truncated, made for
            another task layout, or ahead of the task folders.
    """
    run_dir = Path(run_dir)
    done = min(len(finished_tasks(run_dir)), stream.num_tasks)
    manifest = _read_manifest(run_dir / CHECKPOINT_FOLDER, stream)
    if manifest is not None:
        position = (manifest["task"], manifest["step"])
        if position >= (done, 0) and done < stream.num_tasks:
            if manifest["task"] > done:
                raise CheckpointError(
                    f"the checkpoint in {run_dir / CHECKPOINT_FOLDER} is at task "
                    f"{manifest['task'] + 1} but {task_dir(run_dir, done + 1)} "
                    "is missing; delete the checkpoint folder to continue from "
                    f"task {done + 1}"
                )
            state = _verified_state(run_dir / CHECKPOINT_FOLDER, manifest)
            return ResumePoint(done, manifest["step"], done, state)
    return ResumePoint(done, 0, done)


def ordered_fit_callbacks(
    stream: TaskStream,
    callbacks: Sequence[keras.callbacks.Callback],
    checkpoint: keras.callbacks.Callback,
) -> list[keras.callbacks.Callback]:
    """A run's `model.fit` callbacks in their order: `InterruptGuard` first,
    so a swallowed Ctrl-C stops the fit before any other callback works on;
    `TaskSequence` before the run's `callbacks`, which find the task begun;
    the checkpoint last, once every file of a finished task is written.

    Example:

    >>> # ordered_fit_callbacks(stream, [recorder], TrainingCheckpoint(...))
    """
    return [InterruptGuard(), TaskSequence(stream), *callbacks, checkpoint]


def fit_tasks(
    model: keras.Model,
    stream: TaskStream,
    run_dir: str | os.PathLike,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    start: ResumePoint | None = None,
    checkpoint_every: int = 200,
    verbose: int | str = "auto",
) -> ResumePoint:
    """`model.fit` over the stream's tasks, resuming from `run_dir` if it can.

    One epoch is one task (`TaskSequence`). Every `checkpoint_every`
    iterations and at each task end the training state is saved to
    `run_dir/resume/` (0: never; a crash then restarts the unfinished task
    from its start). The folder is removed once every task is done.

    Args:
        model: a compiled `ConditionalWGANGP` (or subclass), built the same
            way as for the interrupted run.
        stream: the full task stream (starting at task 0).
        run_dir: the run's folder; `callbacks` should include the
            `RunRecorder` that writes its task folders.
        callbacks: further callbacks, run after `TaskSequence`.
        start: where to continue; found with `find_resume_point` if None.
        checkpoint_every: iterations between two saved states.
        verbose: as for `model.fit`.

    Returns:
        The point training continued from.

    Raises:
        NonFiniteLossError: a loss or weight became NaN or infinite; the
            last saved state is kept.
        CheckpointError: a state to resume from is corrupt.

    Example:

    >>> # fit_tasks(gan, stream, "runs/sft", [RunRecorder("runs/sft", stream, info)])
    """
    run_dir = Path(run_dir)
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
    start = start or find_resume_point(run_dir, stream)
    folder = run_dir / CHECKPOINT_FOLDER
    if start.task < stream.num_tasks:
        if start.step == 0 and start.state is not None:
            load_state(model, start.state)
        elif start.task > 0:
            _load_task_checkpoint(model, run_dir, start.task)
        checkpoint = TrainingCheckpoint(folder, stream, checkpoint_every, start)
        adaptive = any(isinstance(c, AdaptiveBudget) for c in callbacks)
        task, step = start.task, start.step
        while task < stream.num_tasks:
            # An adaptive task ends by stopping its fit, so each task gets one;
            # so does a task resumed part-way, whose epoch is shorter.
            last = task + 1 if adaptive or step else stream.num_tasks
            part = stream.starting_at(task, step)
            model.fit(
                part,
                initial_epoch=task,
                epochs=last,
                steps_per_epoch=stream.steps_per_task - step,
                callbacks=ordered_fit_callbacks(part, callbacks, checkpoint),
                shuffle=False,
                verbose=verbose,
            )
            if model.stop_training and not ended_by_budget(model):
                break
            task, step = last, 0
    else:
        # A run stopped after its last task folder, before the cleanup.
        shutil.rmtree(folder, ignore_errors=True)
    return start


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves the training state atomically; stops on a non-finite loss.

    Place it after `TaskSequence` and after the callbacks that write a
    task's files: at a task end the state is saved only once they are
    written, and a resumed task's mid-task state is loaded only after
    `begin_task` ran. After the stream's last task the folder is removed.

    Args:
        folder: where the state files and `checkpoint.json` go.
        stream: the full task stream being trained.
        every: iterations between two saves inside a task (0: never save).
        start: the point this fit resumes from; its mid-task state is
            loaded when that task begins.

    Example:

    >>> # model.fit(..., callbacks=[TaskSequence(stream), recorder,
    >>> #                           TrainingCheckpoint("run/resume", stream, 100)])
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        stream: TaskStream,
        every: int = 200,
        start: ResumePoint | None = None,
    ):
        super().__init__()
        self.folder = Path(folder)
        self.stream = stream
        self.every = int(every)
        self.start = start
        self._task = 0
        self._steps_before = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._task = epoch
        self._steps_before = 0
        start = self.start
        if start is not None and start.task == epoch and start.step:
            load_state(self.model, start.state)
            self._steps_before = start.step

    def on_train_batch_end(self, batch, logs=None):
        done = self._steps_before + batch + 1
        bad = {
            name: value
            for name, value in (logs or {}).items()
            if not math.isfinite(float(value))
        }
        if bad:
            self._stop(
                done, "loss (" + ", ".join(f"{k}={v}" for k, v in bad.items()) + ")"
            )
        if done == self.stream.steps_per_task or self.model.stop_training:
            # The task's files are written next: never from non-finite weights.
            # (A task stopped by the adaptive budget is saved as ended, never
            # as part-way at its last step.)
            self._state_arrays(done)
        elif self.every and done % self.every == 0:
            self._save(self._task, done)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.stream.num_tasks:
            # Every task's folder is written: nothing is left to resume.
            shutil.rmtree(self.folder, ignore_errors=True)
        elif self.every:
            self._save(epoch + 1, 0)

    def on_train_end(self, logs=None):
        # A callback that stops training (EarlyStopping counts epochs, so
        # tasks) ends the task sequence early, which no error says.
        done = self._task + 1
        if ended_by_budget(self.model) and done < self.stream.num_tasks:
            if self.params.get("epochs", done) > done:
                warn(
                    f"the adaptive budget ended task {done} and with it this fit "
                    "(a task ends by stopping its fit): fit_tasks, or "
                    "PreparedRun.fit, fits the tasks one after another"
                )
        elif self.model.stop_training and done < self.stream.num_tasks:
            warn(
                f"a callback stopped training after task {done} of "
                f"{self.stream.num_tasks} (an epoch is a task: EarlyStopping "
                "counts tasks); the run is unfinished: train_run or fit_tasks on "
                f"its folder continues it from task {done + 1}"
            )

    def _stop(self, done, what):
        kept = _read_manifest(self.folder, self.stream)
        if kept is not None:
            last = "the last good state (" + (
                ResumePoint(kept["task"], kept["step"], 0).describe(
                    self.stream.steps_per_task
                )
                + f") is kept in {self.folder}"
            )
        else:
            last = "the finished tasks' folders are kept"
        raise NonFiniteLossError(
            f"non-finite {what} at task {self._task + 1}, iteration {done}: "
            f"training stopped; {last}"
        )

    def _state_arrays(self, done) -> list[np.ndarray]:
        arrays = [keras.ops.convert_to_numpy(v) for v in training_state(self.model)]
        for variable, array in zip(training_state(self.model), arrays, strict=True):
            if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                self._stop(done, f"weight {variable.path}")
        return arrays

    def _save(self, task, step):
        arrays = self._state_arrays(step or self.stream.steps_per_task)
        iteration = task * self.stream.steps_per_task + step
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"state-{iteration:08d}.npz"
        with atomic_open(self.folder / name, "wb", fsync=True) as f:
            np.savez(f, *arrays)
        write_json(
            self.folder / MANIFEST_NAME,
            {
                "format": MANIFEST_FORMAT,
                "task": task,
                "step": step,
                "iteration": iteration,
                "state": name,
                "bytes": (self.folder / name).stat().st_size,
                "sha256": sha256_file(self.folder / name),
                "variables": len(arrays),
                "tasks": self.stream.tasks,
                "steps_per_task": self.stream.steps_per_task,
            },
        )
        for old in self.folder.glob("state-*.npz"):
            if old.name != name:
                old.unlink()


def load_state(model: keras.Model, path: str | os.PathLike) -> None:
    """Assign a saved training state (see `training_state`) to `model`.

    Raises:
        CheckpointError: the file is unreadable or made for another model.
    """
    variables = training_state(model)
    try:
        with np.load(path) as saved:
            arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"cannot read the state {path}: {error}") from error
    if len(arrays) != len(variables) or any(
        tuple(a.shape) != tuple(v.shape)
        for a, v in zip(arrays, variables, strict=False)
    ):
        raise CheckpointError(
            f"the state {path} was saved from a differently built model "
            f"({len(arrays)} arrays for {len(variables)} variables)"
        )
    for variable, array in zip(variables, arrays, strict=True):
        variable.assign(array)


def _load_task_checkpoint(model, run_dir: Path, number: int) -> None:
    path = model_path(run_dir, number)
    if not path.exists():
        raise CheckpointError(f"{path} is missing: cannot continue after that task")
    # Keras warns of every container it skips before a shape mismatch fails
    # the load; a model grown by categories always fails it, so those
    # warnings are shown only when the load succeeds.
    try:
        with warnings.catch_warnings(record=True) as skipped:
            warnings.simplefilter("always")
            model.load_weights(path)
    except Exception as error:
        if not _grew_from(model, path):
            raise CheckpointError(
                f"{path} is corrupt or unreadable ({type(error).__name__}: {error}); "
                "delete that task folder to train the task again"
            ) from error
    else:
        for warning in skipped:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    states = read_task_metrics(run_dir, number).get("noise_states")
    variables = noise_variables(model)
    if states is not None and len(states) == len(variables):
        for variable, state in zip(variables, states, strict=True):
            variable.assign(np.asarray(state, variable.dtype))


def _read_manifest(folder: Path, stream: TaskStream) -> dict | None:
    path = folder / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        position = (int(manifest["task"]), int(manifest["step"]))
        layout = (manifest["tasks"], int(manifest["steps_per_task"]))
        manifest["state"], manifest["sha256"], int(manifest["bytes"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{path} is corrupt ({type(error).__name__}: {error}); delete {folder} "
            "to continue from the last finished task"
        ) from error
    if manifest.get("format") != MANIFEST_FORMAT or layout != (
        stream.tasks,
        stream.steps_per_task,
    ):
        raise CheckpointError(
            f"{path} was written for tasks {layout[0]} x {layout[1]} iterations, "
            f"not {stream.tasks} x {stream.steps_per_task}"
        )
    if not (0 <= position[0] < stream.num_tasks and 0 <= position[1] < layout[1]):
        raise CheckpointError(f"{path} points outside the task sequence: {position}")
    return manifest


def _verified_state(folder: Path, manifest: dict) -> Path:
    path = folder / Path(manifest["state"]).name
    remedy = (
        f"delete {folder} to continue from the start of task {manifest['task'] + 1}"
    )
    if not path.exists():
        raise CheckpointError(f"checkpoint state {path} is missing; {remedy}")
    size = path.stat().st_size
    if size != manifest["bytes"]:
        problem = f"truncated ({size} bytes, {manifest['bytes']} expected)"
    elif sha256_file(path) != manifest["sha256"]:
        problem = "corrupt (its SHA-256 differs from the manifest's)"
    else:
        return path
    raise CheckpointError(
        f"checkpoint state {path} is {problem}; not loading it: {remedy}"
    )
    return path


def _grew_from(model, path) -> bool:
    """Loads `path` into `model` if `model` is that model grown by categories
    (a run extended with new ones); False if it is not."""
    try:
        saved = keras.saving.load_model(path, compile=False)
    except Exception:
        return False
    if not hasattr(saved, "num_classes") or saved.num_classes >= model.num_classes:
        return False
    grow_categories(saved, model)
    return True
