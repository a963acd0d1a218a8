"""Crash-resume check of `keras-mergan train`: SIGKILL at random points.

Usage::

    python benchmarks/resume_kills.py                      # tensorflow, 3 kills
    python benchmarks/resume_kills.py --backend jax --kills 5 --seed 1

First a reference run trains a small task sequence without interruption.
Then the same command is started again in a fresh folder and killed with
SIGKILL after a random time (uniform between `--min-fraction` and
`--max-fraction` of the reference run's wall time, from the start of each
process), and restarted, until `--kills` kills have happened; the last start
runs to the end. After every kill the finished task folders are hashed;
every later state must keep them byte-identical (a changed or missing one is
a lost task). At the end the run must hold the reference run's files, and
the final generators of both runs are compared.

Writes ``benchmarks/results/resume_kills.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keras_mergan.run_folder import (
    CHECKPOINT_FOLDER,
    finished_tasks,
    load_task_model,
    sha256_file,
    task_dir,
)

RESULTS = Path(__file__).resolve().parent / "results"


def train_command(args, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "keras_mergan.cli",
        "train",
        f"--backend={args.backend}",
        f"--tasks={args.tasks}",
        f"--iters-per-task={args.iters_per_task}",
        f"--checkpoint-every={args.checkpoint_every}",
        f"--batch-size={args.batch_size}",
        f"--n-critic={args.n_critic}",
        f"--width={args.width}",
        "--latent-dim=32",
        "--eval-samples=0",
        "--verbose=0",
        f"--out={out}",
    ]


def finished_task_hashes(run_dir: Path) -> dict[str, str]:
    """SHA-256 of every file of the tasks whose folder is complete."""
    return {
        f"{path.parent.name}/{path.name}": sha256_file(path)
        for number in finished_tasks(run_dir)
        for path in sorted(task_dir(run_dir, number).iterdir())
    }


def checkpoint_position(run_dir: Path) -> str | None:
    manifest = run_dir / CHECKPOINT_FOLDER / "checkpoint.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    return f"task {data['task'] + 1}, iteration {data['step']}"


def final_weight_difference(reference: Path, resumed: Path, task: int) -> float:
    import numpy as np

    a = load_task_model(reference, task).generator.get_weights()
    b = load_task_model(resumed, task).generator.get_weights()
    return float(max(np.max(np.abs(x - y)) for x, y in zip(a, b, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--tasks", default="0,1,2,3")
    parser.add_argument("--iters-per-task", type=int, default=60)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-critic", type=int, default=5)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--min-fraction", type=float, default=0.2)
    parser.add_argument("--max-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="resume_kills_"))
    try:
        reference, resumed = work / "reference", work / "resumed"
        started = time.time()
        subprocess.run(train_command(args, reference), check=True, capture_output=True)
        reference_seconds = time.time() - started

        events, kept, lost = [], {}, set()
        total_started = time.time()
        while True:
            delay = (
                rng.uniform(args.min_fraction, args.max_fraction) * reference_seconds
                if len(events) < args.kills
                else None
            )
            process = subprocess.Popen(
                train_command(args, resumed),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                # Unbuffered: what a killed process printed is not lost.
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:
                stdout, stderr = process.communicate(timeout=delay)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                stdout, stderr = process.communicate()
            resumed_at = re.search(r"Resuming at (task \d+, iteration \d+/\d+)", stdout)
            if events:
                # No "Resuming" line: killed before it printed, or nothing to
                # resume from (the first task's start).
                events[-1]["resumed_at"] = resumed_at.group(1) if resumed_at else None
            now = finished_task_hashes(resumed)
            lost |= {name for name, digest in kept.items() if now.get(name) != digest}
            kept.update(now)
            if process.returncode != -signal.SIGKILL:
                if process.returncode != 0:
                    print(stderr, file=sys.stderr)
                    raise SystemExit(f"training failed (exit {process.returncode})")
                break
            events.append(
                {
                    "killed_after_s": round(delay, 2),
                    "finished_tasks": len({name.split("/")[0] for name in now}),
                    "checkpoint": checkpoint_position(resumed),
                }
            )
        total_seconds = time.time() - total_started
        reference_files = sorted(finished_task_hashes(reference))
        resumed_files = sorted(finished_task_hashes(resumed))
        num_tasks = len({name.split("/")[0] for name in reference_files})
        result = {
            "meta": {
                "backend": args.backend,
                "tasks": args.tasks,
                "iters_per_task": args.iters_per_task,
                "checkpoint_every": args.checkpoint_every,
                "batch_size": args.batch_size,
                "n_critic": args.n_critic,
                "width": args.width,
                "seed": args.seed,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
            },
            "kills": events,
            "completed_tasks_lost": len({name.split("/")[0] for name in lost}),
            "all_tasks_completed": len(resumed_files) == len(reference_files)
            and num_tasks == len({n.split("/")[0] for n in resumed_files}),
            "same_files_as_uninterrupted": resumed_files == reference_files,
            "leftover_checkpoint": (resumed / CHECKPOINT_FOLDER).exists(),
            "final_generator_max_abs_difference": final_weight_difference(
                reference, resumed, num_tasks
            ),
            "reference_seconds": round(reference_seconds, 1),
            "interrupted_total_seconds": round(total_seconds, 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "resume_kills.json").write_text(json.dumps(result, indent=2))
    (args.results / "resume_kills.md").write_text(format_report(result))
    print(format_report(result))
    return 0 if result["completed_tasks_lost"] == 0 else 1


def format_report(result: dict) -> str:
    meta = result["meta"]
    lines = [
        "# Resume after SIGKILL",
        "",
        f"`keras-mergan train --tasks {meta['tasks']}` on the built-in digits, "
        f"{meta['iters_per_task']} iterations per task, checkpoint every "
        f"{meta['checkpoint_every']}, width {meta['width']}, batch "
        f"{meta['batch_size']}, n_critic {meta['n_critic']}, backend "
        f"{meta['backend']}; {meta['cpus']} CPUs, kill times drawn with seed "
        f"{meta['seed']}.",
        "",
        "| kill | after s | finished tasks | last checkpoint | resumed at |",
        "|---:|---:|---:|---|---|",
    ]
    for number, kill in enumerate(result["kills"], 1):
        lines.append(
            f"| {number} | {kill['killed_after_s']} | {kill['finished_tasks']} | "
            f"{kill['checkpoint'] or '-'} | {kill.get('resumed_at') or '-'} |"
        )
    lines += [
        "",
        f"- completed tasks lost: **{result['completed_tasks_lost']}**",
        f"- all tasks completed: {result['all_tasks_completed']}",
        "- same files as the uninterrupted run: "
        f"{result['same_files_as_uninterrupted']}",
        f"- checkpoint folder left behind: {result['leftover_checkpoint']}",
        "- final generator vs uninterrupted run, max |difference|: "
        f"{result['final_generator_max_abs_difference']:.3g}",
        f"- wall time: uninterrupted {result['reference_seconds']} s, with kills "
        f"{result['interrupted_total_seconds']} s in total",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
