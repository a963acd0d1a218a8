"""The README's first command, run literally on a fresh clone in a fresh venv.

Usage::

    python benchmarks/first_run.py                  # clones this repository
    python benchmarks/first_run.py --repo URL_OR_PATH --keep /tmp/first-run

The command is read from the README of the clone (the line after
``# 1.`` in the "Two commands" block) and run by ``bash`` in the clone, as a
new user would paste it, with an empty evaluator cache
(``KERAS_MERGAN_CACHE``) and pip's cache off, so nothing of an earlier run is
reused. Its output is timestamped line by line, which splits the wall time
into the install (until the command's first line), the evaluator's training
and each task. The run folder's ``metrics.json`` give the evaluator accuracy
after every task; the last task's grid is copied beside the results.

Writes ``benchmarks/results/first_run.{json,md}`` and
``first_run_grid.png``.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGET_MINUTES = 2.0
TARGET_ACCURACY = 0.90


def readme_command(readme: Path) -> str:
    """The command after ``# 1.`` in the README's first bash block."""
    lines = readme.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# 1."):
            return lines[i + 1].strip()
    raise SystemExit(f"no '# 1.' command in {readme}")


def run_out(command: str) -> Path:
    match = re.search(r"--out[ =](\S+)", command)
    if not match:
        raise SystemExit(f"the command names no --out folder: {command}")
    return Path(match.group(1))


def run_timed(command: str, cwd: Path, env: dict) -> tuple[int, list]:
    """Runs `command` with bash; returns its status and (seconds, line) pairs."""
    started = time.time()
    lines = []
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    for line in process.stdout:
        lines.append((time.time() - started, line.rstrip("\n")))
        print(f"[{lines[-1][0]:7.1f} s] {lines[-1][1]}", flush=True)
    return process.wait(), lines


def first_time(lines, pattern: str) -> float | None:
    return next((t for t, line in lines if re.search(pattern, line)), None)


def phases(lines) -> dict:
    """Seconds from the start to each landmark of the command's output."""
    landmarks = {
        "evaluator_start": r"^Preparing the evaluator",
        "training_start": r"^Training \S+ ",
        "end": r"^Run written to ",
    }
    found = {name: first_time(lines, pattern) for name, pattern in landmarks.items()}
    done = re.compile(r"^Task \d+/\d+ done")
    found["tasks_done"] = [t for t, line in lines if done.match(line)]
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(HERE.parent), help="what to clone")
    parser.add_argument("--branch", default="main")
    parser.add_argument("--keep", type=Path, help="clone here and keep it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="first-run-"))
    clone = work / "keras-mergan"
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(
        ["git", "clone", "-q", "--branch", args.branch, args.repo, str(clone)],
        check=True,
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    command = readme_command(clone / "README.md")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "KERAS_BACKEND", "PYTHONPATH")
    }
    env.update(
        KERAS_MERGAN_CACHE=str(work / "cache"),
        PIP_NO_CACHE_DIR="1",
        PATH=":".join(
            p for p in env.get("PATH", "").split(":") if ".venv" not in p
        ),
    )
    print(f"$ {command}", flush=True)
    status, lines = run_timed(command, clone, env)
    total = lines[-1][0] if lines else 0.0
    marks = phases(lines)
    run_dir = clone / run_out(command)
    tasks = []
    for path in sorted(run_dir.glob("task_*/metrics.json")):
        metrics = json.loads(path.read_text())
        tasks.append(
            {
                "task": metrics["task"],
                "seconds": metrics.get("seconds"),
                "accuracy": metrics.get("accuracy"),
                "mean_accuracy": metrics.get("mean_accuracy"),
            }
        )
    install = marks["evaluator_start"] or marks["training_start"]
    final = tasks[-1]["mean_accuracy"] if tasks else None
    report = {
        "command": command,
        "commit": commit,
        "returncode": status,
        "cpus": os.cpu_count(),
        "total_seconds": round(total, 1),
        "install_seconds": None if install is None else round(install, 1),
        "evaluator_seconds": (
            None
            if marks["evaluator_start"] is None or marks["training_start"] is None
            else round(marks["training_start"] - marks["evaluator_start"], 1)
        ),
        "training_start_seconds": marks["training_start"],
        "task_done_at_seconds": [round(t, 1) for t in marks["tasks_done"]],
        "tasks": tasks,
        "final_mean_accuracy": final,
        "target_minutes": TARGET_MINUTES,
        "target_accuracy": TARGET_ACCURACY,
        "met": status == 0
        and total <= 60 * TARGET_MINUTES
        and final is not None
        and final >= TARGET_ACCURACY,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    grids = sorted(run_dir.glob("task_*/grid.png"))
    if grids:
        shutil.copyfile(grids[-1], args.out / "first_run_grid.png")
    (args.out / "first_run.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "first_run.md").write_text(markdown(report))
    print(markdown(report))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if report["met"] else 1


def markdown(report: dict) -> str:
    def seconds(value):
        return "-" if value is None else f"{value:.0f} s"

    lines = [
        "# The README's first command on a fresh clone",
        "",
        f"`{report['command']}`",
        "",
        f"Commit {report['commit']}, {report['cpus']} CPUs, fresh virtualenv, "
        "pip cache off, empty evaluator cache.",
        "",
        "| phase | wall time |",
        "|---|---:|",
        f"| install (until the command's first line) | "
        f"{seconds(report['install_seconds'])} |",
        "| evaluator (trained, or loaded: the built-in digits ship theirs) | "
        f"{seconds(report['evaluator_seconds'])} |",
    ]
    previous = report["training_start_seconds"]
    for number, done in enumerate(report["task_done_at_seconds"], 1):
        lines.append(
            f"| task {number} (done at {done:.0f} s) | "
            f"{seconds(None if previous is None else done - previous)} |"
        )
        previous = done
    lines.append(f"| **total** | **{seconds(report['total_seconds'])}** |")
    lines += ["", "| after task | mean accuracy | per category |", "|---:|---:|---|"]
    for task in report["tasks"]:
        per_class = ", ".join(
            f"{c}: {100 * a:.1f}" for c, a in (task["accuracy"] or {}).items()
        )
        mean = task["mean_accuracy"]
        mean = "-" if mean is None else f"{100 * mean:.1f}%"
        lines.append(f"| {task['task']} | {mean} | {per_class} |")
    verdict = "met" if report["met"] else "not met"
    lines += [
        "",
        f"Target: at most {report['target_minutes']:.0f} minutes in all and a mean "
        f"accuracy of at least {100 * report['target_accuracy']:.0f}% after the "
        f"last task: **{verdict}**. The last task's grid: `first_run_grid.png`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
