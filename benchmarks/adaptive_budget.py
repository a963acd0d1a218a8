"""The adaptive per-task budget (``--iters-per-task auto``) against fixed ones.

Usage::

    python benchmarks/adaptive_budget.py --cpu 1              # every run
    python benchmarks/adaptive_budget.py --datasets fashion --budgets auto,1000
    python benchmarks/adaptive_budget.py --report-only        # tables only
    python benchmarks/adaptive_budget.py --across-seeds 0=benchmarks/results \
        1=benchmarks/results/adaptive_budget_seed1           # seeds side by side
    python benchmarks/adaptive_budget.py --seed 1 --runs ~/runs/adaptive_budget_seed1 \
        --results benchmarks/results/adaptive_budget_seed1   # another seed

Each run is ``python -m keras_mergan train`` with no preset named (``--preset
auto``) and the README's first command's model size (``--width 16
--precision auto``), one process per run (pinned with ``taskset -c CPU``
under ``--cpu``), into ``RUNS/<dataset>/<method>/<budget>/``; running the
script again resumes unfinished runs and skips finished ones. Five tasks of
one category each:

- ``digits``: the built-in digits 0-4;
- ``fashion``: Fashion-MNIST's first five categories (T-shirt/top, trouser,
  pullover, dress, coat), converted as ``benchmarks/default_settings.py``
  does.

The budgets: ``auto`` (each task stops once its new categories are learned,
at most ``--max-iters-per-task``; folder ``auto-max<N>``) and fixed numbers
of iterations per task (``500``, ``1000``). Reports the evaluator accuracy
after every task, the iterations each task used and why it stopped, and the
training time (the sum of the tasks' seconds), and puts ``auto`` beside the
fixed budgets. The targets (reported, not asserted): ``auto`` within 1 point
of fixed 1000's final mean accuracy using at most 60% of its iterations, and
at least 3 points above fixed 500 on Fashion-MNIST.

Results go to ``benchmarks/results/adaptive_budget.{json,md}``, rewritten
after every finished run from whatever run folders exist.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from default_settings import FASHION_NAMES, fashion_mnist_npz

from keras_mergan.run_folder import finished_tasks, read_run_info, read_task_metrics

HERE = Path(__file__).resolve().parent
AUTO = "auto"
NUM_TASKS = 5
DATASETS = {
    "digits": "0,1,2,3,4",
    "fashion": ",".join(FASHION_NAMES[:NUM_TASKS]),
}
METHODS = ("jtr", "ra")
DEFAULT_MAX_ITERS_PER_TASK = 4000
#: The fixed budgets `auto` is measured against.
REFERENCE_BUDGET = "1000"
BASELINE_BUDGET = "500"
TARGET_GAP_POINTS = 1.0
TARGET_ITERATION_FRACTION = 0.6
TARGET_GAIN_POINTS = 3.0
#: Where `auto` must beat the smaller fixed budget by TARGET_GAIN_POINTS.
GAIN_TARGET_DATASETS = ("fashion",)
#: The record's comparison keys.
GAP_KEY = f"accuracy_gap_vs_fixed_{REFERENCE_BUDGET}"
FRACTION_KEY = f"iteration_fraction_vs_fixed_{REFERENCE_BUDGET}"
GAIN_KEY = f"accuracy_gain_vs_fixed_{BASELINE_BUDGET}"


def budget_folder(budget: str, max_iters_per_task: int) -> str:
    """The run folder's name for a budget: its cap is part of an auto run's."""
    return f"{AUTO}-max{max_iters_per_task}" if budget == AUTO else budget


def _budget_order(folder: str) -> tuple[int, int]:
    """Auto runs first (by cap), then the fixed budgets, smallest first."""
    if folder.startswith(AUTO):
        return 0, int(folder.removeprefix(f"{AUTO}-max"))
    return 1, int(folder)


def train_command(
    args: argparse.Namespace, dataset: str, data: str, method: str, budget: str
) -> list[str]:
    """The `keras-mergan train` command line of one run."""
    command = [
        sys.executable,
        "-m",
        "keras_mergan",
        "train",
        "--method",
        method,
        "--dataset",
        data,
        "--tasks",
        DATASETS[dataset],
        "--iters-per-task",
        budget,
        "--width",
        "16",
        "--precision",
        "auto",
        "--out",
        str(run_folder(args.runs, dataset, method, budget, args.max_iters_per_task)),
    ]
    if budget == AUTO:
        command += ["--max-iters-per-task", str(args.max_iters_per_task)]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    if args.cpu is not None:
        command = ["taskset", "-c", args.cpu, *command]
    return command


def run_folder(
    runs: Path, dataset: str, method: str, budget: str, max_iters_per_task: int
) -> Path:
    """`RUNS/<dataset>/<method>/<budget>`: one run's folder."""
    return runs / dataset / method / budget_folder(budget, max_iters_per_task)


def train(args: argparse.Namespace, dataset: str, method: str, budget: str) -> bool:
    """Trains (or resumes) one run; False if it failed."""
    data = str(fashion_mnist_npz(args.data)) if dataset == "fashion" else dataset
    command = train_command(args, dataset, data, method, budget)
    print(f"\n=== {dataset} {method} {budget}: {' '.join(command)}", flush=True)
    status = subprocess.run(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if status.returncode != 0:
        print(f"=== {dataset} {method} {budget}: exit {status.returncode}", flush=True)
    return status.returncode == 0


def task_row(metrics: dict) -> dict:
    """What the report keeps of a finished task's `metrics.json`."""
    budget = metrics.get("budget", {})
    row = {
        "task": metrics["task"],
        "iterations": metrics["iterations"],
        "stop_reason": budget.get("stop_reason", "fixed"),
        "mean_accuracy": round(100 * metrics["mean_accuracy"], 2),
        "confident_share": round(100 * metrics["mean_confident_share"], 2),
        "seconds": metrics["seconds"],
    }
    if "summary" in budget:
        row["budget_summary"] = budget["summary"]
        # The share of the task's time its checks took (target: <= 5%).
        row["check_share"] = budget["check_share"]
    return row


def collect(run_dir: Path) -> dict:
    """One run's finished tasks and totals."""
    info = read_run_info(run_dir)
    metrics = [read_task_metrics(run_dir, n) for n in finished_tasks(run_dir)]
    tasks = [task_row(m) for m in metrics]
    return {
        "run_dir": str(run_dir),
        "preset": info.config.get("preset"),
        "seed": info.config.get("seed"),
        # An auto run's stopping rule, so that records of several rules compare.
        "rule": metrics[0].get("budget", {}).get("rule"),
        "backend": info.backend,
        "precision": info.precision,
        "finished": len(tasks) == info.num_tasks,
        "final_mean_accuracy": tasks[-1]["mean_accuracy"],
        "total_iterations": sum(t["iterations"] for t in tasks),
        "seconds": round(sum(t["seconds"] for t in tasks), 1),
        "tasks": tasks,
    }


def compare(runs: dict[str, dict], auto_folder: str, dataset: str) -> dict:
    """`auto` against the fixed budgets, where both runs are finished."""
    auto = runs.get(auto_folder)
    if auto is None or not auto["finished"]:
        return {}
    comparison = {"auto_run": auto_folder}
    reference = runs.get(REFERENCE_BUDGET)
    if reference is not None and reference["finished"]:
        gap = reference["final_mean_accuracy"] - auto["final_mean_accuracy"]
        fraction = auto["total_iterations"] / reference["total_iterations"]
        comparison |= {
            GAP_KEY: round(gap, 2),
            FRACTION_KEY: round(fraction, 3),
            "target_gap_and_fraction_met": _gap_target_met(gap, fraction),
        }
    baseline = runs.get(BASELINE_BUDGET)
    if baseline is not None and baseline["finished"]:
        gain = auto["final_mean_accuracy"] - baseline["final_mean_accuracy"]
        comparison[GAIN_KEY] = round(gain, 2)
        if dataset in GAIN_TARGET_DATASETS:
            comparison["target_gain_met"] = gain >= TARGET_GAIN_POINTS
    return comparison


def _gap_target_met(gap: float, fraction: float) -> bool:
    return gap <= TARGET_GAP_POINTS and fraction <= TARGET_ITERATION_FRACTION


def gather(runs: Path, max_iters_per_task: int) -> dict:
    """Every run folder under `runs` with a finished task, by dataset and
    method, with `auto`'s comparison to the fixed budgets."""
    record = {}
    auto_folder = budget_folder(AUTO, max_iters_per_task)
    for dataset in DATASETS:
        for method_dir in sorted(p for p in (runs / dataset).glob("*") if p.is_dir()):
            folders = sorted(
                (p.name for p in method_dir.iterdir() if finished_tasks(p)),
                key=_budget_order,
            )
            if not folders:
                continue
            by_budget = {name: collect(method_dir / name) for name in folders}
            record.setdefault(dataset, {})[method_dir.name] = {
                "runs": by_budget,
                **compare(by_budget, auto_folder, dataset),
            }
    return record


def cpu_name() -> str:
    """The processor's model name, as the system reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _stops(tasks: list[dict]) -> str:
    reasons = [t["stop_reason"] for t in tasks]
    return ", ".join(f"{r} {reasons.count(r)}" for r in dict.fromkeys(reasons))


def markdown(record: dict, machine: str) -> str:
    engines = sorted(
        {
            f"{run['backend']} {run['precision']}"
            for methods in record.values()
            for entry in methods.values()
            for run in entry["runs"].values()
        }
    )
    lines = [
        "# Adaptive per-task budget against fixed budgets",
        "",
        "`keras-mergan train --method M --dataset D --tasks T --iters-per-task B "
        "--width 16 --precision auto` (no preset named: `auto`), one process "
        f"per run. {machine}; backend and precision: {', '.join(engines) or '-'}. "
        "Evaluator accuracy (%) of the generated images, mean over the "
        "categories seen so far; iterations per task as used; training time "
        "is the sum of the tasks' seconds.",
        "",
        "| dataset | method | budget | "
        + " | ".join(f"after task {n}" for n in range(1, NUM_TASKS + 1))
        + " | iterations per task | total iterations | stopped by "
        "| confident after the last | training (s) |",
        "|---|---|---|" + "---:|" * NUM_TASKS + "---|---:|---|---:|---:|",
    ]
    rules = {
        json.dumps(run["rule"], sort_keys=True)
        for methods in record.values()
        for entry in methods.values()
        for run in entry["runs"].values()
        if run.get("rule")
    }
    notes = [
        f"Rule of the auto runs: {_rule_text(json.loads(r))}." for r in sorted(rules)
    ]
    for dataset, methods in record.items():
        for method, entry in methods.items():
            for budget, run in entry["runs"].items():
                after = [f"{t['mean_accuracy']:.1f}" for t in run["tasks"]]
                after += ["-"] * (NUM_TASKS - len(after))
                lines.append(
                    f"| {dataset} | {method} | {budget} | {' | '.join(after)} "
                    f"| {', '.join(str(t['iterations']) for t in run['tasks'])} "
                    f"| {run['total_iterations']} | {_stops(run['tasks'])} "
                    f"| {run['tasks'][-1]['confident_share']:.1f} "
                    f"| {run['seconds']:.0f} |"
                )
            notes += _comparison_lines(dataset, method, entry)
    return "\n".join([*lines, "", *notes]) + "\n"


def _rule_text(rule: dict) -> str:
    # Runs from before the two bars were told apart recorded one, `learned`.
    accuracy = rule.get("learned_accuracy", rule.get("learned"))
    confident = rule.get("learned_confident", rule.get("learned"))
    return (
        f"learned at {accuracy:.0%} of the real images' accuracy "
        f"and {confident:.0%} of their confident share; plateau "
        f"when {rule['patience']} checks gain less than {rule['min_delta']} "
        f"(a check every {rule['check_every']} iterations, at least "
        f"{rule['min_iterations']})"
    )


def _comparison_lines(dataset: str, method: str, entry: dict) -> list[str]:
    """The auto run's stop summaries and its gaps to the fixed budgets."""
    if "auto_run" not in entry:
        return []
    name = entry["auto_run"]
    auto = entry["runs"][name]
    lines = [
        f"- {dataset} {method} {name}, task {task['task']}: "
        f"{task['budget_summary']} (checks {100 * task['check_share']:.1f}% of "
        "its time)"
        for task in auto["tasks"]
        if "budget_summary" in task
    ]
    for budget, key in (
        (REFERENCE_BUDGET, GAP_KEY),
        (BASELINE_BUDGET, GAIN_KEY),
    ):
        if key not in entry:
            continue
        fixed = entry["runs"][budget]
        line = (
            f"- {dataset} {method}: {name} {auto['final_mean_accuracy']:.2f}% after "
            f"the last task with {auto['total_iterations']} iterations, fixed "
            f"{budget} {fixed['final_mean_accuracy']:.2f}% with "
            f"{fixed['total_iterations']}"
        )
        if budget == REFERENCE_BUDGET:
            fraction = entry[FRACTION_KEY]
            line += (
                f": gap {entry[key]:+.2f} points (positive: auto lower) with "
                f"{100 * fraction:.0f}% of the iterations (target within "
                f"{TARGET_GAP_POINTS:g} point using at most "
                f"{100 * TARGET_ITERATION_FRACTION:.0f}%: "
                f"{_met(entry['target_gap_and_fraction_met'])})"
            )
        else:
            line += f": auto {entry[key]:+.2f} points"
            if "target_gain_met" in entry:
                line += (
                    f" (target at least +{TARGET_GAIN_POINTS:g}: "
                    f"{_met(entry['target_gain_met'])})"
                )
        lines.append(line + ".")
    return lines


def _met(met: bool) -> str:
    return "met" if met else "not met"


def write_report(args: argparse.Namespace) -> str:
    """Rebuilds the JSON and markdown records from the run folders; returns
    the markdown."""
    record = gather(args.runs, args.max_iters_per_task)
    machine = f"CPU: {cpu_name()}, {os.cpu_count()} cores"
    text = markdown(record, machine)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / "adaptive_budget"
    stem.with_suffix(".md").write_text(text)
    summary = {
        "machine": machine,
        "max_iters_per_task": args.max_iters_per_task,
        "datasets": record,
    }
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return text


def across_seeds(records: dict[int, dict]) -> dict:
    """`auto`'s comparisons in several seeds' records (seed -> the JSON
    record `write_report` wrote), per dataset and method, with their means
    and the targets judged on the means."""
    summary: dict = {}
    for seed, record in sorted(records.items()):
        for dataset, methods in record["datasets"].items():
            for method, entry in methods.items():
                if "auto_run" not in entry:
                    continue
                auto = entry["runs"][entry["auto_run"]]
                row = {
                    "seed": seed,
                    "engine": f"{auto['backend']} {auto['precision']}",
                    "auto_final_mean_accuracy": auto["final_mean_accuracy"],
                    "auto_total_iterations": auto["total_iterations"],
                }
                row |= {
                    k: entry[k] for k in (GAP_KEY, FRACTION_KEY, GAIN_KEY) if k in entry
                }
                summary.setdefault(dataset, {}).setdefault(method, {"seeds": []})
                summary[dataset][method]["seeds"].append(row)
    for dataset, methods in summary.items():
        for entry in methods.values():
            for key in (GAP_KEY, FRACTION_KEY, GAIN_KEY):
                values = [row[key] for row in entry["seeds"] if key in row]
                if values:
                    entry[f"mean_{key}"] = round(sum(values) / len(values), 3)
                    entry[f"seeds_with_{key}"] = len(values)
            if f"mean_{GAP_KEY}" in entry and f"mean_{FRACTION_KEY}" in entry:
                entry["target_gap_and_fraction_met"] = _gap_target_met(
                    entry[f"mean_{GAP_KEY}"], entry[f"mean_{FRACTION_KEY}"]
                )
            if f"mean_{GAIN_KEY}" in entry and dataset in GAIN_TARGET_DATASETS:
                entry["target_gain_met"] = (
                    entry[f"mean_{GAIN_KEY}"] >= TARGET_GAIN_POINTS
                )
    return summary


def seeds_markdown(summary: dict) -> str:
    def comparisons(row: dict) -> str:
        return " | ".join(
            format(row[key], form) if key in row else "-"
            for key, form in (
                (GAP_KEY, "+.2f"),
                (FRACTION_KEY, ".0%"),
                (GAIN_KEY, "+.2f"),
            )
        )

    lines = [
        "# Adaptive per-task budget over seeds",
        "",
        "`auto` against the fixed budgets in each seed's record (each seed's runs "
        "on one machine, compared only with each other), and the means. Gap: "
        f"fixed {REFERENCE_BUDGET}'s final mean accuracy minus `auto`'s, in points "
        f"(positive: auto lower); gain: `auto`'s minus fixed {BASELINE_BUDGET}'s.",
        "",
        "| dataset | method | seed | backend, precision | auto final (%) "
        f"| auto iterations | gap vs {REFERENCE_BUDGET} | iterations vs "
        f"{REFERENCE_BUDGET} | gain vs {BASELINE_BUDGET} |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for dataset, methods in summary.items():
        for method, entry in methods.items():
            for row in entry["seeds"]:
                lines.append(
                    f"| {dataset} | {method} | {row['seed']} | {row['engine']} "
                    f"| {row['auto_final_mean_accuracy']:.2f} "
                    f"| {row['auto_total_iterations']} | {comparisons(row)} |"
                )
            means = {
                k.removeprefix("mean_"): v
                for k, v in entry.items()
                if k.startswith("mean_")
            }
            counts = sorted(
                {v for k, v in entry.items() if k.startswith("seeds_with_")}
            )
            lines.append(
                f"| {dataset} | {method} | mean of {'/'.join(map(str, counts))} | | | "
                f"| {comparisons(means)} |"
            )
            if "target_gap_and_fraction_met" in entry:
                notes.append(
                    f"- {dataset} {method}, means: within {TARGET_GAP_POINTS:g} point "
                    f"of fixed {REFERENCE_BUDGET} using at most "
                    f"{100 * TARGET_ITERATION_FRACTION:.0f}% of its iterations: "
                    f"{_met(entry['target_gap_and_fraction_met'])}."
                )
            if "target_gain_met" in entry:
                notes.append(
                    f"- {dataset} {method}, means: at least +{TARGET_GAIN_POINTS:g} "
                    f"points over fixed {BASELINE_BUDGET}: "
                    f"{_met(entry['target_gain_met'])}."
                )
    return "\n".join([*lines, "", *notes]) + "\n"


def write_seeds_report(args: argparse.Namespace) -> str:
    """Writes `adaptive_budget_seeds.{json,md}` from `--across-seeds`'s
    records; returns the markdown."""
    records = {
        seed: json.loads((folder / "adaptive_budget.json").read_text())
        for seed, folder in args.across_seeds
    }
    summary = across_seeds(records)
    text = seeds_markdown(summary)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / "adaptive_budget_seeds"
    stem.with_suffix(".md").write_text(text)
    sources = {str(seed): str(folder) for seed, folder in args.across_seeds}
    record = {"records": sources, "datasets": summary}
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return text


def _seed_record(text: str) -> tuple[int, Path]:
    seed, _, folder = text.partition("=")
    if not seed.isdigit() or not folder:
        raise argparse.ArgumentTypeError(f"expected SEED=FOLDER, got {text!r}")
    return int(seed), Path(folder)


def _budgets(text: str) -> list[str]:
    budgets = [part.strip() for part in text.split(",") if part.strip()]
    for budget in budgets:
        if budget != AUTO and not (budget.isdigit() and int(budget) > 0):
            raise argparse.ArgumentTypeError(
                f"a budget is 'auto' or a number of iterations: {budget!r}"
            )
    return budgets


def _choices(allowed) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [c for c in chosen if c not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown)} (choose from {', '.join(allowed)})"
            )
        return chosen

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=_choices(DATASETS), default=list(DATASETS))
    parser.add_argument("--budgets", type=_budgets, default=[AUTO, "500", "1000"])
    parser.add_argument("--methods", type=_choices(METHODS), default=["jtr"])
    parser.add_argument(
        "--max-iters-per-task", type=int, default=DEFAULT_MAX_ITERS_PER_TASK
    )
    parser.add_argument("--cpu", help="run each training under taskset -c CPU")
    parser.add_argument(
        "--seed",
        type=int,
        help="the runs' --seed (default: train's); give each seed its own --runs",
    )
    parser.add_argument(
        "--runs", type=Path, default=Path.home() / "runs" / "adaptive_budget"
    )
    parser.add_argument(
        "--data", type=Path, default=Path.home() / ".cache" / "keras_mergan" / "data"
    )
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument(
        "--report-only", action="store_true", help="only rebuild the tables"
    )
    parser.add_argument(
        "--across-seeds",
        nargs="+",
        type=_seed_record,
        metavar="SEED=FOLDER",
        help="only summarise the records (adaptive_budget.json) in these results "
        "folders, one per seed, into RESULTS/adaptive_budget_seeds.{json,md}",
    )
    args = parser.parse_args(argv)
    if args.across_seeds:
        print(write_seeds_report(args))
        return 0
    failed = []
    for dataset in [] if args.report_only else args.datasets:
        for method in args.methods:
            for budget in args.budgets:
                out = run_folder(
                    args.runs, dataset, method, budget, args.max_iters_per_task
                )
                if len(finished_tasks(out)) == NUM_TASKS:
                    continue
                if not train(args, dataset, method, budget):
                    failed.append(f"{dataset} {method} {budget}")
                # Partial results are recorded as they come.
                write_report(args)
    print(write_report(args))
    if failed:
        print(f"Failed runs: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
