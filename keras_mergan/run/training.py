"""`train_run`: train a method over a task sequence into a run folder.

This is what `keras-mergan train` does, for Python users: the same
checkpoints and resume, sample grids, metrics, evaluator scores and exports.
"""

import dataclasses
import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

import keras

from keras_mergan.backend.distribution import data_parallel, training_devices
from keras_mergan.backend.precision import precision_scope
from keras_mergan.data import (
    DatasetError,
    ImageDataset,
    align_categories,
    load_dataset,
    resolve_categories,
)
from keras_mergan.data.tasks import TaskStream, cumulative_tasks, split_tasks
from keras_mergan.evaluation.evaluator import Evaluator
from keras_mergan.methods import METHODS
from keras_mergan.methods.optimizers import wgan_adam
from keras_mergan.models import (
    build_dcgan_critic,
    build_dcgan_generator,
    build_resnet_critic,
    build_resnet_generator,
)
from keras_mergan.run.budget import AdaptiveBudget
from keras_mergan.run.callbacks import (
    ReportContext,
    RunRecorder,
    TaskExport,
    TaskProgress,
    TrainingCheckpoint,
    report_callbacks,
)
from keras_mergan.run.config import RunConfig
from keras_mergan.run.extension import check_extension
from keras_mergan.run.resume import (
    ResumePoint,
    RunMismatchError,
    check_run_info,
    find_resume_point,
    fit_tasks,
    ordered_fit_callbacks,
)
from keras_mergan.run_folder import (
    CHECKPOINT_FOLDER,
    RUN_INFO,
    TENSORBOARD_FOLDER,
    RunFolderError,
    RunInfo,
    check_out_folder,
    default_run_dir,
    finished_tasks,
    read_run_info,
    read_task_metrics,
)


def train_run(
    config: RunConfig,
    run_dir: str | os.PathLike | None = None,
    verbose: int = 1,
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

    This is `prepare_run` followed by `keras_mergan.run.resume.fit_tasks`, which
    is `model.fit` with the run's callbacks, split where a resumed task
    continues part-way.

    Args:
        config: what to train.
        run_dir: the run folder (default `runs/<method>-<dataset>`).
        verbose: 0 silent; otherwise a header, progress (a bar on a terminal,
            lines elsewhere) and an accuracy line per task (`TaskProgress`),
            as records of the `keras_mergan` logger (`keras_mergan.logs`).
        tensorboard: a folder for TensorBoard summaries (losses per
            iteration, accuracy and grid per task; `keras_mergan.run.tensorboard`),
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
    log = _messages(verbose)
    with data_parallel(config.devices):
        run = prepare_run(config, run_dir, verbose, tensorboard)
        stream, start = run.stream, run.start
        if start.task == stream.num_tasks:
            log(f"All {stream.num_tasks} tasks of {run.run_dir} are already trained.")
        elif (start.task, start.step) != (0, 0):
            log(
                f"Resuming at {start.describe(stream.steps_per_task)} "
                f"({start.completed_tasks} finished tasks kept)"
            )
        # Progress is the run's TaskProgress callback, in tasks.
        run.fit(verbose=0)
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
            and `TaskExport` (`keras_mergan.run.callbacks`); `TaskSequence` and
            `TrainingCheckpoint` go around them (see `fit_callbacks`).
        start: where an earlier run in `run_dir` stopped.
    """

    config: RunConfig
    run_dir: Path
    model: keras.Model
    stream: TaskStream
    callbacks: list[keras.callbacks.Callback]
    start: ResumePoint

    def fit(self, verbose: int | str = 0) -> ResumePoint:
        """Trains every task into the run folder (`fit_tasks`): one
        `model.fit` over the tasks, or one per task with an adaptive budget
        (a task ends by stopping its fit) or after a resume part-way.

        Example:

        >>> # prepare_run(RunConfig(method="jtr", iters_per_task="auto")).fit()
        """
        return fit_tasks(
            self.model,
            self.stream,
            self.run_dir,
            self.callbacks,
            start=self.start,
            checkpoint_every=self.config.checkpoint_every,
            verbose=verbose,
        )

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
        return ordered_fit_callbacks(self.stream, self.callbacks, checkpoint)


def prepare_run(
    config: RunConfig,
    run_dir: str | os.PathLike | None = None,
    verbose: int = 1,
    tensorboard: str | os.PathLike | None = None,
) -> PreparedRun:
    """Loads the data, builds and compiles the model, and makes the callbacks.

    For Python users who drive `model.fit` themselves and want the same run
    folder as `train_run`. With `config.devices > 1`, call it and fit inside
    `keras_mergan.backend.distribution.data_parallel(config.devices)`. Its
    parts are `load_run_data`, `build_model` and `run_callbacks`.

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
    log = _messages(verbose)
    run_dir = Path(run_dir or default_run_dir(config))
    check_out_folder(run_dir)
    stored = stored_run(run_dir)
    data = load_run_data(config, stored, len(finished_tasks(run_dir)))
    config = data.config
    if data.kept_tasks:
        check_extension(run_dir, stored, config)
    gan, precision = build_model(config, data.dataset)
    info = run_record(config, data, gan, precision, stored)
    if data.kept_tasks:
        log(
            f"Extending {run_dir}: {data.kept_tasks} tasks kept, "
            f"{len(data.tasks) - data.kept_tasks} new"
        )
    else:
        check_run_info(run_dir, info)
    start = find_resume_point(run_dir, data.stream)
    callbacks = run_callbacks(
        config, data, info, run_dir, start, verbose, tensorboard, stored
    )
    if start.task < data.stream.num_tasks:
        log(
            f"Training {config.method} ({config.preset} preset) on "
            f"{data.dataset.name}: {len(data.tasks)} tasks x "
            f"{_budget_words(config)}, backend "
            f"{keras.config.backend()} in {precision}, writing to {run_dir}"
        )
    return PreparedRun(config, run_dir, gan, data.stream, callbacks, start)


@dataclasses.dataclass
class RunData:
    """A run's dataset, its task layout and the stream that feeds them.

    Attributes:
        config: the config with the dataset's preset values filled in.
        dataset: the loaded `ImageDataset`.
        tasks: the categories of each task.
        training_tasks: the categories trained on in each task (every earlier
            one too for a cumulative method, joint training).
        stream: the `TaskStream` over `training_tasks`.
        kept_tasks: tasks of an earlier run that this one extends (0: none);
            their data need not be in `dataset`.
    """

    config: RunConfig
    dataset: ImageDataset
    tasks: list[list[int]]
    training_tasks: list[list[int]]
    stream: TaskStream
    kept_tasks: int = 0


def stored_run(run_dir: str | os.PathLike) -> RunInfo | None:
    """The record of the run already in `run_dir`, or None if there is none."""
    if not (Path(run_dir) / RUN_INFO).is_file():
        return None
    try:
        return RunInfo.read(run_dir)
    except RunFolderError as error:
        raise RunMismatchError(str(error)) from None


def load_run_data(
    config: RunConfig, stored: RunInfo | None = None, finished: int = 0
) -> RunData:
    """Loads `config.dataset`, parses `config.tasks` and makes the task stream.

    With the record of a run already in the folder (`stored`), the dataset's
    categories are matched to the run's by name (new ones are appended), and
    a task list that begins with the run's tasks and adds more extends it.
    The `finished` tasks need no data: the data may hold only the new tasks'
    categories.

    Raises:
        DatasetError: the data or the task sequence cannot be used; the
            message names the option the user gave.
    """
    try:
        dataset = load_dataset(
            config.dataset, image_size=config.image_size, stream=config.stream_images
        )
    except DatasetError as error:
        raise DatasetError(f"--dataset {config.dataset}: {error}") from error
    config = config.for_dataset(dataset.name)
    if stored is not None:
        dataset = align_categories(dataset, stored.class_names)
    try:
        tasks = parse_tasks(config.tasks, dataset, config.classes_per_task)
    except DatasetError as error:
        raise DatasetError(f"--tasks {config.tasks}: {error}") from error
    kept = 0
    if stored is not None and _extends(tasks, stored.tasks):
        kept = stored.num_tasks
    elif stored is not None and stored.tasks[: len(tasks)] == tasks:
        # The command that made a run, repeated after the run was extended.
        tasks = stored.tasks
    training_tasks = (
        cumulative_tasks(tasks) if METHODS[config.method].cumulative else tasks
    )
    stream = TaskStream(
        dataset.x_train,
        dataset.y_train,
        training_tasks,
        steps_per_task=config.steps_per_task,
        batch_size=config.batch_size,
        n_critic=config.n_critic,
        seed=config.seed,
        trained_tasks=finished,
        # Batches are made (and streamed images decoded) in Keras' worker
        # threads while the step runs. Workers also turn tf.data's autotuning
        # off: under TensorFlow its model thread made every `fit` wait up to
        # a minute on return (the input pipeline's teardown waits for it).
        workers=2,
    )
    return RunData(config, dataset, tasks, training_tasks, stream, kept)


def _extends(tasks: list[list[int]], earlier: list[list[int]]) -> bool:
    return len(tasks) > len(earlier) and tasks[: len(earlier)] == earlier


def build_model(config: RunConfig, dataset: ImageDataset) -> tuple[keras.Model, str]:
    """The method's model for the dataset, compiled; and the precision it uses.

    Seeds Keras with `config.seed` first, so the same config builds the same
    weights.
    """
    keras.utils.set_random_seed(config.seed)
    with precision_scope(config.precision) as precision:
        gan = METHODS[config.method].model_class(
            *build_networks(config, dataset), **config.method_options()
        )
    warmup = config.warmup_iterations
    shortest = config.min_iters_per_task if config.adaptive else config.iters_per_task
    if warmup and warmup >= shortest:
        logging.getLogger(__name__).warning(
            f"the learning-rate warm-up ({warmup} iterations) is at least the "
            f"budget per task ({shortest}): every task trains "
            "below the set learning rate throughout, the warm-up restarting with "
            "each task's fresh optimizers (--warmup-iterations 0 "
            "turns it off)"
        )
    gan.compile(
        generator_optimizer=wgan_adam(
            "generator_adam", config.learning_rate, warmup, config.beta_1
        ),
        critic_optimizer=wgan_adam(
            "critic_adam", config.learning_rate, warmup * config.n_critic, config.beta_1
        ),
    )
    return gan, precision


def run_record(
    config: RunConfig,
    data: RunData,
    gan: keras.Model,
    precision: str,
    stored: RunInfo | None = None,
) -> RunInfo:
    """The `RunInfo` that `run.json` records for this run (`stored`: the run
    it extends, whose first dataset and task sources it keeps)."""
    continued = stored is not None and data.tasks[: stored.num_tasks] == stored.tasks
    earlier = stored.task_datasets[: stored.num_tasks] if continued else []
    return RunInfo(
        method=config.method,
        dataset=stored.dataset if continued else config.dataset,
        task_datasets=[*earlier, *[config.dataset] * (len(data.tasks) - len(earlier))],
        evaluator=stored.evaluator if continued else "",
        class_names=list(data.dataset.class_names),
        tasks=data.tasks,
        latent_dim=config.latent_dim,
        image_shape=list(data.dataset.image_shape),
        training_tasks=data.training_tasks,
        config=config.to_dict(),
        precision=precision,
        backend=keras.config.backend(),
        keras_version=keras.__version__,
        devices=training_devices(),
        # Keras numbers the default model name per process: not a setting.
        model_config={
            k: v
            for k, v in gan.get_config().items()
            if k not in ("generator", "critic", "name")
        },
    )


def run_callbacks(
    config: RunConfig,
    data: RunData,
    info: RunInfo,
    run_dir: Path,
    start: ResumePoint,
    verbose: int = 1,
    tensorboard: str | os.PathLike | None = None,
    stored: RunInfo | None = None,
) -> list[keras.callbacks.Callback]:
    """The callbacks that write the run: recorder, progress, the method's
    reports (`Method.reports`), TensorBoard and export, in that order."""
    log = _messages(verbose)
    method = METHODS[config.method]
    stream, dataset = data.stream, data.dataset
    evaluator = None
    if config.eval_samples > 0 and start.task < stream.num_tasks:
        evaluator = run_evaluator(data, info, log)
        if evaluator is not None and evaluator.cache_path:
            info = dataclasses.replace(info, evaluator=str(evaluator.cache_path))
    budget = None
    if config.adaptive and start.task < stream.num_tasks:
        if evaluator is None:
            raise ValueError(
                f"--iters-per-task {config.iters_per_task} needs an evaluator that "
                "knows the run's categories, and this run has none (--evaluator "
                "names one)"
            )
        budget = AdaptiveBudget(
            stream,
            evaluator,
            config.budget_rule(),
            dataset.class_names,
            conditional=method.conditional,
            run_dir=run_dir,
            seed=config.seed,
        )
    callbacks = [
        *([budget] if budget else []),
        RunRecorder(
            run_dir,
            stream,
            info,
            evaluator if method.conditional else None,
            config.eval_samples,
            seed=config.seed,
            eval_every=config.eval_every,
            budget=budget,
        ),
    ]
    if verbose:
        callbacks.append(
            TaskProgress(
                stream,
                dataset.class_names,
                run_dir,
                start.task,
                start.step,
                # An adaptive task may end after a few hundred iterations.
                every=budget.rule.check_every * 2 if budget else None,
                log=log,
            )
        )
    context = ReportContext(
        run_dir, stream, dataset, evaluator, config.eval_samples, config.seed, log
    )
    callbacks += report_callbacks(method.reports, context)
    if tensorboard is not None:
        from keras_mergan.run.tensorboard import tensorboard_callbacks

        callbacks += tensorboard_callbacks(
            tensorboard or run_dir / TENSORBOARD_FOLDER,
            run_dir,
            stream,
            dataset.class_names,
        )
    if config.export:
        callbacks.append(TaskExport(run_dir))
    return callbacks


def run_evaluator(
    data: RunData, info: RunInfo, log: Callable[[str], None]
) -> Evaluator | None:
    """The evaluator that scores the run: `--evaluator`'s, else the dataset's,
    or for tasks added from other data, the one the run was scored with (that
    data is not read again; categories it does not know are reported
    unscored)."""
    if data.config.evaluator:
        return Evaluator.load(data.config.evaluator, info.class_names)
    if info.task_datasets[-1] != info.dataset:
        if not info.evaluator or not Path(info.evaluator).is_file():
            log("No evaluator recorded for this run: the new tasks go unscored.")
            return None
        classifier = keras.saving.load_model(info.evaluator, compile=False)
        known = info.class_names[: int(classifier.outputs[0].shape[-1])]
        evaluator = Evaluator(classifier, known)
        evaluator.cache_path = Path(info.evaluator)
        return evaluator
    if not Evaluator.is_ready(data.dataset):
        log(
            f"Training the evaluator of {data.dataset.name} (once: it is cached "
            "for every later run on this data)..."
        )
    return Evaluator.for_dataset(data.dataset)


def _budget_words(config: RunConfig) -> str:
    if config.adaptive:
        return (
            f"{config.min_iters_per_task}-{config.max_iters_per_task} iterations "
            "(each until learned)"
        )
    return f"{config.iters_per_task} iterations"


def _messages(verbose: int) -> Callable[[str], None]:
    """Where the run's messages go: the `keras_mergan` logger, or nowhere
    with `verbose=0`."""
    return logging.getLogger(__name__).info if verbose else _silent


def _silent(message: str) -> None:
    """The messages of `verbose=0`: none."""


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
        raise DatasetError("a task has no category")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        names = ", ".join(dataset.class_names[c] for c in repeated)
        raise DatasetError(f"category {names} is listed twice")
    return tasks


def _parse_group(text: str, dataset) -> list[int]:
    items: list[str | int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, dash, high = part.partition("-")
        if dash and low.strip().isdigit() and high.strip().isdigit():
            if int(low) > int(high):
                raise DatasetError(
                    f"the range {part.strip()} is empty (write {high.strip()}-"
                    f"{low.strip()}, or list the categories in the order wanted)"
                )
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
    from keras_mergan.evaluation.tables import format_accuracy_table

    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    metrics = [read_task_metrics(run_dir, n) for n in finished_tasks(run_dir)]
    rows = [m for m in metrics if "accuracy" in m]
    table = format_accuracy_table(rows, info.class_names) + "\n" if rows else ""
    return f"{table}Run written to {run_dir} (grids: {run_dir}/task_*/grid.png)"
