"""`keras-mergan` command line: train, evaluate, plot, export, sample, serve."""

import argparse
import dataclasses
import importlib
import importlib.util
import logging
import os
import shlex
import sys
import typing
from pathlib import Path

from keras_mergan import __version__
from keras_mergan.logs import console
from keras_mergan.run_folder import (
    RUN_INFO,
    CorruptCheckpointError,
    check_out_folder,
    default_run_dir,
)
from keras_mergan.usage import OneLineErrors

BACKENDS = ("tensorflow", "jax", "torch")

# Commands with a parser of their own: module holding `main(argv, prog)`, help.
DELEGATED = {
    "export": (
        "keras_mergan.export.__main__",
        "SavedModel + ONNX of each task's generator, and optionally a Triton "
        "model repository (keras-mergan export --help)",
    ),
    "sample": (
        "keras_mergan.serve.cli",
        "draw images of a category from exported generators, with "
        "onnxruntime alone (keras-mergan sample --help)",
    ),
    "serve": (
        "keras_mergan.serve.server",
        "serve exported generators over HTTP: gallery, JSON API, Open "
        "Inference Protocol v2 (keras-mergan serve --help)",
    ),
}


def _build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="keras-mergan", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"keras-mergan {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a method over a task sequence",
        description="Train a method over a task sequence into a run folder. "
        "Options left out take the --preset's value, then the method's default.",
    )
    _add_run_config_options(train)
    train.add_argument(
        "--out",
        type=Path,
        help="run folder; the same command resumes it (default: runs/METHOD-DATASET)",
    )
    train.add_argument(
        "--add-tasks",
        metavar="TASKS",
        help="extend the run at --out with these tasks, from --dataset's data "
        "alone ('/' separates tasks, ',' the categories of one: '2', 'bird', "
        "'2/3'); the run's other settings are kept",
    )
    train.add_argument("--backend", choices=BACKENDS, help="default: $KERAS_BACKEND")
    train.add_argument(
        "--tensorboard",
        nargs="?",
        const="",
        metavar="DIR",
        help="write TensorBoard summaries (losses, accuracy and grids) to DIR "
        "(default without DIR: RUN_DIR/tensorboard; off when not given)",
    )
    train.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=(0, 1, 2),
        help="0 silent; 1 a header, progress (a bar on a terminal, lines "
        "otherwise) and accuracy per task; 2 also the backend's start-up logs "
        "and TensorFlow's warnings (default: 1)",
    )

    # Listed for --help only: main() hands these to their own parsers, which
    # run on their own dependencies (onnxruntime for serving, a TensorFlow
    # subprocess for export) without starting a Keras backend here.
    for name, (_, help) in DELEGATED.items():
        commands.add_parser(name, help=help, add_help=False)
    evaluate = commands.add_parser(
        "evaluate",
        help="accuracy, forgetting, FID, KID, precision/recall and reverse "
        "accuracy of a run, per task (writes RUN_DIR/evaluation.json)",
    )
    evaluate.add_argument(
        "run_dir", type=Path, help="a run folder of keras-mergan train"
    )
    evaluate.add_argument(
        "--samples",
        type=int,
        default=1000,
        help="generated images per class (default: 1000)",
    )
    evaluate.add_argument(
        "--seed", type=int, default=0, help="seed of the latent codes (default: 0)"
    )
    evaluate.add_argument("--backend", choices=BACKENDS, help="default: $KERAS_BACKEND")
    evaluate.add_argument(
        "--tasks",
        type=_task_numbers,
        help="tasks to evaluate, e.g. '5,10' (default: every finished task)",
    )
    for option, scores in (
        ("--fid", "FID"),
        ("--kid", "KID (unbiased, cubic kernel)"),
        (
            "--precision-recall",
            "precision, recall, density and coverage (k = 3; the metrics extra)",
        ),
    ):
        evaluate.add_argument(
            option,
            action=argparse.BooleanOptionalAction,
            default=True,
            help=f"{scores} on evaluator features, per class and overall (default: on)",
        )
    evaluate.add_argument(
        "--reverse-accuracy",
        action="store_true",
        help="train a classifier on generated images, test it on real ones "
        "(one training per task; default: off)",
    )
    evaluate.add_argument(
        "--reverse-epochs",
        type=int,
        help="epochs of that classifier (default: the evaluator's schedule)",
    )
    evaluate.add_argument(
        "--plots",
        action="store_true",
        help="also write RUN_DIR/plots/*.png (default: off)",
    )
    plot = commands.add_parser(
        "plot",
        help="forgetting curves, fixed-z grid evolution and t-SNE of a run "
        "into RUN_DIR/plots/",
    )
    plot.add_argument("run_dir", type=Path, help="a run folder of keras-mergan train")
    plot.add_argument(
        "--seed", type=int, default=0, help="seed of the latent codes (default: 0)"
    )
    plot.add_argument("--backend", choices=BACKENDS, help="default: $KERAS_BACKEND")
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
            help="real and generated images per group in the t-SNE plot (default: 300)",
        )
    return parser


def _add_run_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per `RunConfig` field, with its help and default.

    Defaults are left out of the parsed namespace, so that only the options
    given reach `RunConfig` and the rest come from the preset.
    """
    from keras_mergan.run.config import RunConfig
    from keras_mergan.run.presets import PRESETS

    for option in dataclasses.fields(RunConfig):
        kind = next(t for t in typing.get_args(option.type) or (option.type,))
        by_preset = {
            name: value
            for name, preset in PRESETS.items()
            for values in (preset.values, *preset.method_values.values())
            for key, value in values.items()
            if key == option.name
        }
        if len(set(by_preset.values())) > 1 or 0 < len(by_preset) < len(PRESETS):
            default = ", ".join(f"{v} ({name})" for name, v in by_preset.items())
        else:
            default = next(iter(by_preset.values()), option.default)
        help = option.metadata["help"]
        if default is not None:
            help += f" (default: {default})"
        extras = {"type": _argument_type(option.metadata.get("type", kind))}
        if kind is bool:
            extras = {"action": argparse.BooleanOptionalAction}
        if "choices" in option.metadata:
            extras["choices"] = option.metadata["choices"]
        parser.add_argument(
            "--" + option.name.replace("_", "-"),
            default=argparse.SUPPRESS,
            help=help,
            **extras,
        )


def _argument_type(parse):
    """`parse` for argparse: its ValueError's message becomes the error."""
    if parse in (int, float, str, Path):
        return parse

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


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
    flags = os.environ.get("XLA_FLAGS", "")
    if known.devices > 1 and "xla_force_host_platform_device_count" not in flags:
        # Only a CPU is split (as TensorFlow's backend does); GPUs are counted.
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={known.devices}"
        ).strip()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in DELEGATED:
        module = importlib.import_module(DELEGATED[argv[0]][0])
        return module.main(argv[1:], prog=f"keras-mergan {argv[0]}")
    _configure_engines(argv)
    args = _build_parser().parse_args(argv)
    with console():
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        # Settings are checked before the backend loads: a bad value is
        # reported at once, before any banner.
        config = run_config(args) if args.command == "train" else None
        if config is not None:
            check_out_folder(args.out or default_run_dir(config))
        _start_backend(getattr(args, "verbose", 1))
        if config is not None:
            from keras_mergan.run.training import train_run

            _show_replay_warnings_plainly()
            try:
                train_run(
                    config, args.out, verbose=args.verbose, tensorboard=args.tensorboard
                )
            except KeyboardInterrupt:
                from keras_mergan.run.resume import where_it_stopped

                run_dir = args.out or default_run_dir(config)
                print(
                    f"\nStopped: {run_dir} keeps {where_it_stopped(run_dir)}; "
                    f"resume with: keras-mergan {shlex.join(argv)}",
                    file=sys.stderr,
                )
                return 130
        elif args.command == "plot":
            plot(args)
        else:
            evaluate(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"keras-mergan {args.command}: error: {error}", file=sys.stderr)
        # A damaged run fails at run time; anything else is a bad request.
        return 1 if isinstance(error, CorruptCheckpointError) else 2
    return 0


def _show_replay_warnings_plainly() -> None:
    """Replay health warnings as `Warning: task 3: ...` lines between the
    progress lines, rather than Python's default two lines naming the Keras
    file that ran the callback."""
    import warnings

    from keras_mergan.evaluation.replay_health import ReplayHealthWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ReplayHealthWarning):
            print(f"Warning: {message}", file=file or sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _start_backend(verbose: int) -> None:
    # TensorFlow's C++ start-up messages (oneDNN, CPU features, absl) are
    # written to the process's stderr as its libraries load, before any
    # logging setting applies (twice over: its profiler's library carries a
    # second copy of them); only hiding the file descriptor meanwhile
    # silences them. `--verbose 2` shows them.
    if verbose < 2:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # TensorFlow's Python warnings are its own hints (about its
        # tf.functions, say), not the run's.
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        if verbose < 2:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
        import keras  # noqa: F401

        # Keras loads TensorFlow wherever it is installed, whatever the
        # backend: keras.utils.set_random_seed seeds it, its serialization
        # (saving, loading, cloning a model) checks for TensorFlow's types,
        # and TensorBoard's summaries are TensorFlow's. Loaded here, its
        # start-up lines are hidden.
        if importlib.util.find_spec("tensorflow") is not None:
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def run_config(args: argparse.Namespace):
    """The `RunConfig` of parsed `train` arguments (options given only).

    With `--out` at an existing run, the run's own settings fill in the
    options not given, so that a longer `--tasks` (or `--add-tasks`)
    extends it with nothing else repeated.
    """
    from keras_mergan.run.config import RunConfig
    from keras_mergan.run.extension import extension_config

    options = {f.name for f in dataclasses.fields(RunConfig)}
    given = {k: v for k, v in vars(args).items() if k in options}
    add_tasks = getattr(args, "add_tasks", None)
    if args.out is not None and (args.out / RUN_INFO).is_file():
        return extension_config(args.out, add_tasks, **given)
    if add_tasks:
        raise ValueError(f"--add-tasks needs --out at an existing run, not {args.out}")
    return RunConfig(**given)


def evaluate(args) -> dict:
    from keras_mergan.evaluation.run_scores import evaluate_run
    from keras_mergan.evaluation.tables import format_evaluation

    report = evaluate_run(
        args.run_dir,
        samples=args.samples,
        seed=args.seed,
        fid=args.fid,
        kid=args.kid,
        precision_recall=args.precision_recall,
        reverse=args.reverse_accuracy,
        reverse_epochs=args.reverse_epochs,
        tasks=args.tasks,
    )
    print(format_evaluation(report))
    print(f"Written to {args.run_dir / 'evaluation.json'}")
    if args.plots:
        plot(args)
    return report


def plot(args) -> list[Path]:
    from keras_mergan.evaluation.plots import plot_run

    paths = plot_run(
        args.run_dir,
        tsne_class=args.tsne_class,
        samples=args.tsne_samples,
        seed=args.seed,
    )
    print("Plots: " + ", ".join(str(path) for path in paths))
    return paths


if __name__ == "__main__":
    sys.exit(main())
