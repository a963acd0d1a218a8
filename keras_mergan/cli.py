"""`keras-mergan` command line: train a method over a task sequence, evaluate a run."""

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")


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
    from keras_mergan.methods import METHODS

    parser = argparse.ArgumentParser(prog="keras-mergan", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a method over a task sequence")
    train.add_argument("--method", choices=sorted(METHODS), default="sft")
    train.add_argument(
        "--dataset",
        default="digits",
        help="'digits' (built in), 'mnist', an .npz file or a folder of "
        "category folders",
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
        "--export", action="store_true", help="export each task's generator"
    )
    train.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))

    evaluate = commands.add_parser(
        "evaluate", help="evaluator accuracy of a run, per task"
    )
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--samples", type=int, default=1000)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--backend", choices=BACKENDS)
    return parser


def _select_backend(argv) -> None:
    # KERAS_BACKEND is read once, when keras is first imported.
    for i, arg in enumerate(argv):
        if arg == "--backend" and i + 1 < len(argv):
            os.environ["KERAS_BACKEND"] = argv[i + 1]
        elif arg.startswith("--backend="):
            os.environ["KERAS_BACKEND"] = arg.split("=", 1)[1]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _select_backend(argv)
    args = _build_parser().parse_args(argv)
    from keras_mergan.data import DatasetError

    try:
        if args.command == "train":
            train(args)
        else:
            evaluate(args)
    except (DatasetError, ValueError, FileNotFoundError) as error:
        print(f"keras-mergan: error: {error}", file=sys.stderr)
        return 2
    return 0


def _model_options(model_class, args) -> dict:
    accepted = inspect.signature(model_class.__init__).parameters
    return {
        name: value
        for name, value in vars(args).items()
        if name in accepted
        and name not in ("generator", "critic")
        and value is not None
    }


def train(args) -> Path:
    import keras

    from keras_mergan.data import load_dataset
    from keras_mergan.evaluator import Evaluator
    from keras_mergan.methods import METHODS
    from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    from keras_mergan.run import RunRecorder
    from keras_mergan.tasks import TaskSequence, TaskStream, cumulative_tasks

    method = METHODS[args.method]
    dataset = load_dataset(args.dataset, image_size=args.image_size)
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
    )
    keras.utils.set_random_seed(args.seed)
    channels = dataset.channels
    model_class = method.model_class
    gan = model_class(
        build_dcgan_generator(dataset.num_classes, channels, args.latent_dim),
        build_dcgan_critic(dataset.num_classes, channels, args.image_size),
        **{**method.options, **_model_options(model_class, args)},
    )
    gan.compile()
    evaluator = None
    if args.eval_samples > 0:
        print("Preparing the evaluator classifier (cached after the first run)...")
        evaluator = Evaluator.for_dataset(dataset, verbose=args.verbose)
    hooks = []
    if args.export:
        from export import export_task

        hooks.append(lambda number, folder: export_task(run_dir, number))
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
        "seed": args.seed,
        "model_config": {
            k: v
            for k, v in gan.get_config().items()
            if k not in ("generator", "critic")
        },
    }
    recorder = RunRecorder(
        run_dir,
        stream,
        run_info,
        evaluator,
        args.eval_samples,
        seed=args.seed,
        on_task_end=hooks,
    )
    print(
        f"Training {args.method} on {dataset.name}: {len(tasks)} tasks x "
        f"{args.iters_per_task} iterations, backend {keras.config.backend()}, "
        f"writing to {run_dir}"
    )
    gan.fit(
        stream,
        epochs=stream.num_tasks,
        steps_per_epoch=stream.steps_per_task,
        callbacks=[TaskSequence(stream), recorder],
        verbose=args.verbose,
    )
    _print_accuracy_table(run_dir)
    return run_dir


def evaluate(args) -> dict:
    import keras

    import keras_mergan.methods  # noqa: F401  (registers the model classes)
    from keras_mergan.data import load_dataset
    from keras_mergan.evaluator import Evaluator
    from keras_mergan.run import generated_accuracy, task_dir, write_json

    info_path = args.run_dir / "run.json"
    if not info_path.exists():
        raise FileNotFoundError(
            f"{info_path} not found: is {args.run_dir} a run folder?"
        )
    info = json.loads(info_path.read_text())
    dataset = load_dataset(info["dataset"], image_size=info["image_shape"][0])
    evaluator = Evaluator.for_dataset(dataset)
    results = []
    number = 1
    while (task_dir(args.run_dir, number) / "gan.keras").exists():
        folder = task_dir(args.run_dir, number)
        gan = keras.saving.load_model(folder / "gan.keras")
        seen = json.loads((folder / "metrics.json").read_text())["seen_classes"]
        accuracy = generated_accuracy(gan, evaluator, seen, args.samples, args.seed)
        results.append(
            {
                "task": number,
                "accuracy": {str(c): a for c, a in accuracy.items()},
                "mean_accuracy": sum(accuracy.values()) / len(accuracy),
            }
        )
        number += 1
    if not results:
        raise FileNotFoundError(f"no task checkpoints under {args.run_dir}")
    report = {
        "run": str(args.run_dir),
        "samples_per_class": args.samples,
        "tasks": results,
    }
    write_json(args.run_dir / "evaluation.json", report)
    print(format_accuracy_table(results, info["class_names"]))
    return report


def format_accuracy_table(results, class_names) -> str:
    """Markdown table: one row per task, accuracy % per class and the mean."""
    header = "| task | " + " | ".join(class_names) + " | mean |"
    lines = [header, "|" + "---|" * (len(class_names) + 2)]
    for row in results:
        cells = [
            f"{100 * row['accuracy'][str(c)]:.1f}" if str(c) in row["accuracy"] else ""
            for c in range(len(class_names))
        ]
        lines.append(
            f"| {row['task']} | "
            + " | ".join(cells)
            + f" | {100 * row['mean_accuracy']:.2f} |"
        )
    return "\n".join(lines)


def _print_accuracy_table(run_dir: Path) -> None:
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
