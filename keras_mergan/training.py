"""`train_run`: train a method over a task sequence into a run folder.

This is what `keras-mergan train` does, for Python users: the same
checkpoints and resume, sample grids, metrics, evaluator scores and exports.
"""

import dataclasses
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import keras

from keras_mergan.callbacks import (
    ReplayHealth,
    RunRecorder,
    TaskExport,
    TaskProgress,
    TaskSequence,
    TrainingCheckpoint,
    UnconditionalReport,
)
from keras_mergan.config import RunConfig
from keras_mergan.data import DatasetError, load_dataset, resolve_categories
from keras_mergan.distribution import data_parallel, training_devices
from keras_mergan.evaluator import Evaluator
from keras_mergan.methods import METHODS
from keras_mergan.methods.replay import MemoryReplayGAN
from keras_mergan.methods.unconditional_replay import UnconditionalReplayGAN
from keras_mergan.models import (
    build_dcgan_critic,
    build_dcgan_generator,
    build_resnet_critic,
    build_resnet_generator,
)
from keras_mergan.optimizers import wgan_adam
from keras_mergan.precision import precision_scope
from keras_mergan.resume import (
    CHECKPOINT_FOLDER,
    ResumePoint,
    check_run_info,
    find_resume_point,
    fit_tasks,
)
from keras_mergan.run_folder import finished_tasks, read_run_info, read_task_metrics
from keras_mergan.tasks import TaskStream, cumulative_tasks, split_tasks


def train_run(
    config: RunConfig,
    run_dir: str | os.PathLike | None = None,
    verbose: int = 1,
    log: Callable[[str], None] = print,
    tensorboard: str | os.PathLike | None = None,
) -> Path:
    """Trains `config` into `run_dir`, resuming what an earlier call left.

    Writes `run.json` (the resolved config under `"config"`, and what the
    run found: categories, tasks, backend, devices, the model's config), then
    per task `task_XX/gan.keras`, `grid.png` and `metrics.json` (evaluator
    accuracy per seen category unless `config.eval_samples` is 0), a row of
    `metrics.csv`, and with `config.export` the task's SavedModel and ONNX
    export. Training state is saved every `config.checkpoint_every`
    iterations; calling again with the same config continues from it.

    This is `prepare_run` followed by `keras_mergan.resume.fit_tasks`, which
    is `model.fit` with the run's callbacks, split where a resumed task
    continues part-way.

    Args:
        config: what to train.
        run_dir: the run folder (default `runs/<method>-<dataset>`).
        verbose: 0 silent; otherwise a header, progress (a bar on a terminal,
            lines elsewhere) and an accuracy line per task (`TaskProgress`).
        log: where progress messages go.
        tensorboard: a folder for TensorBoard summaries (losses per
            iteration, accuracy and grid per task; `keras_mergan.tensorboard`),
            "" for `run_dir/tensorboard`, None for none.

    Returns:
        The run folder.

    Raises:
        ValueError: the folder holds a run with another configuration, or the
            data or task sequence cannot be used (`DatasetError`).

    Example:

    >>> # train_run(RunConfig(method="jtr", preset="fast", tasks="0-2"), "runs/jtr")
    """
    # Entered first: TensorFlow can split a CPU into devices only before it
    # starts, and models must be built inside the scope to be distributed.
    with data_parallel(config.devices):
        run = prepare_run(config, run_dir, verbose, log, tensorboard)
        stream, start = run.stream, run.start
        if start.task == stream.num_tasks:
            log(f"All {stream.num_tasks} tasks of {run.run_dir} are already trained.")
        elif (start.task, start.step) != (0, 0):
            log(
                f"Resuming at {start.describe(stream.steps_per_task)} "
                f"({start.completed_tasks} finished tasks kept)"
            )
        fit_tasks(
            run.model,
            run.stream,
            run.run_dir,
            run.callbacks,
            start=run.start,
            checkpoint_every=config.checkpoint_every,
            # Progress is the run's TaskProgress callback, in tasks.
            verbose=0,
        )
    log(accuracy_summary(run.run_dir))
    return run.run_dir


@dataclasses.dataclass
class PreparedRun:
    """A compiled model, its task stream and the callbacks that write its run.

    Attributes:
        config: the resolved configuration (preset and dataset applied).
        run_dir: the run folder.
        model: the compiled method model.
        stream: the whole task sequence, one task per epoch.
        callbacks: `RunRecorder` and, as configured, `UnconditionalReport`
            and `TaskExport` (`keras_mergan.callbacks`); `TaskSequence` and
            `TrainingCheckpoint` go around them (see `fit_callbacks`).
        start: where an earlier run in `run_dir` stopped.
    """

    config: RunConfig
    run_dir: Path
    model: keras.Model
    stream: TaskStream
    callbacks: list[keras.callbacks.Callback]
    start: ResumePoint

    def fit_callbacks(self) -> list[keras.callbacks.Callback]:
        """Every callback of a fresh run's `model.fit`, in order.

        Example:

        >>> # run.model.fit(run.stream, epochs=run.stream.num_tasks,
        >>> #               steps_per_epoch=run.stream.steps_per_task,
        >>> #               shuffle=False, callbacks=run.fit_callbacks())
        """
        checkpoint = TrainingCheckpoint(
            self.run_dir / CHECKPOINT_FOLDER,
            self.stream,
            self.config.checkpoint_every,
        )
        return [TaskSequence(self.stream), *self.callbacks, checkpoint]


def prepare_run(
    config: RunConfig,
    run_dir: str | os.PathLike | None = None,
    verbose: int = 1,
    log: Callable[[str], None] = print,
    tensorboard: str | os.PathLike | None = None,
) -> PreparedRun:
    """Loads the data, builds and compiles the model, and makes the callbacks.

    For Python users who drive `model.fit` themselves and want the same run
    folder as `train_run`. With `config.devices > 1`, call it and fit inside
    `keras_mergan.distribution.data_parallel(config.devices)`.

    Arguments are those of `train_run`.

    Raises:
        ValueError: as `train_run`.

    Example:

    >>> # run = prepare_run(RunConfig(method="jtr", preset="fast", tasks="0-2"))
    >>> # run.model.fit(run.stream, epochs=run.stream.num_tasks,
    >>> # ...           steps_per_epoch=run.stream.steps_per_task,
    >>> # ...           shuffle=False, callbacks=run.fit_callbacks())
    """
    if tensorboard is not None and importlib.util.find_spec("tensorboard") is None:
        raise ValueError(
            "--tensorboard needs TensorBoard: pip install 'keras-mergan[tensorboard]'"
        )
    method = METHODS[config.method]
    # Errors name the option the user gave, as RunConfig's checks do.
    try:
        dataset = load_dataset(
            config.dataset, image_size=config.image_size, stream=config.stream_images
        )
    except DatasetError as error:
        raise DatasetError(f"--dataset {config.dataset}: {error}") from error
    config = config.for_dataset(dataset.name)
    try:
        tasks = parse_tasks(config.tasks, dataset, config.classes_per_task)
    except DatasetError as error:
        raise DatasetError(f"--tasks {config.tasks}: {error}") from error
    training_tasks = cumulative_tasks(tasks) if method.cumulative else tasks
    run_dir = Path(
        run_dir or Path("runs") / f"{config.method}-{Path(config.dataset).stem}"
    )
    stream = TaskStream(
        dataset.x_train,
        dataset.y_train,
        training_tasks,
        steps_per_task=config.iters_per_task,
        batch_size=config.batch_size,
        n_critic=config.n_critic,
        seed=config.seed,
        # Batches are made (and streamed images decoded) in Keras' worker
        # threads while the step runs. Workers also turn tf.data's autotuning
        # off: under TensorFlow its model thread made every `fit` wait up to
        # a minute on return (the input pipeline's teardown waits for it).
        workers=2,
    )
    keras.utils.set_random_seed(config.seed)
    with precision_scope(config.precision) as precision:
        gan = method.model_class(
            *build_networks(config, dataset), **config.method_options()
        )
    warmup = config.warmup_iterations
    gan.compile(
        generator_optimizer=wgan_adam(
            "generator_adam", config.learning_rate, warmup, config.beta_1
        ),
        critic_optimizer=wgan_adam(
            "critic_adam", config.learning_rate, warmup * config.n_critic, config.beta_1
        ),
    )
    run_info = {
        "config": config.to_dict(),
        "method": config.method,
        "dataset": config.dataset,
        "class_names": list(dataset.class_names),
        "tasks": tasks,
        "training_tasks": training_tasks,
        "latent_dim": config.latent_dim,
        "image_shape": list(dataset.image_shape),
        "backend": keras.config.backend(),
        "keras_version": keras.__version__,
        "iters_per_task": config.iters_per_task,
        "batch_size": config.batch_size,
        "n_critic": config.n_critic,
        "learning_rate": config.learning_rate,
        "warmup_iterations": config.warmup_iterations,
        "beta_1": config.beta_1,
        "seed": config.seed,
        "precision": precision,
        "architecture": config.architecture,
        "width": config.width,
        "devices": training_devices(),
        # Keras numbers the default model name per process: not a setting.
        "model_config": {
            k: v
            for k, v in gan.get_config().items()
            if k not in ("generator", "critic", "name")
        },
    }
    check_run_info(run_dir, run_info)
    start = find_resume_point(run_dir, stream)
    evaluator = None
    if config.eval_samples > 0 and start.task < stream.num_tasks:
        log("Preparing the evaluator (trained once per dataset, then cached)...")
        # One line per epoch: readable on a terminal and in a log file alike.
        evaluator = Evaluator.for_dataset(dataset, verbose=2 if verbose else 0)
    callbacks = [
        RunRecorder(
            run_dir,
            stream,
            run_info,
            evaluator if method.conditional else None,
            config.eval_samples,
            seed=config.seed,
            eval_every=config.eval_every,
        )
    ]
    if verbose:
        callbacks.append(
            TaskProgress(
                stream, dataset.class_names, run_dir, start.task, start.step, log=log
            )
        )
    if isinstance(gan, UnconditionalReplayGAN):
        callbacks.append(
            UnconditionalReport(
                run_dir,
                stream,
                dataset.x_test,
                dataset.y_test,
                evaluator,
                max(config.eval_samples, 1),
                config.seed,
                log,
            )
        )
    if evaluator is not None and isinstance(
        gan, MemoryReplayGAN | UnconditionalReplayGAN
    ):
        callbacks.append(
            ReplayHealth(run_dir, stream, evaluator, log, seed=config.seed)
        )
    if tensorboard is not None:
        from keras_mergan.tensorboard import tensorboard_callbacks

        callbacks += tensorboard_callbacks(
            tensorboard or run_dir / "tensorboard", run_dir, stream, dataset.class_names
        )
    if config.export:
        callbacks.append(TaskExport(run_dir))
    if start.task < stream.num_tasks:
        log(
            f"Training {config.method} ({config.preset} preset) on {dataset.name}: "
            f"{len(tasks)} tasks x {config.iters_per_task} iterations, backend "
            f"{keras.config.backend()} in {precision}, writing to {run_dir}"
        )
    return PreparedRun(config, run_dir, gan, stream, callbacks, start)


def parse_tasks(
    spec: str | None, dataset, classes_per_task: int = 1
) -> list[list[int]]:
    """Task groups from text: "0-9", "0,1,2", "0,1/2,3" or category names.

    `/` separates tasks and `,` the classes inside one; without `/`, the
    listed classes form consecutive groups of `classes_per_task`. Names and
    indices are resolved against the dataset's categories.

    Example:

    >>> from keras_mergan.data import load_dataset
    >>> parse_tasks("0,1/2", load_dataset("digits"))
    [[0, 1], [2]]
    """
    if not spec:
        return split_tasks(range(dataset.num_classes), classes_per_task)
    if "/" in spec:
        tasks = [_parse_group(group, dataset) for group in spec.split("/")]
    else:
        tasks = split_tasks(_parse_group(spec, dataset), classes_per_task)
    classes = [c for task in tasks for c in task]
    if not tasks or any(not task for task in tasks):
        raise DatasetError(f"--tasks {spec!r} has an empty task")
    if len(set(classes)) != len(classes):
        raise DatasetError(f"--tasks {spec!r} lists a class twice")
    return tasks


def _parse_group(text: str, dataset) -> list[int]:
    items: list[str | int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, dash, high = part.partition("-")
        if dash and low.strip().isdigit() and high.strip().isdigit():
            items.extend(range(int(low), int(high) + 1))
        else:
            items.append(part)
    return resolve_categories(dataset, items)


def build_networks(config: RunConfig, dataset) -> tuple[keras.Model, keras.Model]:
    """(generator, critic) of `config.architecture` for the dataset's images."""
    classes, channels = dataset.num_classes, dataset.channels
    if config.architecture == "resnet":
        return (
            build_resnet_generator(
                classes, channels, config.latent_dim, config.image_size, config.width
            ),
            build_resnet_critic(classes, channels, config.image_size, config.width),
        )
    return (
        build_dcgan_generator(classes, channels, config.latent_dim, width=config.width),
        build_dcgan_critic(classes, channels, config.image_size, width=config.width),
    )


def accuracy_summary(run_dir: str | os.PathLike) -> str:
    """The accuracy-per-task table of a run folder and where its files are."""
    from keras_mergan.result_tables import format_accuracy_table

    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    metrics = [read_task_metrics(run_dir, n) for n in finished_tasks(run_dir)]
    rows = [m for m in metrics if "accuracy" in m]
    table = format_accuracy_table(rows, info["class_names"]) + "\n" if rows else ""
    return f"{table}Run written to {run_dir} (grids: {run_dir}/task_*/grid.png)"
