"""MeRGAN Table 1 on MNIST: generated-image accuracy after 5 and 10 tasks.

Usage::

    python benchmarks/table1.py --preset quick                 # minutes on CPU
    python benchmarks/table1.py --preset cpu --methods jtr,ra  # 1000 it/task
    python benchmarks/table1.py --preset paper --backend jax   # 4000 it/task

Every method trains in its own process through ``keras-mergan train`` on
digits 0..9, one digit per task, into ``RUNS/<preset>/<method>/``. The
training command checkpoints as it goes, so running the benchmark again after
an interruption resumes each unfinished method where it stopped and skips
finished ones; ``--fresh`` starts over. After each run, the evaluator
accuracy of generated images (mean over seen classes, DESIGN.md section 4) is
read from ``task_05/metrics.json`` and ``task_10/metrics.json`` and printed
beside the paper's Table 1. Results go to
``benchmarks/results/table1_<preset>.{json,md}``; a method that did not reach
task 5 or 10 shows "-" there.

Variants whose name ends in ``(paper)`` use the paper's hyper-parameters;
the others use this package's defaults for short budgets. Both are reported
side by side.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED_MNIST = HERE.parent.parent / "shared" / "datasets" / "mnist.npz"

PRESETS = {"quick": 40, "cpu": 1000, "paper": 4000}

# MeRGAN paper, Table 1, MNIST: accuracy (%) after 5 and after 10 tasks.
PAPER = {
    "jt": (97.66, 96.92),
    "sft": (19.87, 10.06),
    "ewc": (70.62, 77.03),
    "dgr": (90.39, 85.40),
    "jtr": (97.93, 97.00),
    "ra": (98.19, 97.01),
}

# Benchmark variant -> (paper row, `keras-mergan train` arguments).
VARIANTS = {
    "jt": ("jt", ["--method", "jt"]),
    "sft": ("sft", ["--method", "sft"]),
    "ewc": ("ewc", ["--method", "ewc"]),
    "jtr": ("jtr", ["--method", "jtr"]),
    "ra": ("ra", ["--method", "ra"]),
    "jtr+ra": (None, ["--method", "jtr+ra"]),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument(
        "--iters-per-task", type=int, help="overrides the preset's iterations"
    )
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument(
        "--methods",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of: {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--dataset",
        default=str(SHARED_MNIST) if SHARED_MNIST.exists() else "mnist",
        help="MNIST .npz (default: the shared copy if present, else download)",
    )
    parser.add_argument("--tasks", default="0-9")
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=1000,
        help="generated images per class scored after each task",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=HERE / "runs" / "table1")
    parser.add_argument("--fresh", action="store_true", help="discard earlier runs")
    parser.add_argument(
        "--report-only", action="store_true", help="only collect existing runs"
    )
    args = parser.parse_args(argv)
    unknown = set(args.methods.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {list(VARIANTS)}")
    if args.iters_per_task is not None and args.iters_per_task < 1:
        parser.error("--iters-per-task must be >= 1")
    return args


def run_dir(args, variant: str) -> Path:
    label = f"{args.preset}-{iterations(args)}-{args.backend}"
    return args.runs / label / variant.replace("+", "_")


def iterations(args) -> int:
    return args.iters_per_task or PRESETS[args.preset]


def train(args, variant: str) -> dict:
    out = run_dir(args, variant)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    command = [
        sys.executable,
        "-m",
        "keras_mergan.cli",
        "train",
        *VARIANTS[variant][1],
        "--dataset",
        args.dataset,
        "--tasks",
        args.tasks,
        "--iters-per-task",
        str(iterations(args)),
        "--eval-samples",
        str(args.eval_samples),
        "--backend",
        args.backend,
        "--seed",
        str(args.seed),
        "--out",
        str(out),
        "--verbose",
        "2",
    ]
    print(f"\n=== {variant}: {' '.join(command[2:])}", flush=True)
    started = time.time()
    completed = subprocess.run(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return {"returncode": completed.returncode, "seconds": time.time() - started}


def collect(args, variant: str) -> dict:
    out = run_dir(args, variant)
    by_task = {}
    for path in sorted(out.glob("task_*/metrics.json")):
        metrics = json.loads(path.read_text())
        if "mean_accuracy" in metrics:
            by_task[metrics["task"]] = metrics
    paper_row = VARIANTS[variant][0]
    row = {
        "variant": variant,
        "arguments": VARIANTS[variant][1],
        "run_dir": str(out),
        "tasks_completed": max(by_task, default=0),
        "paper": dict(zip(("after_5", "after_10"), PAPER[paper_row], strict=True))
        if paper_row in PAPER
        else None,
        "accuracy_per_task": {
            task: 100 * m["mean_accuracy"] for task, m in sorted(by_task.items())
        },
        "accuracy_per_class": {
            task: {c: 100 * a for c, a in m["accuracy"].items()}
            for task, m in sorted(by_task.items())
        },
        "seconds": sum(m["seconds"] for m in by_task.values()),
    }
    for task in (5, 10):
        row[f"after_{task}"] = row["accuracy_per_task"].get(task)
    return row


def markdown(args, rows) -> str:
    def cell(value):
        return "-" if value is None else f"{value:.2f}"

    lines = [
        f"# MeRGAN Table 1, MNIST ({args.preset}: {iterations(args)} iterations "
        f"per task, backend {args.backend})",
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
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    variants = args.methods.split(",")
    status = 0
    if not args.report_only:
        for variant in variants:
            status |= train(args, variant)["returncode"] != 0
    rows = [collect(args, variant) for variant in variants]
    report = {
        "preset": args.preset,
        "iters_per_task": iterations(args),
        "backend": args.backend,
        "dataset": args.dataset,
        "tasks": args.tasks,
        "eval_samples": args.eval_samples,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"table1_{args.preset}_{iterations(args)}_{args.backend}"
    table = markdown(args, rows)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{stem}.md").write_text(table)
    print("\n" + table)
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
