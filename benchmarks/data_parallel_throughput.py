"""Data-parallel training speed: one device vs `data_parallel(2)`, TF and JAX.

Usage::

    python benchmarks/data_parallel_throughput.py
    python benchmarks/data_parallel_throughput.py --backends jax --devices 4

The DCGAN-32 conditional WGAN-GP of `benchmarks/train_throughput.py` (width
32, 10 classes, 32x32x1, one iteration = 5 critic + 1 generator step at a
global batch of 64) is timed once on one device and once inside
`keras_mergan.backend.distribution.data_parallel(N)`, for each backend. Each case
runs in its own process: without a GPU, the CPU is split into N virtual
devices (TensorFlow logical devices, JAX's
`--xla_force_host_platform_device_count`), which must be configured before
the backend starts. The single-device process is not split, so it is the
ordinary one-device setup. The ratio is data-parallel iterations/s over
single-device iterations/s; on a CPU the virtual devices share the same
cores, so the ratio measures the overhead of the data-parallel step, not a
speed-up. Writes ``benchmarks/results/data_parallel_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from worker_process import print_result, run_worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
BACKENDS = ("tensorflow", "jax")
TARGET_RATIO = 0.8  # data-parallel it/s over single-device it/s


def worker(devices: int, iters: int, warmup: int, repeats: int) -> dict:
    """Times the DCGAN-32 step in this process, inside `data_parallel(devices)`."""
    from benchmarks.train_throughput import worker as time_training
    from keras_mergan.backend.distribution import data_parallel, training_devices

    with data_parallel(devices):
        result = time_training("dcgan32", "auto", iters, warmup, repeats)
        result["devices"] = training_devices()
    return result


def run_case(backend: str, devices: int, args) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    else:
        env.pop("XLA_FLAGS", None)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--worker={devices}",
        f"--iters={args.iters}",
        f"--warmup={args.warmup}",
        f"--repeats={args.repeats}",
    ]
    return run_worker(command, env, f"{backend} on {devices} device(s)", ROOT)


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Data-parallel training throughput",
        "",
        "DCGAN-32 conditional WGAN-GP (width 32), global batch 64, one iteration "
        "= 5 critic + 1 generator step. One device vs "
        f"`data_parallel({meta['devices']})` over {meta['devices']} virtual CPU "
        f"devices that share the machine's {meta['cpus']} cores, so the ratio "
        "is the data-parallel step's overhead, not a speed-up. "
        f"{meta['iters']} iterations per timing, median of {meta['repeats']} "
        "timings (best beside it).",
        "",
        f"Machine: {meta['cpus']} CPU(s), {meta['machine']}; load average "
        f"{meta['load_before']} before, {meta['load_after']} after (`uptime`: "
        f"{meta['uptime_before']}; the 1-minute average lags behind jobs that "
        "stopped just before).",
        "",
        "| backend | devices | s/it | best s/it | it/s | ratio (median) "
        "| ratio (best) | target ratio | met? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = row.get("ratio")
        lines.append(
            f"| {row['backend']} | {row['devices']} | {row['s/it']:.3f} "
            f"| {row['best s/it']:.3f} | {row['it/s']:.2f} "
            + (
                f"| {ratio:.2f} | {row['best ratio']:.2f} | {TARGET_RATIO} "
                f"| {row['met?']} |"
                if ratio is not None
                else "| - | - | - | - |"
            )
        )
    return "\n".join(lines) + "\n"


def _row(result: dict, single: dict | None) -> dict:
    row = {
        "backend": result["backend"],
        "devices": len(result["devices"]),
        "device_names": result["devices"],
        "s/it": result["median_s_per_it"],
        "best s/it": result["best_s_per_it"],
        "it/s": 1 / result["median_s_per_it"],
    }
    if single is not None:
        row["ratio"] = single["median_s_per_it"] / result["median_s_per_it"]
        row["best ratio"] = single["best_s_per_it"] / result["best_s_per_it"]
        row["met?"] = (
            "yes"
            if row["ratio"] >= TARGET_RATIO
            else "best only"
            if row["best ratio"] >= TARGET_RATIO
            else "no"
        )
    return row


def _uptime() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--iters", type=int, default=8, help="iterations per timing")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations")
    parser.add_argument("--repeats", type=int, default=5, help="timings per case")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # in the subprocess, KERAS_BACKEND and XLA_FLAGS set
        result = worker(args.worker, args.iters, args.warmup, args.repeats)
        print_result(result)
        return 0

    backends = [b for b in args.backends.split(",") if b]
    for name in backends:
        if name not in BACKENDS:
            parser.error(f"unknown backend {name!r}; data parallel runs on {BACKENDS}")
    if args.devices < 2:
        parser.error("--devices must be >= 2")
    uptime_before = _uptime()
    load_before = round(os.getloadavg()[0], 2)
    results, rows = [], []
    for backend in backends:
        single = run_case(backend, 1, args)
        parallel = run_case(backend, args.devices, args)
        results += [single, parallel]
        rows += [_row(single, None), _row(parallel, single)]
    meta = {
        "architecture": "dcgan32",
        "width": 32,
        "global_batch": 64,
        "devices": args.devices,
        "iters": args.iters,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "uptime_before": uptime_before,
        "uptime_after": _uptime(),
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 2),
        "target_ratio": TARGET_RATIO,
    }
    text = markdown(rows, meta)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_parallel_throughput.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "results": results}, indent=2) + "\n"
    )
    (args.out / "data_parallel_throughput.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
