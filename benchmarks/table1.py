"""MeRGAN Table 1 (MNIST, SVHN): generated-image accuracy after 5 and 10 tasks.

Usage::

    python benchmarks/table1.py --budget quick                 # minutes on CPU
    python benchmarks/table1.py --budget cpu --methods jtr,ra  # 1000 it/task
    python benchmarks/table1.py --budget paper --backend jax   # 4000 it/task
    python benchmarks/table1.py --dataset svhn --budget paper  # 8000 it/task
    python benchmarks/table1.py --seeds 0,1,2 --class-orders 2  # mean ± std

``--dataset`` is ``mnist`` (the shared copy if present, else the Keras
download), ``svhn`` (``train_32x32.mat`` and ``test_32x32.mat`` in the shared
``datasets/svhn/`` folder), or a path: an MNIST ``.npz``, SVHN's
``train_32x32.mat`` or the folder holding it. The paper's iterations per task
and its Table 1 row differ between the two; ``keras-mergan train`` applies
SVHN's lambda_RA of 1e-2 itself.

Every method trains in its own process through ``keras-mergan train`` on
digits 0..9, one digit per task, into
``RUNS/[svhn-]<budget>-<iterations>-<backend>[-bfloat16]/<method>/``
(``--precision bfloat16`` trains in mixed precision). The
training command checkpoints as it goes, so running the benchmark again after
an interruption resumes each unfinished method where it stopped and skips
finished ones; ``--fresh`` starts over. After each run, the evaluator
accuracy of generated images (mean over seen classes; docs/design-notes.md) is
read from ``task_05/metrics.json`` and ``task_10/metrics.json`` and printed
beside the paper's Table 1. Results go to
``benchmarks/results/table1_[svhn_]<budget>_<iterations>_<backend>[_bfloat16].{json,md}``;
a method that did not reach task 5 or 10 shows "-" there.

``--jobs N`` trains N runs at a time, each in its own process (the output
lines then start with the run's name), after one process has loaded or
trained the dataset's evaluator; ``--deadline S`` stops the runs still
training S seconds after the start and reports the tasks they finished;
``--grids`` copies each run's last grid beside the report
(``<report>_<variant>_task<NN>_grid.png``); ``--results`` says where the
reports go. ``benchmarks/accelerator_table1.sh`` uses them to run every row
at the paper's budget on one GPU in one call.

Each run also reports its task-by-class accuracy matrix and what follows
from it (average incremental accuracy, per-class forgetting, backward
transfer; ``keras_mergan.evaluation.continual``) and the replay health of replay
methods (``keras_mergan.evaluation.replay_health``). ``--seeds`` trains every variant
once per seed; ``--class-orders K`` trains each seed on K random orders of
``--tasks``' classes (order k shuffled by numpy's generator of seed k), in
folders ``<variant>_seed<s>_order<k>`` (seed 0 in the given order keeps
``<variant>``). Several runs per variant give
``..._seeds<list>[_orders<K>].{json,md}``: mean ± sample standard deviation
over the runs, then every run.

Variants named after a method use the paper's hyper-parameters (the
package's defaults; ``ltgan-balanced`` is LT-GANs with ``--mixing-ratio
balanced``). LT-GANs (``ltgan``) cannot be asked for a class, so
its row has no accuracy; the table of unconditional replay reports gives,
for it and DGR, the fraction of samples the evaluator confidently assigns to
a seen class, the evaluator-feature FID against the seen classes' test
images, DGR's solver accuracy, how often DGR's solver labels the samples the
evaluator recognises as the evaluator does, and the LT-GAN student's NLL.

The ``-fast`` variants use the library's ``fast`` preset (``keras_mergan.run.presets``):
settings meant for budgets far below the paper's, reported beside them: a
linear learning-rate warm-up over each task's first 100 iterations (a fresh
Adam's first steps are where a short task forgets most), RA's alignment
weighed as a per-pixel mean squared error that does not fade with the number
of old classes, JTR's old classes weighing together as much as the new one,
and EWC's lambda at 3e3 for the package's per-sample Fisher: the paper's 1e9
belongs to the scale of its own Fisher estimate and, with this one, holds the
generator at the first task's weights. Iterations per task always come from
this benchmark's ``--budget`` (reports recorded before this name called
the ``-fast`` variants ``-short``; they are read under the new name).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from keras_mergan.evaluation.continual import AccuracyMatrix, summarize
from keras_mergan.run_folder import (
    GRID_FILE,
    finished_tasks,
    read_run_info,
    read_task_metrics,
    task_dir,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED_DATASETS = HERE.parent.parent / "shared" / "datasets"
SHARED_MNIST = SHARED_DATASETS / "mnist.npz"
SHARED_SVHN = SHARED_DATASETS / "svhn"
SVHN_TRAIN_FILE = "train_32x32.mat"

# Iterations per task of each budget; "paper" is the paper's, per dataset.
BUDGETS = {
    "quick": {"mnist": 40, "svhn": 40},
    "cpu": {"mnist": 1000, "svhn": 1000},
    "paper": {"mnist": 4000, "svhn": 8000},
}

# MeRGAN paper, Table 1: accuracy (%) after 5 and after 10 tasks.
PAPER = {
    "mnist": {
        "jt": (97.66, 96.92),
        "sft": (19.87, 10.06),
        "ewc": (70.62, 77.03),
        "dgr": (90.39, 85.40),
        "jtr": (97.93, 97.00),
        "ra": (98.19, 97.01),
    },
    "svhn": {
        "jt": (85.30, 84.82),
        "sft": (19.35, 10.10),
        "ewc": (39.84, 33.02),
        "dgr": (61.29, 47.28),
        "jtr": (80.90, 66.50),
        "ra": (76.05, 66.78),
    },
}

# Scores of the unconditional replay methods' task reports
# (keras_mergan.evaluation.unconditional), reported beside the accuracy table: LT-GANs
# cannot be asked for a class, so they have no generated-image accuracy.
REPLAY_REPORT = {
    "seen_class_fraction": "seen-class samples (%)",
    "fid": "FID",
    "solver_accuracy": "solver accuracy (%)",
    "solver_agreement": "solver agrees on recognised samples (%)",
    "student_nll": "student NLL (nats)",
}
PERCENT_SCORES = {"seen_class_fraction", "solver_accuracy", "solver_agreement"}

# Benchmark variant -> (paper row, `keras-mergan train` arguments): each
# method with the paper preset, and "-fast" ones with the fast preset.
VARIANTS = {
    **{
        method: (method, ["--method", method, "--preset", "paper"])
        for method in ("jt", "sft", "ewc", "dgr", "jtr", "ra")
    },
    "jtr+ra": (None, ["--method", "jtr+ra", "--preset", "paper"]),
    "ltgan": (None, ["--method", "ltgan", "--preset", "paper"]),
    "ltgan-balanced": (
        None,
        ["--method", "ltgan", "--preset", "paper", "--mixing-ratio", "balanced"],
    ),
    **{
        f"{method}-fast": (method, ["--method", method, "--preset", "fast"])
        for method in ("jtr", "ra", "ewc")
    },
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--budget",
        choices=sorted(BUDGETS),
        default="quick",
        help="iterations per task: quick (40), cpu (1000) or paper (the paper's)",
    )
    parser.add_argument(
        "--iters-per-task", type=int, help="overrides the budget's iterations"
    )
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="training precision (keras-mergan train --precision)",
    )
    parser.add_argument(
        "--methods",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of: {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--dataset",
        default="mnist",
        help="mnist, svhn, or a path to an MNIST .npz or SVHN's train_32x32.mat",
    )
    parser.add_argument("--tasks", default="0-9")
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=1000,
        help="generated images per class scored after each task",
    )
    parser.add_argument(
        "--seeds",
        type=_int_list,
        default=[0],
        help="comma-separated training seeds; several give mean ± std",
    )
    parser.add_argument(
        "--class-orders",
        type=int,
        default=0,
        help="K > 0: train each seed on K random orders of --tasks' classes "
        "(order k drawn with numpy seed k) instead of the given order",
    )
    parser.add_argument("--runs", type=Path, default=HERE / "runs" / "table1")
    parser.add_argument("--fresh", action="store_true", help="discard earlier runs")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained at the same time, each in its own process (on one "
        "GPU: see benchmarks/accelerator_table1.sh)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        help="seconds from this command's start after which runs still "
        "training are stopped and the report is written from the tasks they "
        "finished",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        help="keras-mergan train --checkpoint-every (default: its own)",
    )
    parser.add_argument(
        "--grids",
        action="store_true",
        help="copy each run's last finished grid into the results folder",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="where reports are written"
    )
    parser.add_argument(
        "--warm-evaluator",
        action="store_true",
        help="only load or train and cache the dataset's evaluator, so that "
        "concurrent runs do not each train it",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only collect existing runs"
    )
    args = parser.parse_args(argv)
    unknown = set(args.methods.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {list(VARIANTS)}")
    if args.iters_per_task is not None and args.iters_per_task < 1:
        parser.error("--iters-per-task must be >= 1")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    if args.class_orders < 0:
        parser.error("--class-orders must be >= 0")
    if args.class_orders and not _is_class_list(args.tasks):
        parser.error("--class-orders needs --tasks as classes: '0-9' or '0,1,2'")
    try:
        args.benchmark, args.dataset = resolve_dataset(args.dataset)
    except FileNotFoundError as error:
        parser.error(str(error))
    return args


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def _is_class_list(spec: str) -> bool:
    return all(part.replace("-", "").isdigit() for part in spec.split(","))


def class_order(spec: str, order: int) -> str:
    """`--tasks` for class order `order`: 0 keeps `spec`, k > 0 shuffles it.

    Order k is the permutation numpy's generator of seed k draws of the
    classes of `spec` ("0-9" or "0,1,2"): the same k gives the same order on
    every machine.

    Example:
        >>> class_order("0-4", 0), class_order("0-4", 1)
        ('0-4', '4,0,1,2,3')
    """
    if order == 0:
        return spec
    classes = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        classes += range(int(low), int(high or low) + 1)
    shuffled = np.random.default_rng(order).permutation(classes)
    return ",".join(str(c) for c in shuffled)


def repetitions(args) -> list[tuple[int, int]]:
    """(seed, class order) of every run of a variant; order 0 is `--tasks`'."""
    orders = range(1, args.class_orders + 1) if args.class_orders else [0]
    return [(seed, order) for seed in args.seeds for order in orders]


def resolve_dataset(name: str) -> tuple[str, str]:
    """(benchmark: "mnist" or "svhn", `--dataset` for `keras-mergan train`)."""
    if name == "mnist":
        return "mnist", str(SHARED_MNIST) if SHARED_MNIST.exists() else "mnist"
    if name == "svhn":
        if not (SHARED_SVHN / SVHN_TRAIN_FILE).is_file():
            raise FileNotFoundError(
                f"no SVHN in {SHARED_SVHN}: put {SVHN_TRAIN_FILE} and "
                "test_32x32.mat (the cropped digits of "
                "ufldl.stanford.edu/housenumbers) there, or pass the path of "
                f"{SVHN_TRAIN_FILE} as --dataset"
            )
        return "svhn", str(SHARED_SVHN)
    path = Path(name)
    svhn = path.suffix.lower() == ".mat" or (path / SVHN_TRAIN_FILE).is_file()
    return ("svhn" if svhn else "mnist"), name


def run_dir(args, variant: str, seed: int = 0, order: int = 0) -> Path:
    """The run folder of `variant`; seed 0 in the given order keeps the plain name."""
    name = variant.replace("+", "_")
    if seed:
        name += f"_seed{seed}"
    if order:
        name += f"_order{order}"
    return args.runs / label(args, "-") / name


def label(args, separator: str) -> str:
    parts = [args.budget, str(iterations(args)), args.backend]
    if args.benchmark != "mnist":
        parts.insert(0, args.benchmark)
    if args.precision != "float32":
        parts.append(args.precision)
    return separator.join(parts)


def iterations(args) -> int:
    return args.iters_per_task or BUDGETS[args.budget][args.benchmark]


def train_command(args, variant: str, seed: int = 0, order: int = 0) -> list[str]:
    """The `keras-mergan train` command of one run of `variant`."""
    command = [
        sys.executable,
        "-m",
        "keras_mergan.cli",
        "train",
        *VARIANTS[variant][1],
        "--dataset",
        args.dataset,
        "--tasks",
        class_order(args.tasks, order),
        "--iters-per-task",
        str(iterations(args)),
        "--eval-samples",
        str(args.eval_samples),
        "--backend",
        args.backend,
        "--precision",
        args.precision,
        "--seed",
        str(seed),
        "--out",
        str(run_dir(args, variant, seed, order)),
    ]
    if args.checkpoint_every is not None:
        command += ["--checkpoint-every", str(args.checkpoint_every)]
    return command


def _forward(process: subprocess.Popen, prefix: str) -> None:
    """Prints `process`'s output lines as they come, each after `prefix`."""
    for line in process.stdout:
        print(f"{prefix}{line}", end="", flush=True)


def _stop(process: subprocess.Popen) -> None:
    """Ends a training process (it resumes from its last checkpoint next time)."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def train_all(args, runs: list[tuple[str, int, int]], started: float) -> int:
    """Trains each (variant, seed, class order), `--jobs` processes at a time.

    With several jobs each output line starts with its run's name. Runs
    still training `--deadline` seconds after `started` (`time.monotonic()`)
    are stopped, and runs not started by then are not; both count as failed.
    Returns 0 when every run finished.
    """
    queue, running, status = list(runs), [], 0
    while queue or running:
        late = args.deadline is not None and time.monotonic() - started > args.deadline
        while queue and len(running) < args.jobs and not late:
            variant, seed, order = queue.pop(0)
            out = run_dir(args, variant, seed, order)
            if args.fresh and out.exists():
                shutil.rmtree(out)
            command = train_command(args, variant, seed, order)
            print(f"\n=== {variant}: {' '.join(command[2:])}", flush=True)
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            prefix = f"[{out.name}] " if args.jobs > 1 else ""
            forward = threading.Thread(target=_forward, args=(process, prefix))
            forward.start()
            running.append((process, forward))
        if late:
            for process, _ in running:
                _stop(process)
            if queue or running:
                print(
                    f"Deadline of {args.deadline:.0f} s: {len(running)} run(s) "
                    f"stopped, {len(queue)} not started.",
                    flush=True,
                )
            status |= bool(queue)
            queue = []
        for process, forward in list(running):
            if process.poll() is not None:
                forward.join()
                status |= process.returncode != 0
                running.remove((process, forward))
        time.sleep(0.2)
    return int(status)


def collect(args, variant: str, seed: int = 0, order: int = 0) -> dict:
    out = run_dir(args, variant, seed, order)
    by_task = {n: read_task_metrics(out, n) for n in finished_tasks(out)}
    scored = {t: m for t, m in by_task.items() if "mean_accuracy" in m}
    paper_row = VARIANTS[variant][0]
    paper = PAPER[args.benchmark]
    row = {
        "variant": variant,
        "arguments": VARIANTS[variant][1],
        "run_dir": str(out),
        "tasks_completed": max(by_task, default=0),
        "paper": dict(zip(("after_5", "after_10"), paper[paper_row], strict=True))
        if paper_row in paper
        else None,
        "accuracy_per_task": {
            task: 100 * m["mean_accuracy"] for task, m in sorted(scored.items())
        },
        "accuracy_per_class": {
            task: {c: 100 * a for c, a in m["accuracy"].items()}
            for task, m in sorted(scored.items())
        },
        "replay_report": {
            task: {key: m[key] for key in REPLAY_REPORT if key in m}
            for task, m in sorted(by_task.items())
            if REPLAY_REPORT.keys() & m.keys()
        },
        "sample_classes": {
            task: m["generated_classes"]
            for task, m in sorted(by_task.items())
            if "generated_classes" in m
        },
        "replay_health": {
            task: m["replay_health"]
            for task, m in sorted(by_task.items())
            if "replay_health" in m
        },
        "seconds": sum(m["seconds"] for m in by_task.values()),
        "seed": seed,
        "class_order": order,
        "tasks": class_order(args.tasks, order),
    }
    for task in (5, 10):
        row[f"after_{task}"] = row["accuracy_per_task"].get(task)
    if scored:
        info = read_run_info(out)
        matrix = AccuracyMatrix.from_rows(list(scored.values()), info.class_names)
        row["accuracy_matrix"] = matrix.to_dict()
        row["continual"] = summarize(matrix)
    return row


def merge_rows(results_file: Path, rows: list[dict]) -> list[dict]:
    """`rows` with the other variants' rows of an earlier report of this setup.

    Methods are run one invocation at a time on a CPU (about an hour each at
    the cpu budget), so a report keeps every variant measured so far, in
    `VARIANTS` order. A variant run again replaces its earlier row unless it
    has no finished task here (its run folder is gone, say).
    """
    merged = {}
    if results_file.is_file():
        earlier = json.loads(results_file.read_text())["rows"]
        merged = {_current_name(row["variant"]): row for row in earlier}
        for variant, row in merged.items():
            row["variant"] = variant
    for row in rows:
        if row["tasks_completed"] or row["variant"] not in merged:
            merged[row["variant"]] = row
    return [merged[variant] for variant in VARIANTS if variant in merged]


def _current_name(variant: str) -> str:
    """A variant's name now: the fast-preset ones were called "-short"."""
    return (
        variant.removesuffix("-short") + "-fast"
        if variant.endswith("-short")
        else variant
    )


def _by_int(mapping: dict) -> dict:
    """`mapping` keyed by int: JSON keys are strings once a report is read back."""
    return {int(key): value for key, value in mapping.items()}


def _table(title: str, header: list, body: list[list[str]]) -> list[str]:
    """Markdown lines of a titled table, numbers right-aligned."""
    return [
        "",
        title,
        "",
        "| " + " | ".join(str(h) for h in header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *("| " + " | ".join(cells) + " |" for cells in body),
    ]


def markdown(args, rows) -> str:
    cell = _cell
    lines = [
        f"# MeRGAN Table 1, {args.benchmark.upper()} ({args.budget}: "
        f"{iterations(args)} iterations per task, backend {args.backend})",
        "",
        "Evaluator accuracy (%) of generated images, mean over the classes seen "
        f"so far, {args.eval_samples} images per class.",
        "",
        "| method | after 5 tasks | paper | after 10 tasks | paper | tasks done "
        "| training time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        paper = row["paper"] or {}
        lines.append(
            f"| {row['variant']} | {cell(row['after_5'])} | "
            f"{cell(paper.get('after_5'))} | {cell(row['after_10'])} | "
            f"{cell(paper.get('after_10'))} | {row['tasks_completed']} | "
            f"{row['seconds']:.0f} |"
        )
    tasks = sorted({t for row in rows for t in _by_int(row["accuracy_per_task"])})
    classes = sorted(
        {
            c
            for row in rows
            for per in row["accuracy_per_class"].values()
            for c in _by_int(per)
        }
    )
    per_task = []
    for row in rows:
        accuracy = _by_int(row["accuracy_per_task"])
        if accuracy:
            per_task.append([row["variant"]] + [cell(accuracy.get(t)) for t in tasks])
    if per_task:
        lines += _table(
            "Mean accuracy (%) after each task:", ["method", *tasks], per_task
        )
    per_class = []
    for row in rows:
        by_task = _by_int(row["accuracy_per_class"])
        if by_task:
            last = max(by_task)
            accuracy = _by_int(by_task[last])
            per_class.append(
                [row["variant"], str(last)] + [cell(accuracy.get(c)) for c in classes]
            )
    if per_class:
        lines += _table(
            "Accuracy (%) per class after the last finished task:",
            ["method", "task", *classes],
            per_class,
        )
    reports = []
    for row in rows:
        for task, scores in _by_int(row.get("replay_report", {})).items():
            reports.append(
                [row["variant"], str(task)]
                + [
                    cell(
                        scores[key] * (100 if key in PERCENT_SCORES else 1)
                        if key in scores
                        else None
                    )
                    for key in REPLAY_REPORT
                ]
            )
    if reports:
        lines += _table(
            "Unconditional replay (DGR, LT-GANs) after each task: the evaluator's "
            f"scores of {args.eval_samples} unconditional samples against the "
            "seen classes, the solver's accuracy and the student's NLL on their "
            "test images:",
            ["method", "task", *REPLAY_REPORT.values()],
            reports,
        )
    lines += continual_tables(rows)
    last_shares = {
        row["variant"]: (max(by_task), _by_int(by_task[max(by_task)]))
        for row in rows
        if (by_task := _by_int(row.get("sample_classes", {})))
    }
    share_classes = sorted({c for _, share in last_shares.values() for c in share})
    if last_shares:
        lines += _table(
            "Classes of the unconditional samples after the last finished task "
            "(% of the samples the evaluator assigns to each class):",
            ["method", "task", *share_classes],
            [
                [variant, str(task)]
                + [cell(100 * share[c] if c in share else None) for c in share_classes]
                for variant, (task, share) in last_shares.items()
            ],
        )
    return "\n".join(lines) + "\n"


def _percent(value):
    return None if value is None else 100 * value


def continual_tables(rows) -> list[str]:
    """Markdown of the accuracy matrices' summaries and of replay health."""
    summaries = [row for row in rows if row.get("continual")]
    lines = []
    if summaries:
        lines += _table(
            "Continual-learning summaries of the task-by-class accuracy matrix "
            "(%): average incremental accuracy, mean per-class forgetting (best "
            "earlier accuracy minus the last) and backward transfer:",
            ["method", "avg. incremental acc.", "mean forgetting", "BWT"],
            [
                [row["variant"]]
                + [
                    _cell(_percent(row["continual"][key]))
                    for key in (
                        "average_incremental_accuracy",
                        "mean_forgetting",
                        "backward_transfer",
                    )
                ]
                for row in summaries
            ],
        )
        forgetting = [row["continual"]["forgetting"] for row in summaries]
        names = list(dict.fromkeys(c for per_class in forgetting for c in per_class))
        lines += _table(
            "Forgetting (%) per class after the last finished task:",
            ["method", *names],
            [
                [row["variant"]] + [_cell(_percent(per_class.get(c))) for c in names]
                for row, per_class in zip(summaries, forgetting, strict=True)
            ],
        )
    health = [
        [row["variant"], str(task), *_replay_health_cells(report)]
        for row in rows
        for task, report in _by_int(row.get("replay_health", {})).items()
    ]
    if health:
        lines += _table(
            "Replay health after each task: the evaluator on the replay "
            "generator's samples of the old classes (worst class):",
            ["method", "task", "min. accuracy (%)", "min. share / even", "warnings"],
            health,
        )
    return lines


def _replay_health_cells(report: dict) -> list[str]:
    accuracy = report.get("accuracy")
    even = 1 / len(report["old_classes"])
    return [
        _cell(_percent(min(accuracy.values())) if accuracy else None),
        _cell(min(report["class_share"].values()) / even),
        str(len(report["warnings"])),
    ]


def _cell(value) -> str:
    return "-" if value is None else f"{value:.2f}"


# Per-run scores averaged over seeds and class orders, in %: key -> title.
SPREAD = {
    "after_5": "after 5 tasks",
    "after_10": "after 10 tasks",
    "final": "after the last task",
    "average_incremental_accuracy": "avg. incremental acc.",
    "mean_forgetting": "mean forgetting",
    "backward_transfer": "BWT",
}


def run_scores(row: dict) -> dict:
    """The `SPREAD` scores of one run, in % (None where undefined)."""
    continual = row.get("continual") or {}
    accuracy = _by_int(row["accuracy_per_task"])
    scores = {
        "after_5": row["after_5"],
        "after_10": row["after_10"],
        "final": accuracy[max(accuracy)] if accuracy else None,
    }
    for key in ("average_incremental_accuracy", "mean_forgetting", "backward_transfer"):
        scores[key] = _percent(continual.get(key))
    return scores


def spread(rows: list[dict]) -> dict:
    """Mean, sample standard deviation (ddof 1) and count of each `SPREAD` score.

    Example:
        >>> rows = [{"after_5": 90.0}, {"after_5": 94.0}]
        >>> spread([{**r, "after_10": None, "accuracy_per_task": {}} for r in rows])
        {'after_5': {'mean': 92.0, 'std': 2.8284271247461903, 'n': 2}}
    """
    result = {}
    for key in SPREAD:
        values = [v for row in rows if (v := run_scores(row)[key]) is not None]
        if values:
            result[key] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "n": len(values),
            }
    return result


def repeated_markdown(args, variants: list[str], runs: list[dict]) -> str:
    """Mean ± std over the runs of each variant, then the runs one by one."""
    orders = (
        f"{args.class_orders} random class orders of {args.tasks}"
        if args.class_orders
        else f"class order {args.tasks}"
    )
    lines = [
        f"# MeRGAN Table 1, {args.benchmark.upper()} ({args.budget}: "
        f"{iterations(args)} iterations per task, backend {args.backend}, "
        f"{args.precision}), seeds {', '.join(map(str, args.seeds))}, {orders}",
        "",
        "Evaluator accuracy (%) of generated images, mean over the classes seen "
        f"so far, {args.eval_samples} images per class: mean ± sample standard "
        "deviation over the runs (n).",
    ]
    body = []
    for variant in variants:
        scores = spread([row for row in runs if row["variant"] == variant])
        cells = [
            "-"
            if key not in scores
            else f"{scores[key]['mean']:.2f} ± {scores[key]['std']:.2f} "
            f"({scores[key]['n']})"
            for key in SPREAD
        ]
        body.append([variant, *cells])
    lines += _table("", ["method", *SPREAD.values()], body)[2:]
    lines += _table(
        "Runs:",
        ["method", "seed", "class order", "tasks", *SPREAD.values()],
        [
            [row["variant"], str(row["seed"]), str(row["class_order"]), row["tasks"]]
            + [_cell(value) for value in run_scores(row).values()]
            for row in runs
        ],
    )
    lines += continual_tables(
        [
            {**row, "variant": f"{row['variant']} s{row['seed']} o{row['class_order']}"}
            for row in runs
        ]
    )
    return "\n".join(lines) + "\n"


def warm_evaluator(args) -> None:
    """Loads, or trains and caches, the evaluator the runs will score with."""
    from keras_mergan import RunConfig
    from keras_mergan.evaluation.evaluator import Evaluator
    from keras_mergan.run.training import load_run_data

    # The dataset as `keras-mergan train` loads it (resized to the model's size).
    dataset = load_run_data(RunConfig(dataset=args.dataset, tasks=args.tasks)).dataset
    print(f"Evaluator of {dataset.name}...", flush=True)
    Evaluator.for_dataset(dataset)


def copy_grids(
    args, stem: str, variants: list[str], seed: int = 0, order: int = 0
) -> list[Path]:
    """Each variant's last finished grid as `<stem>_<variant>_task<NN>_grid.png`."""
    copied = []
    for variant in variants:
        out = run_dir(args, variant, seed, order)
        tasks = finished_tasks(out) if out.is_dir() else []
        if tasks:
            name = f"{stem}_{variant.replace('+', '_')}_task{tasks[-1]:02d}_grid.png"
            target = args.results / name
            shutil.copyfile(task_dir(out, tasks[-1]) / GRID_FILE, target)
            copied.append(target)
    return copied


def main(argv=None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    if args.warm_evaluator:
        warm_evaluator(args)
        return 0
    variants = args.methods.split(",")
    repeats = repetitions(args)
    status = 0
    if not args.report_only:
        if args.jobs > 1:
            # One process trains the evaluator if it is not cached yet,
            # rather than every concurrent run at once.
            status |= subprocess.run(
                [sys.executable, __file__, "--warm-evaluator", *(argv or sys.argv[1:])],
                env={**os.environ, "KERAS_BACKEND": args.backend},
            ).returncode
        runs = [(v, seed, order) for v in variants for seed, order in repeats]
        status |= train_all(args, runs, started)
    args.results.mkdir(parents=True, exist_ok=True)
    report = {
        "budget": args.budget,
        "iters_per_task": iterations(args),
        "backend": args.backend,
        "benchmark": args.benchmark,
        "dataset": args.dataset,
        "tasks": args.tasks,
        "eval_samples": args.eval_samples,
    }
    stem = f"table1_{label(args, '_')}"
    if len(repeats) > 1:
        stem += "_seeds" + "-".join(map(str, args.seeds))
        if args.class_orders:
            stem += f"_orders{args.class_orders}"
        runs = [collect(args, v, *repeat) for v in variants for repeat in repeats]
        report.update(
            seeds=args.seeds,
            class_orders=args.class_orders,
            summary={
                v: spread([row for row in runs if row["variant"] == v])
                for v in variants
            },
            runs=runs,
        )
        table = repeated_markdown(args, variants, runs)
    else:
        (seed, order) = repeats[0]
        if (seed, order) != (0, 0):
            stem += f"_seed{seed}" + (f"_order{order}" if order else "")
        rows = merge_rows(
            args.results / f"{stem}.json",
            [collect(args, variant, seed, order) for variant in variants],
        )
        report["rows"] = rows
        table = markdown(args, rows)
    written = [args.results / f"{stem}.json", args.results / f"{stem}.md"]
    written[0].write_text(json.dumps(report, indent=2))
    written[1].write_text(table)
    if args.grids and len(repeats) == 1:
        written += copy_grids(args, stem, variants, *repeats[0])
    print("\n" + table)
    for path in written:
        print(f"Wrote {path}")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
