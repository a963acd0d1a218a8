"""Serving throughput: onnxruntime vs Keras, HTTP requests/s, export time.

Usage::

    python benchmarks/serve_throughput.py     # build a 10-task run, export, measure
    python benchmarks/serve_throughput.py --export-dir runs/x/export \
        --gan runs/x/task_10/gan.keras        # measure an existing export

Without ``--export-dir`` it trains a synthetic 10-task DCGAN-32 run (one
step per task, under ``--train-backend``), times ``export_run`` on it (target:
under 2 minutes on CPU) and benchmarks the export of the last task:

- images/s at batch 1, 64 and 1000 for onnxruntime (the ``serve.Sampler``
  path, and plain sessions with 1 and N intra-op threads) and for Keras
  ``generator.predict_on_batch`` under each Keras backend (each in its own
  subprocess, loading the same ``gan.keras``);
- requests/s of the HTTP server (a separate process on loopback) for
  ``/health``, a 1-sample ``/api/samples`` and a 16-sample ``/api/grid.png``,
  with 1 and 4 keep-alive clients, each a bounded number of requests.

The machine is shared with other jobs, so each section first waits (up to
``--wait-idle`` seconds) for a second of idle CPU, and throughput is the best
of ``--repeats`` short timed windows (0.25 s; engines interleaved so they see
the same load), with the median window and the CPUs this process actually got
during the best window (CPU-seconds per second) beside it. Writes
``benchmarks/results/serve_throughput.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCHES = (1, 64, 1000)
RESULTS = ROOT / "benchmarks" / "results"


def _window(fn, batch: int, window: float) -> tuple[float, float]:
    """(images/s, CPUs used) of ``fn()`` (one batch per call) over a timed window.

    CPUs used is this process's CPU time per wall-clock second: below the
    thread count, other processes were taking the cores.
    """
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= window and calls >= 2:
            return calls * batch / elapsed, (time.process_time() - cpu) / elapsed


def wait_idle(max_wait: float, threshold: float = 0.9) -> bool:
    """Wait until the machine's CPUs were >= ``threshold`` idle for 1 s (Linux).

    On a shared machine this keeps other jobs out of the timed windows as far
    as possible; returns False if no such second came within ``max_wait``.
    """

    def sample():
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        return values[3] + values[4], sum(values)

    if max_wait <= 0 or not os.path.exists("/proc/stat"):
        return False
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        idle0, total0 = sample()
        time.sleep(1.0)
        idle1, total1 = sample()
        if (idle1 - idle0) >= threshold * max(1, total1 - total0):
            return True
    return False


def _throughput(fn, batch: int, window: float, repeats: int) -> dict:
    """Best and median images/s of ``fn()`` over ``repeats`` timed windows."""
    fn()  # warm-up: allocations, lazy initialisation
    return _summary([_window(fn, batch, window) for _ in range(repeats)])


def _summary(windows: list[tuple[float, float]]) -> dict:
    best = max(windows)
    return {
        "best": best[0],
        "median": statistics.median(rate for rate, _ in windows),
        "cpus_at_best": round(best[1], 2),
    }


def bench_onnxruntime(task_dir: Path, window: float, repeats: int) -> list[dict]:
    """Sampler vs plain sessions; windows interleaved so all see the same load."""
    import onnxruntime as ort

    from serve import Sampler

    sampler = Sampler(task_dir)
    engines = {
        f"serve.Sampler ({sampler.threads} threads, batch split)": sampler.generate
    }
    for intra in sorted({1, sampler.threads}):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra
        options.log_severity_level = 3
        session = ort.InferenceSession(
            str(task_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

        def run(z, labels, session=session):
            return session.run(["image"], {"z": z, "label": labels})[0]

        engines[f"onnxruntime session, intra-op threads {intra}"] = run
    rows = []
    rng = np.random.default_rng(0)
    for batch in BATCHES:
        z = rng.standard_normal((batch, 128)).astype(np.float32)
        labels = (np.arange(batch) % 2).astype(np.int32)
        calls = {
            name: (lambda run=run, z=z, labels=labels: run(z, labels))
            for name, run in engines.items()
        }
        rates: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
        for call in calls.values():
            call()  # warm-up
        for _ in range(repeats):
            for name, call in calls.items():
                rates[name].append(_window(call, batch, window))
        for name, values in rates.items():
            row = {"engine": name, "batch": batch, **_summary(values)}
            rows.append(row)
            print(
                f"  {name:55s} batch {batch:5d}: {row['best']:9.0f} img/s"
                f"  ({row['cpus_at_best']} CPUs)",
                flush=True,
            )
    return rows


KERAS_WORKER = """
import json, sys, time, numpy as np, keras
sys.path.insert(0, sys.argv[4])
import keras_mergan.layers, keras_mergan.models
import keras_mergan.methods.conditional_wgan_gp
from benchmarks.serve_throughput import _throughput
gan = keras.saving.load_model(sys.argv[1], compile=False)
generator = gan.generator
window, repeats = float(sys.argv[2]), int(sys.argv[3])
rows = []
rng = np.random.default_rng(0)
for batch in (1, 64, 1000):
    z = rng.standard_normal((batch, 128)).astype("float32")
    labels = (np.arange(batch) % 2).astype("int32")
    predict = lambda: generator.predict_on_batch([z, labels])
    rate = _throughput(predict, batch, window, repeats)
    rows.append({"engine": "keras predict_on_batch (" + keras.config.backend() + ")",
                 "batch": batch, **rate})
print("RESULT " + json.dumps(rows))
"""


def bench_keras(
    gan_path: Path, backend: str, window: float, repeats: int
) -> list[dict]:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            KERAS_WORKER,
            str(gan_path),
            str(window),
            str(repeats),
            str(ROOT),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            rows = json.loads(line[7:])
            for row in rows:
                print(
                    f"  {row['engine']:55s} batch {row['batch']:5d}: "
                    f"{row['best']:9.0f} img/s",
                    flush=True,
                )
            return rows
    print(f"  keras ({backend}) failed:\n{result.stderr[-2000:]}", file=sys.stderr)
    return []


def bench_http(export_dir: Path, requests: int, clients_list=(1, 4)) -> list[dict]:
    process = subprocess.Popen(
        [sys.executable, "-m", "serve", str(export_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    rows = []
    try:
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", process.stdout.readline())
        if not match:
            raise RuntimeError("server did not start: " + process.stderr.read()[-2000:])
        port = int(match.group(1))
        endpoints = [
            ("/health", "/health"),
            ("/api/samples n=1 (npy)", "/api/samples?category=0&n=1&seed={i}"),
            ("/api/grid.png n=16", "/api/grid.png?category=0&n=16&seed={i}"),
        ]
        for name, template in endpoints:
            for clients in clients_list:
                per_client = max(1, requests // clients)
                errors = []

                def client(
                    offset, per_client=per_client, template=template, errors=errors
                ):
                    # One keep-alive connection per client, loopback only.
                    connection = http.client.HTTPConnection(
                        "127.0.0.1", port, timeout=60
                    )
                    for i in range(per_client):
                        connection.request("GET", template.format(i=offset + i))
                        response = connection.getresponse()
                        response.read()
                        if response.status != 200:
                            errors.append(response.status)
                    connection.close()

                client(10**6)  # warm-up (loads the task's model)
                threads = [
                    threading.Thread(target=client, args=(k * per_client,))
                    for k in range(clients)
                ]
                start = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                elapsed = time.perf_counter() - start
                rate = clients * per_client / elapsed
                rows.append(
                    {
                        "endpoint": name,
                        "clients": clients,
                        "requests": clients * per_client,
                        "requests_per_s": rate,
                        "errors": len(errors),
                    }
                )
                print(
                    f"  HTTP {name:28s} clients {clients}: {rate:8.0f} req/s"
                    f"{'  ERRORS ' + str(len(errors)) if errors else ''}",
                    flush=True,
                )
    finally:
        process.terminate()
        process.wait(timeout=30)
    return rows


def build_and_export(
    num_tasks: int, backend: str, work: Path
) -> tuple[Path, Path, float]:
    from export import export_run
    from export.synthetic import cached_run

    print(f"building a synthetic {num_tasks}-task run under {backend} ...", flush=True)
    run_dir = cached_run(work / "runs", backend, num_tasks=num_tasks)
    out = work / "export"
    print("exporting every task ...", flush=True)
    start = time.perf_counter()
    export_run(run_dir, out)
    seconds = time.perf_counter() - start
    print(f"  export of {num_tasks} tasks: {seconds:.1f} s", flush=True)
    return run_dir, out, seconds


def _markdown(report: dict) -> str:
    lines = ["# Serving throughput", ""]
    machine = report["machine"]
    lines.append(
        f"Machine: {machine['cpus']} CPU(s), {machine['processor']}, shared with "
        f"other jobs; load average {machine['load_before']:.2f} before, "
        f"{machine['load_after']:.2f} after. Each section waited for an idle CPU "
        f"first: {json.dumps(machine.get('idle_before_section', {}))}."
    )
    lines.append(
        "Cells: best timed window (median window; CPUs this process got during "
        "the best window, CPU-seconds per second: below the thread count means "
        "other jobs held a core)."
    )
    lines.append(f"Versions: {json.dumps(report['versions'])}.")
    lines.append("")
    if report.get("export_seconds") is not None:
        lines.append(
            f"Export of a {report['num_tasks']}-task run (SavedModel + ONNX + "
            f"parity check per task): **{report['export_seconds']:.1f} s**."
        )
        lines.append("")
    lines.append("## Images/s (DCGAN-32 generator)")
    lines.append("")
    lines.append("| engine | " + " | ".join(f"batch {b}" for b in BATCHES) + " |")
    lines.append("|---|" + "---:|" * len(BATCHES))
    engines = dict.fromkeys(row["engine"] for row in report["images_per_s"])
    for engine in engines:
        cells = []
        for batch in BATCHES:
            row = next(
                (
                    r
                    for r in report["images_per_s"]
                    if r["engine"] == engine and r["batch"] == batch
                ),
                None,
            )
            cells.append(
                f"{row['best']:.0f} ({row['median']:.0f}; {row['cpus_at_best']})"
                if row
                else "-"
            )
        lines.append(f"| {engine} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("## HTTP requests/s (server in its own process, loopback, keep-alive)")
    lines.append("")
    lines.append("| endpoint | clients | requests | requests/s | errors |")
    lines.append("|---|---:|---:|---:|---:|")
    for row in report["http"]:
        lines.append(
            f"| {row['endpoint']} | {row['clients']} | {row['requests']} | "
            f"{row['requests_per_s']:.0f} | {row['errors']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--export-dir", type=Path, help="use this export, skip building"
    )
    parser.add_argument("--gan", type=Path, help="gan.keras for the Keras rows")
    parser.add_argument(
        "--tasks", type=int, default=10, help="tasks of the synthetic run"
    )
    parser.add_argument("--train-backend", default="tensorflow")
    parser.add_argument("--keras-backends", default="tensorflow,jax,torch")
    parser.add_argument("--window", type=float, default=0.25, help="seconds per window")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--http-requests", type=int, default=400)
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=120,
        help="seconds to wait for an idle CPU before each section (0: don't)",
    )
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    report: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_before": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        }
    }
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work_dir or Path(scratch)
        if args.export_dir:
            export_dir, gan_path, report["export_seconds"] = (
                args.export_dir,
                args.gan,
                None,
            )
        else:
            run_dir, export_dir, seconds = build_and_export(
                args.tasks, args.train_backend, work
            )
            report["export_seconds"], report["num_tasks"] = seconds, args.tasks
            gan_path = run_dir / f"task_{args.tasks:02d}" / "gan.keras"
        from serve import ExportDirectory

        exports = ExportDirectory(export_dir)
        task_dir = exports.sampler(exports.latest()).directory
        print(f"benchmarking {task_dir}", flush=True)
        idle = report["machine"]["idle_before_section"] = {}
        idle["onnxruntime"] = wait_idle(args.wait_idle)
        rows = bench_onnxruntime(task_dir, args.window, args.repeats)
        if gan_path:
            for backend in filter(None, args.keras_backends.split(",")):
                idle[f"keras-{backend}"] = wait_idle(args.wait_idle)
                rows += bench_keras(gan_path, backend, args.window, args.repeats)
        report["images_per_s"] = rows
        idle["http"] = wait_idle(args.wait_idle)
        report["http"] = bench_http(export_dir, args.http_requests)
    from importlib.metadata import version

    report["versions"] = {
        name: version(name) for name in ("onnxruntime", "numpy", "keras", "onnx")
    }
    report["machine"]["load_after"] = (
        os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = _markdown(report)
    (args.out / "serve_throughput.md").write_text(markdown)
    print()
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
