"""`keras-mergan` command line: train a method over a task sequence, evaluate a run."""

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")
ARCHITECTURES = ("dcgan", "resnet")
# Channels of the first critic / last generator convolution in each
# architecture's paper: MeRGAN's DCGAN-32 and WGAN-GP's ResNet.
DEFAULT_WIDTHS = {"dcgan": 32, "resnet": 64}
# The MeRGAN paper's lambda_RA per dataset, for the reference scaling; any
# other dataset keeps the model's default, the paper's MNIST value 1e-3.
PAPER_LAMBDA_RA = {"svhn": 1e-2}


def parse_tasks(
    spec: str | None, dataset, classes_per_task: int = 1
) -> list[list[int]]:
    """Task groups from text: "0-9", "0,1,2", "0,1/2,3" or category names.

    `/` separates tasks and `,` the classes inside one; without `/`, the
    listed classes form consecutive groups of `classes_per_task`. Names and
    indices are resolved against the dataset's categories.
    """
    from keras_mergan.data import DatasetError
    from keras_mergan.tasks import split_tasks

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
    from keras_mergan.data import resolve_categories

    items: list[str | int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, dash, high = part.partition("-")
        if dash and low.strip().isdigit() and high.strip().isdigit():
            items.extend(range(int(low), int(high) + 1))
        else:
            items.append(part)
    return resolve_categories(dataset, items)


def _build_parser() -> argparse.ArgumentParser:
    from keras_mergan.data import STREAM_ABOVE
    from keras_mergan.methods import METHODS
    from keras_mergan.methods.joint_replay import REPLAY_SCALINGS
    from keras_mergan.methods.replay_alignment import RA_SCALINGS
    from keras_mergan.precision import PRECISIONS

    parser = argparse.ArgumentParser(prog="keras-mergan", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a method over a task sequence")
    train.add_argument("--method", choices=sorted(METHODS), default="sft")
    train.add_argument(
        "--dataset",
        default="digits",
        help="'digits' (built in), 'mnist', an .npz file, SVHN's "
        "train_32x32.mat or a folder of category folders; several joined with "
        "'+' make each whole dataset one category (e.g. 'mnist+train_32x32.mat' "
        "with --tasks mnist/svhn)",
    )
    train.add_argument("--tasks", help="e.g. '0-9', '0,1/2,3', 'bedroom/kitchen'")
    train.add_argument("--classes-per-task", type=int, default=1)
    train.add_argument("--iters-per-task", type=int, default=4000)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--n-critic", type=int, default=5)
    train.add_argument("--latent-dim", type=int, default=128)
    train.add_argument("--lambda-gp", type=float, default=10.0)
    train.add_argument("--lambda-cls", type=float, default=1.0)
    train.add_argument("--image-size", type=int, default=32)
    train.add_argument(
        "--stream-images",
        action=argparse.BooleanOptionalAction,
        help="folders: decode each batch from disk as it is drawn, in parallel "
        "and ahead of the training step, instead of every image up front "
        f"(default: for folders of more than {STREAM_ABOVE:,} images)",
    )
    train.add_argument(
        "--replay-batch",
        type=int,
        help="jtr, ra, jtr+ra: replayed images per update, split over the old "
        "classes (default --batch-size: one replayed batch per real batch, as "
        "in the paper)",
    )
    train.add_argument(
        "--lambda-ra",
        type=float,
        help="ra, jtr+ra: weight of the replay alignment (default 1e-3, the "
        "paper's MNIST value for --ra-scaling reference; 1e-2 on SVHN)",
    )
    train.add_argument(
        "--ra-scaling",
        choices=RA_SCALINGS,
        help="ra, jtr+ra: 'reference' (default): the reference code's summed L2, "
        "whose weight falls with the number of old classes; 'mean': "
        "--lambda-ra weighs the per-pixel mean squared error",
    )
    train.add_argument(
        "--replay-scaling",
        choices=REPLAY_SCALINGS,
        help="jtr, jtr+ra: 'reference' (default): the reference code's sum over "
        "old classes, each weighing as much as the current task; 'mean': old "
        "classes together weigh as much as the current task",
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        default=1e-4,
        help="Adam learning rate of both networks (1e-4, the paper's)",
    )
    train.add_argument(
        "--beta-1",
        type=float,
        default=0.0,
        help="Adam's beta1 for both networks (0, WGAN-GP's; 0.5 converges "
        "faster at a few hundred iterations per task)",
    )
    train.add_argument(
        "--warmup-iterations",
        type=int,
        default=0,
        help="iterations over which each task's fresh Adam warms up linearly "
        "from 0 to --learning-rate (0: none, the paper's)",
    )
    train.add_argument(
        "--lambda-ewc",
        type=float,
        help="ewc: weight of the Fisher penalty (default 1e9, the paper's)",
    )
    train.add_argument(
        "--fisher-samples",
        type=int,
        help="ewc: generated samples the Fisher is estimated from (default 256)",
    )
    train.add_argument(
        "--fisher-batch-size",
        type=int,
        help="ewc: samples per squared gradient (default 1: per-sample Fisher)",
    )
    train.add_argument(
        "--mixing-ratio",
        type=float,
        help="dgr, ltgan: fraction of real images in a batch from the second "
        "task on, the rest replayed (default: dgr 1 / tasks seen, ltgan 0.5)",
    )
    train.add_argument(
        "--student",
        action=argparse.BooleanOptionalAction,
        help="ltgan: train a VAE student on the replay mix (default: on)",
    )
    train.add_argument(
        "--student-beta",
        type=float,
        help="ltgan: weight of the student's KL term (default 1: the ELBO; "
        "4 for disentangled latents)",
    )
    train.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default="dcgan",
        help="dcgan: MeRGAN's DCGAN-32 (MNIST, SVHN; 32x32 images only); "
        "resnet: WGAN-GP's ResNet (LSUN-style folders, e.g. --image-size 64)",
    )
    train.add_argument(
        "--width",
        type=int,
        help="channels of the first critic / last generator convolution "
        "(default: dcgan 32, the MeRGAN reference code's; resnet 64, WGAN-GP's)",
    )
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="float32, or bfloat16 compute with float32 weights (Keras' "
        "mixed_bfloat16 policy; losses, batch-norm statistics and exports stay "
        "float32); auto: bfloat16 where the backend and device gain from it "
        "(default: float32)",
    )
    train.add_argument(
        "--devices",
        type=int,
        default=1,
        help="data parallel: split each batch over N devices (jax and "
        "tensorflow backends; on a CPU, N virtual devices share its cores)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=200,
        help="iterations between two saved training states; after a crash the "
        "same command resumes from the last one (0: only from finished tasks)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--out", type=Path, help="run folder (default runs/METHOD-DATASET)"
    )
    train.add_argument("--backend", choices=BACKENDS, help="default: $KERAS_BACKEND")
    train.add_argument(
        "--eval-samples",
        type=int,
        default=1000,
        help="generated images per class scored by the evaluator after each "
        "task (0: off)",
    )
    train.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="also score every N iterations inside a task, for forgetting "
        "curves (RUN_DIR/accuracy_curve.csv; 0: only at task ends)",
    )
    train.add_argument(
        "--export", action="store_true", help="export each task's generator"
    )
    train.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))

    evaluate = commands.add_parser(
        "evaluate",
        help="accuracy, FID and reverse accuracy of a run, per task "
        "(writes RUN_DIR/evaluation.json)",
    )
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument(
        "--samples", type=int, default=1000, help="generated images per class"
    )
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--backend", choices=BACKENDS)
    evaluate.add_argument(
        "--tasks",
        type=_task_numbers,
        help="tasks to evaluate, e.g. '5,10' (default: every finished task)",
    )
    evaluate.add_argument(
        "--fid",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="FID on evaluator features, per class and overall",
    )
    evaluate.add_argument(
        "--reverse-accuracy",
        action="store_true",
        help="train a classifier on generated images, test it on real ones "
        "(one training per task)",
    )
    evaluate.add_argument(
        "--reverse-epochs",
        type=int,
        help="epochs of that classifier (default: the evaluator's schedule)",
    )
    evaluate.add_argument(
        "--plots", action="store_true", help="also write RUN_DIR/plots/*.png"
    )
    plot = commands.add_parser(
        "plot",
        help="forgetting curves, fixed-z grid evolution and t-SNE of a run "
        "into RUN_DIR/plots/",
    )
    plot.add_argument("run_dir", type=Path)
    plot.add_argument("--seed", type=int, default=0)
    plot.add_argument("--backend", choices=BACKENDS)
    for command in (evaluate, plot):
        command.add_argument(
            "--tsne-class",
            type=int,
            help="class of the t-SNE plot (default: the first task's first class)",
        )
        command.add_argument(
            "--tsne-samples",
            type=int,
            default=300,
            help="real and generated images per group in the t-SNE plot",
        )
    return parser


def _task_numbers(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a list of task numbers: {text!r}"
        ) from None
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"task numbers start at 1: {text!r}")
    return numbers


def _configure_engines(argv) -> None:
    # KERAS_BACKEND is read once, when keras is first imported, and JAX's
    # device count on a CPU when JAX starts: both before the full parser,
    # which imports keras.
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--backend")
    early.add_argument("--devices", type=int, default=1)
    known, _ = early.parse_known_args(argv)
    if known.backend:
        os.environ["KERAS_BACKEND"] = known.backend
    # JAX compiles every task's step anew (minutes on a CPU); a resumed or
    # repeated run finds the same programs in this cache. JAX reads it at import.
    os.environ.setdefault(
        "JAX_COMPILATION_CACHE_DIR",
        str(Path.home() / ".cache" / "keras_mergan" / "jax_compilation"),
    )
    flags = os.environ.get("XLA_FLAGS", "")
    if known.devices > 1 and "xla_force_host_platform_device_count" not in flags:
        # Only a CPU is split (as TensorFlow's backend does); GPUs are counted.
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={known.devices}"
        ).strip()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _configure_engines(argv)
    args = _build_parser().parse_args(argv)
    from keras_mergan.data import DatasetError

    try:
        if args.command == "train":
            train(args)
        elif args.command == "plot":
            plot(args)
        else:
            evaluate(args)
    except (
        DatasetError,
        ValueError,
        FileNotFoundError,
        FloatingPointError,
    ) as error:
        print(f"keras-mergan: error: {error}", file=sys.stderr)
        return 2
    return 0


def _model_options(model_class, args, dataset_name: str) -> dict:
    # A method's own arguments and those its bases take through **kwargs.
    accepted = {
        name
        for base in model_class.__mro__
        if "__init__" in vars(base) and base.__module__.startswith("keras_mergan")
        for name in inspect.signature(base.__init__).parameters
    }
    options = {
        name: value
        for name, value in vars(args).items()
        if name in accepted
        and name not in ("generator", "critic")
        and value is not None
    }
    if "replay_batch" in accepted:
        options.setdefault("replay_batch", args.batch_size)
    if (
        "lambda_ra" in accepted
        and "lambda_ra" not in options
        and options.get("ra_scaling", "reference") == "reference"
        and dataset_name in PAPER_LAMBDA_RA
    ):
        options["lambda_ra"] = PAPER_LAMBDA_RA[dataset_name]
    return options


def _build_networks(args, dataset) -> tuple:
    """(generator, critic) of `--architecture` for the dataset's images."""
    from keras_mergan.models import (
        build_dcgan_critic,
        build_dcgan_generator,
        build_resnet_critic,
        build_resnet_generator,
    )

    classes, channels = dataset.num_classes, dataset.channels
    if args.architecture == "resnet":
        return (
            build_resnet_generator(
                classes, channels, args.latent_dim, args.image_size, args.width
            ),
            build_resnet_critic(classes, channels, args.image_size, args.width),
        )
    return (
        build_dcgan_generator(classes, channels, args.latent_dim, width=args.width),
        build_dcgan_critic(classes, channels, args.image_size, width=args.width),
    )


def train(args) -> Path:
    from keras_mergan.distribution import data_parallel

    # Entered first: TensorFlow can split a CPU into devices only before it
    # starts, and models must be built inside the scope to be distributed.
    with data_parallel(args.devices):
        return _train(args)


def _train(args) -> Path:
    import keras

    from keras_mergan.data import ImageFiles, load_dataset
    from keras_mergan.distribution import training_devices
    from keras_mergan.evaluator import Evaluator
    from keras_mergan.methods import METHODS
    from keras_mergan.methods.unconditional_replay import UnconditionalReplayGAN
    from keras_mergan.optimizers import wgan_adam
    from keras_mergan.precision import precision_scope
    from keras_mergan.resume import check_run_info, find_resume_point, fit_tasks
    from keras_mergan.run import RunRecorder
    from keras_mergan.tasks import TaskStream, cumulative_tasks

    if args.architecture == "dcgan" and args.image_size != 32:
        raise ValueError(
            f"--architecture dcgan generates 32x32 images, not "
            f"{args.image_size}x{args.image_size}: use --architecture resnet for "
            "other sizes (64 for LSUN-style folders)"
        )
    args.width = args.width or DEFAULT_WIDTHS[args.architecture]
    method = METHODS[args.method]
    dataset = load_dataset(
        args.dataset, image_size=args.image_size, stream=args.stream_images
    )
    tasks = parse_tasks(args.tasks, dataset, args.classes_per_task)
    training_tasks = cumulative_tasks(tasks) if method.cumulative else tasks
    run_dir = args.out or Path("runs") / f"{args.method}-{Path(args.dataset).stem}"
    stream = TaskStream(
        dataset.x_train,
        dataset.y_train,
        training_tasks,
        steps_per_task=args.iters_per_task,
        batch_size=args.batch_size,
        n_critic=args.n_critic,
        seed=args.seed,
        # Streamed images: batches are decoded in threads while the step runs.
        workers=2 if isinstance(dataset.x_train, ImageFiles) else 1,
    )
    keras.utils.set_random_seed(args.seed)
    model_class = method.model_class
    with precision_scope(args.precision) as precision:
        gan = model_class(
            *_build_networks(args, dataset),
            **{**method.options, **_model_options(model_class, args, dataset.name)},
        )
    gan.compile(
        generator_optimizer=wgan_adam(
            "generator_adam", args.learning_rate, args.warmup_iterations, args.beta_1
        ),
        critic_optimizer=wgan_adam(
            "critic_adam",
            args.learning_rate,
            args.warmup_iterations * args.n_critic,
            args.beta_1,
        ),
    )
    evaluator = None
    if args.eval_samples > 0:
        print("Preparing the evaluator classifier (cached after the first run)...")
        evaluator = Evaluator.for_dataset(dataset, verbose=args.verbose)
    hooks = []
    if args.export:
        from export import export_task

        hooks.append(lambda number, folder: export_task(run_dir, number))
    if isinstance(gan, UnconditionalReplayGAN):
        hooks.insert(0, _replay_report_hook(gan, stream, dataset, evaluator, args))
    run_info = {
        "method": args.method,
        "dataset": args.dataset,
        "class_names": list(dataset.class_names),
        "tasks": tasks,
        "training_tasks": training_tasks,
        "latent_dim": args.latent_dim,
        "image_shape": list(dataset.image_shape),
        "backend": keras.config.backend(),
        "keras_version": keras.__version__,
        "iters_per_task": args.iters_per_task,
        "batch_size": args.batch_size,
        "n_critic": args.n_critic,
        "learning_rate": args.learning_rate,
        "warmup_iterations": args.warmup_iterations,
        "beta_1": args.beta_1,
        "seed": args.seed,
        "precision": precision,
        "architecture": args.architecture,
        "width": args.width,
        "devices": training_devices(),
        "model_config": {
            k: v
            for k, v in gan.get_config().items()
            if k not in ("generator", "critic")
        },
    }
    check_run_info(run_dir, run_info)
    start = find_resume_point(run_dir, stream)
    if start.task == stream.num_tasks:
        print(f"All {stream.num_tasks} tasks of {run_dir} are already trained.")
        fit_tasks(gan, stream, run_dir, start=start)
        _print_accuracy_table(run_dir)
        return run_dir
    recorder = RunRecorder(
        run_dir,
        stream,
        run_info,
        evaluator if method.conditional else None,
        args.eval_samples,
        seed=args.seed,
        on_task_end=hooks,
        eval_every=args.eval_every,
    )
    print(
        f"Training {args.method} on {dataset.name}: {len(tasks)} tasks x "
        f"{args.iters_per_task} iterations, backend {keras.config.backend()} "
        f"in {precision}, writing to {run_dir}"
    )
    if (start.task, start.step) != (0, 0):
        print(
            f"Resuming at {start.describe(stream.steps_per_task)} "
            f"({start.completed_tasks} finished tasks kept)"
        )
    fit_tasks(
        gan,
        stream,
        run_dir,
        [recorder],
        start=start,
        checkpoint_every=args.checkpoint_every,
        verbose=args.verbose,
    )
    _print_accuracy_table(run_dir)
    return run_dir


def _replay_report_hook(gan, stream, dataset, evaluator, args):
    # DGR and LT-GANs: class distribution of the samples, solver accuracy,
    # student NLL (keras_mergan.unconditional), added to metrics.json.
    from keras_mergan.unconditional import add_task_report, task_report

    def hook(number, folder):
        report = task_report(
            gan,
            stream.seen_classes(number - 1),
            dataset.x_test,
            dataset.y_test,
            evaluator,
            max(args.eval_samples, 1),
            args.seed,
        )
        add_task_report(folder, report)
        print(f"Task {number}: " + json.dumps(report, default=str)[:300])

    return hook


def evaluate(args) -> dict:
    from keras_mergan.evaluation import evaluate_run, format_evaluation

    report = evaluate_run(
        args.run_dir,
        samples=args.samples,
        seed=args.seed,
        fid=args.fid,
        reverse=args.reverse_accuracy,
        reverse_epochs=args.reverse_epochs,
        tasks=args.tasks,
        progress=print,
    )
    print(format_evaluation(report))
    print(f"Written to {args.run_dir / 'evaluation.json'}")
    if args.plots:
        plot(args)
    return report


def plot(args) -> list[Path]:
    from keras_mergan.plots import plot_run

    paths = plot_run(
        args.run_dir,
        tsne_class=args.tsne_class,
        samples=args.tsne_samples,
        seed=args.seed,
    )
    print("Plots: " + ", ".join(str(path) for path in paths))
    return paths


def _print_accuracy_table(run_dir: Path) -> None:
    from keras_mergan.evaluation import format_accuracy_table
    from keras_mergan.run import task_dir

    info = json.loads((run_dir / "run.json").read_text())
    rows = []
    number = 1
    while (task_dir(run_dir, number) / "metrics.json").exists():
        metrics = json.loads((task_dir(run_dir, number) / "metrics.json").read_text())
        if "accuracy" in metrics:
            rows.append(metrics)
        number += 1
    if rows:
        print(format_accuracy_table(rows, info["class_names"]))
    print(f"Run written to {run_dir} (grids: {run_dir}/task_*/grid.png)")


if __name__ == "__main__":
    sys.exit(main())
