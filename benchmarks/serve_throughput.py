"""Serving throughput: onnxruntime vs Keras, the HTTP servers old and new, export time.

Usage::

    python benchmarks/serve_throughput.py     # build a 10-task run, export, measure
    python benchmarks/serve_throughput.py --export-dir runs/x/export \
        --gan runs/x/task_10/gan.keras        # measure an existing export
    python benchmarks/serve_throughput.py --export-dir runs/x/export \
        --sections http                       # only the HTTP servers

Without ``--export-dir`` it trains a synthetic 10-task DCGAN-32 run (one
step per task, under ``--train-backend``), times ``export_run`` on it (target:
under 2 minutes on CPU) and benchmarks the export of the last task:

- ``onnxruntime``: images/s at batch 1, 64 and 1000 (the ``keras_mergan.serve.Sampler``
  path, and plain sessions with 1 and N intra-op threads);
- ``keras``: Keras ``generator.predict_on_batch`` under each Keras backend
  (each in its own subprocess, loading the same ``gan.keras``);
- ``http``: the HTTP server before this version (stdlib ``http.server``,
  taken from git history at commit 388a637) and the current one (uvicorn,
  batching), each in its own process on loopback, serving the same export:
  requests/s, p50 and p99 latency of ``/api/samples`` (``.npy``) for ``n`` =
  1 and 64 samples per request, with 1, 8 and 64 keep-alive clients;
- ``oip``: the current server alone, in one run, the same cells for
  ``/api/samples`` (``.npy``), Open Inference Protocol JSON and OIP binary
  (Triton's binary tensor data, as ``tritonclient`` sends by default);
  target: OIP binary within 1.3x of ``.npy`` per request.

The machine is shared with other jobs, so each section first waits (up to
``--wait-idle`` seconds) for a second of idle CPU. Engine throughput is the
best of ``--repeats`` short timed windows (0.25 s; engines interleaved so
they see the same load), with the median window and the CPUs this process
actually got during the best window (CPU-seconds per second) beside it; the
HTTP cells alternate the two servers round by round. Writes
``benchmarks/results/serve_throughput.json`` and ``.md``; sections not run
keep their numbers from the previous report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from keras_mergan.run_folder import model_path

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
    from keras_mergan.serve import Sampler

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


OLD_SERVER_COMMIT = "388a637"
HTTP_CLIENTS = (1, 8, 64)
HTTP_SAMPLES = (1, 64)


def old_server_tree(work: Path) -> Path:
    """The stdlib ``http.server`` version of ``serve/`` (commit 388a637) under ``work``.

    Taken from git history at run time, so the comparison runs the old code
    as it was, against the same export, in the same run.
    """
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", OLD_SERVER_COMMIT, "serve/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in names:
        source = subprocess.run(
            ["git", "show", f"{OLD_SERVER_COMMIT}:{name}"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(source)
    return work


class _Client(asyncio.Protocol):
    """One keep-alive connection sending the next request as soon as one is answered.

    Lean on purpose (no HTTP library): the client shares the CPU with the
    server it measures, so what it spends is taken from both servers alike.
    """

    def __init__(self, load: _Load):
        self.load = load
        self.buffer = bytearray()
        self.need: int | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.send()

    def send(self) -> None:
        self.started = time.perf_counter()
        self.transport.write(self.load.next_request())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.need is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).lower()
                self.status = int(head[9:12])
                length = re.search(rb"\r\ncontent-length: *(\d+)", head)
                if length is not None:
                    self.need = end + 4 + int(length.group(1))
                elif b"transfer-encoding: chunked" in head:
                    # A streamed JSON body: it ends with the zero-size chunk
                    # (JSON text holds no CRLF, so the marker is unambiguous).
                    self.need = -(end + 4)
                else:
                    raise RuntimeError("response without Content-Length")
            if self.need < 0:
                last = self.buffer.find(b"\r\n0\r\n\r\n", -self.need)
                if last < 0:
                    return
                self.need = last + 7
            if len(self.buffer) < self.need:
                return
            del self.buffer[: self.need]
            self.need = None
            self.load.done(self.started, time.perf_counter(), self.status)
            if not self.load.running:
                self.transport.close()
                return
            self.send()

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


def oip_request(port: int, n: int, route: str, latent_dim: int) -> bytes:
    """One inference request of ``n`` samples: ``oip-json`` or ``oip-binary``."""
    z = np.random.default_rng(n).standard_normal((n, latent_dim)).astype("<f4")
    labels = np.zeros(n, "<i4")
    headers = f"Host: 127.0.0.1:{port}\r\n"
    if route == "oip-json":
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "z",
                        "shape": [n, latent_dim],
                        "datatype": "FP32",
                        "data": z.ravel().tolist(),
                    },
                    {
                        "name": "label",
                        "shape": [n],
                        "datatype": "INT32",
                        "data": [0] * n,
                    },
                ]
            }
        ).encode()
        headers += "Content-Type: application/json\r\n"
    else:
        z_bytes, label_bytes = z.tobytes(), labels.tobytes()
        head = json.dumps(
            {
                "inputs": [
                    {
                        "name": "z",
                        "shape": [n, latent_dim],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": len(z_bytes)},
                    },
                    {
                        "name": "label",
                        "shape": [n],
                        "datatype": "INT32",
                        "parameters": {"binary_data_size": len(label_bytes)},
                    },
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()
        body = head + z_bytes + label_bytes
        headers += f"Inference-Header-Content-Length: {len(head)}\r\n"
    return (
        f"POST /v2/models/generator/infer HTTP/1.1\r\n{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class _Load:
    """``clients`` closed-loop clients on one server, for ``warmup + window`` s."""

    def __init__(self, port: int, n: int, route: str = "npy", latent_dim: int = 128):
        self.port, self.n = port, n
        self.running = True
        self.count = 0
        self.records: list[tuple[float, float, int]] = []
        self.fixed = None if route == "npy" else oip_request(port, n, route, latent_dim)

    def next_request(self) -> bytes:
        self.count += 1
        if self.fixed is not None:
            return self.fixed
        return (
            f"GET /api/samples?category=0&n={self.n}&seed={self.count} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n\r\n"
        ).encode()

    def done(self, started: float, finished: float, status: int) -> None:
        self.records.append((started, finished, status))

    async def run(self, clients: int, warmup: float, window: float) -> dict:
        loop = asyncio.get_running_loop()
        connections = [
            await loop.create_connection(lambda: _Client(self), "127.0.0.1", self.port)
            for _ in range(clients)
        ]
        await asyncio.sleep(warmup)
        start = time.perf_counter()
        await asyncio.sleep(window)
        end = time.perf_counter()
        self.running = False
        await asyncio.wait_for(
            asyncio.gather(*(protocol.closed for _, protocol in connections)), 120
        )
        # Requests answered inside the window count (their latency too).
        inside = [r for r in self.records if start <= r[1] <= end]
        return {
            "requests": len(inside),
            "seconds": end - start,
            "latencies": [finished - started for started, finished, _ in inside],
            "errors": sum(1 for *_, status in inside if status != 200),
        }


def _start_server(command: list[str], cwd: Path, env: dict) -> tuple:
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", process.stdout.readline())
    if not match:
        process.kill()
        raise RuntimeError("server did not start: " + process.stderr.read()[-2000:])
    port = int(match.group(1))
    for _ in range(600):  # the new server loads every task before it answers
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=60):
                break
        except OSError:
            time.sleep(0.1)
    return process, port


def bench_servers(
    export_dir: Path, work: Path, window: float, warmup: float, rounds: int
) -> dict:
    """Old (stdlib, commit 388a637) and new server, same export, same run.

    Every cell (samples per request x concurrent clients) is measured
    ``rounds`` times, the servers alternating, so that both see the same
    load from other jobs; req/s is the median round, latencies pool every
    round's requests.
    """
    export_dir = export_dir.resolve()  # the servers run from other directories
    old_tree = old_server_tree(work / "old_server")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    servers = {
        # The old tree predates the keras_mergan.serve namespace.
        "old (http.server)": _start_server(
            [sys.executable, "-m", "serve", str(export_dir), "--port", "0"],
            old_tree,
            env,
        ),
        "new (uvicorn)": _start_server(
            [
                sys.executable,
                "-m",
                "keras_mergan.serve",
                str(export_dir),
                "--port",
                "0",
            ],
            ROOT,
            dict(env, PYTHONPATH=str(ROOT)),
        ),
    }
    try:
        for name, (_, port) in servers.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as reply:
                has_broken = "broken" in json.loads(reply.read())
            if has_broken != name.startswith("new"):  # keep the comparison honest
                raise RuntimeError(f"{name} is not the server it should be")
        cells: dict[tuple, list[dict]] = {}
        for round_ in range(rounds):
            for n in HTTP_SAMPLES:
                for clients in HTTP_CLIENTS:
                    for name, (_, port) in servers.items():
                        result = asyncio.run(
                            _Load(port, n).run(clients, warmup, window)
                        )
                        cells.setdefault((n, clients, name), []).append(result)
                        rate = result["requests"] / result["seconds"]
                        print(
                            f"  round {round_ + 1} n={n:3d} clients={clients:3d} "
                            f"{name:18s} {rate:8.1f} req/s",
                            flush=True,
                        )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
    rows = []
    for (n, clients, name), results in cells.items():
        latencies = np.sort(np.concatenate([r["latencies"] for r in results]))
        rates = [r["requests"] / r["seconds"] for r in results]
        rows.append(
            {
                "server": name,
                "n": n,
                "clients": clients,
                "requests_per_s": statistics.median(rates),
                "requests_per_s_rounds": rates,
                "images_per_s": statistics.median(rates) * n,
                "p50_ms": float(np.percentile(latencies, 50) * 1000),
                "p99_ms": float(np.percentile(latencies, 99) * 1000),
                "requests": int(sum(r["requests"] for r in results)),
                "errors": int(sum(r["errors"] for r in results)),
            }
        )
    return {
        "rows": rows,
        "targets": _targets(rows),
        "window_s": window,
        "warmup_s": warmup,
        "rounds": rounds,
        "old_server_commit": OLD_SERVER_COMMIT,
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg()[0],
    }


OIP_ROUTES = ("npy", "oip-json", "oip-binary")


def bench_routes(
    export_dir: Path, latent_dim: int, window: float, warmup: float, rounds: int
) -> dict:
    """``/api/samples`` .npy, OIP JSON and OIP binary on one server, one run.

    Cells (samples per request x clients) alternate the three routes round
    by round, so that they see the same load from other jobs.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, "-m", "keras_mergan.serve", str(export_dir.resolve())]
    process, port = _start_server(
        [*command, "--port", "0"], ROOT, dict(env, PYTHONPATH=str(ROOT))
    )
    cells: dict[tuple, list[dict]] = {}
    try:
        for round_ in range(rounds):
            for n in HTTP_SAMPLES:
                for clients in HTTP_CLIENTS:
                    for route in OIP_ROUTES:
                        load = _Load(port, n, route, latent_dim)
                        result = asyncio.run(load.run(clients, warmup, window))
                        cells.setdefault((n, clients, route), []).append(result)
                        rate = result["requests"] / result["seconds"]
                        print(
                            f"  round {round_ + 1} n={n:3d} clients={clients:3d} "
                            f"{route:10s} {rate:8.1f} req/s",
                            flush=True,
                        )
    finally:
        process.terminate()
        process.wait(timeout=60)
    rows = []
    for (n, clients, route), results in cells.items():
        latencies = np.sort(np.concatenate([r["latencies"] for r in results]))
        rates = [r["requests"] / r["seconds"] for r in results]
        rows.append(
            {
                "route": route,
                "n": n,
                "clients": clients,
                "requests_per_s": statistics.median(rates),
                "p50_ms": float(np.percentile(latencies, 50) * 1000),
                "p99_ms": float(np.percentile(latencies, 99) * 1000),
                "requests": int(sum(r["requests"] for r in results)),
                "errors": int(sum(r["errors"] for r in results)),
            }
        )
    ratios = {}
    for n in HTTP_SAMPLES:
        for clients in HTTP_CLIENTS:
            by_route = {
                r["route"]: r for r in rows if r["n"] == n and r["clients"] == clients
            }
            # Cost per request: the inverse of throughput.
            npy = by_route["npy"]["requests_per_s"]
            ratios[f"n={n} clients={clients}"] = {
                "binary_over_npy": npy / by_route["oip-binary"]["requests_per_s"],
                "json_over_npy": npy / by_route["oip-json"]["requests_per_s"],
            }
    return {
        "rows": rows,
        "cost_per_request_vs_npy": ratios,
        "binary_target_met": all(r["binary_over_npy"] <= 1.3 for r in ratios.values()),
        "window_s": window,
        "warmup_s": warmup,
        "rounds": rounds,
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg()[0],
    }


def _routes_markdown(oip: dict) -> list[str]:
    lines = [
        "## Routes of the current server: .npy, OIP JSON, OIP binary",
        "",
        f"Same server, same run, routes alternating; {oip['rounds']} rounds of "
        f"{oip['window_s']:g} s per cell. Cost per request relative to `.npy` "
        "is `.npy` req/s over the route's req/s (target for OIP binary: <= 1.3; "
        f"{'met' if oip['binary_target_met'] else 'not met'}). CPUs allowed: "
        f"{oip['cpus_allowed']}, load average {oip['load_average']:.2f}.",
        "",
        "| n | clients | route | req/s | p50 ms | p99 ms | x .npy | errors |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    ratios = oip["cost_per_request_vs_npy"]
    for row in sorted(oip["rows"], key=lambda r: (r["n"], r["clients"], r["route"])):
        cell = ratios[f"n={row['n']} clients={row['clients']}"]
        ratio = {"npy": 1.0, "oip-json": cell["json_over_npy"]}.get(
            row["route"], cell["binary_over_npy"]
        )
        lines.append(
            f"| {row['n']} | {row['clients']} | {row['route']} | "
            f"{row['requests_per_s']:.0f} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {ratio:.2f} | {row['errors']} |"
        )
    return [*lines, ""]


def _row(rows: list[dict], server: str, n: int, clients: int) -> dict:
    return next(
        r
        for r in rows
        if r["server"].startswith(server) and r["n"] == n and r["clients"] == clients
    )


def _targets(rows: list[dict]) -> dict:
    new, old = _row(rows, "new", 1, 64), _row(rows, "old", 1, 64)
    speedup = new["requests_per_s"] / old["requests_per_s"]
    tails = {
        f"n={n}": _row(rows, "new", n, 8)["p99_ms"] / _row(rows, "new", n, 8)["p50_ms"]
        for n in HTTP_SAMPLES
    }
    return {
        "speedup_64_clients_n1": speedup,
        "speedup_target_met": speedup >= 2,
        "p99_over_p50_8_clients": tails,
        "tail_target_met": all(ratio <= 3 for ratio in tails.values()),
    }


def build_and_export(
    num_tasks: int, backend: str, work: Path
) -> tuple[Path, Path, float]:
    from keras_mergan.export import export_run

    # The synthetic run builder is a test helper, not part of the package.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from synthetic_run import cached_run

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
    measured = report.get("measured_in_last_run")
    if measured and set(measured) != set(SECTIONS):
        lines += [
            f"The last run measured only: {', '.join(measured)}; the other "
            "tables are from an earlier run.",
            "",
        ]
    if report.get("images_per_s"):
        lines += _engines_markdown(report)
    if report.get("http_servers"):
        lines += _http_markdown(report["http_servers"])
    if report.get("oip_routes"):
        lines += _routes_markdown(report["oip_routes"])
    return "\n".join(lines) + "\n"


def _engines_markdown(report: dict) -> list[str]:
    lines = []
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
    return lines


def _http_markdown(http: dict) -> list[str]:
    targets = http["targets"]
    lines = [
        "## HTTP servers: stdlib http.server (before) vs uvicorn with batching",
        "",
        f"`/api/samples` (`.npy`, uint8) on loopback, each server in its own "
        f"process, keep-alive clients in one asyncio process; "
        f"{http['rounds']} rounds of {http['window_s']:g} s (after "
        f"{http['warmup_s']:g} s of warm-up) per cell, servers alternating. "
        f"req/s: median round; p50/p99: all rounds' requests. CPUs allowed: "
        f"{http['cpus_allowed']} (servers and clients together); load average "
        f"{http['load_average']:.2f} at the end, other jobs running. Old server: "
        f"`serve/` at commit {http['old_server_commit']}.",
        "",
        "| n | clients | server | req/s | images/s | p50 ms | p99 ms | errors |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(http["rows"], key=lambda r: (r["n"], r["clients"], r["server"])):
        lines.append(
            f"| {row['n']} | {row['clients']} | {row['server']} | "
            f"{row['requests_per_s']:.0f} | {row['images_per_s']:.0f} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} |"
        )
    tails = ", ".join(
        f"{name} {ratio:.2f}"
        for name, ratio in targets["p99_over_p50_8_clients"].items()
    )
    lines += [
        "",
        f"- 64 clients, n=1: new/old req/s = "
        f"**{targets['speedup_64_clients_n1']:.2f}x** (target >= 2x: "
        f"{'met' if targets['speedup_target_met'] else 'not met'}).",
        f"- 8 clients, new server, p99/p50: {tails} (target <= 3: "
        f"{'met' if targets['tail_target_met'] else 'not met'}).",
        "",
    ]
    return lines


SECTIONS = ("onnxruntime", "keras", "http", "oip")


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
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated, of {', '.join(SECTIONS)} (default all)",
    )
    parser.add_argument("--window", type=float, default=0.25, help="seconds per window")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--http-window", type=float, default=3.0, help="seconds per HTTP cell round"
    )
    parser.add_argument("--http-warmup", type=float, default=0.5)
    parser.add_argument("--http-rounds", type=int, default=3)
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=120,
        help="seconds to wait for an idle CPU before each section (0: don't)",
    )
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not sections or set(sections) - set(SECTIONS):
        parser.error(f"--sections takes {', '.join(SECTIONS)}")

    previous = args.out / "serve_throughput.json"
    report: dict = json.loads(previous.read_text()) if previous.is_file() else {}
    # The stdlib server's table, replaced by http_servers.
    report.pop("http", None)
    report.get("machine", {}).get("idle_before_section", {}).pop("http", None)
    engines = "onnxruntime" in sections or "keras" in sections
    if engines:
        report["machine"] = {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_before": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "idle_before_section": {},
        }
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work_dir or Path(scratch)
        if args.export_dir:
            export_dir, gan_path = args.export_dir, args.gan
            if engines:
                report["export_seconds"] = None
        else:
            run_dir, export_dir, seconds = build_and_export(
                args.tasks, args.train_backend, work
            )
            report["export_seconds"], report["num_tasks"] = seconds, args.tasks
            gan_path = model_path(run_dir, args.tasks)
        from keras_mergan.serve import ExportDirectory

        exports = ExportDirectory(export_dir)
        task_dir = exports.sampler(exports.latest()).directory
        print(f"benchmarking {task_dir.name} of {export_dir}", flush=True)
        if engines:
            idle = report["machine"]["idle_before_section"]
            rows = []
            if "onnxruntime" in sections:
                idle["onnxruntime"] = wait_idle(args.wait_idle)
                rows += bench_onnxruntime(task_dir, args.window, args.repeats)
            if "keras" in sections and gan_path:
                for backend in filter(None, args.keras_backends.split(",")):
                    idle[f"keras-{backend}"] = wait_idle(args.wait_idle)
                    rows += bench_keras(gan_path, backend, args.window, args.repeats)
            report["images_per_s"] = rows
            from importlib.metadata import version

            report["versions"] = {
                name: version(name)
                for name in ("onnxruntime", "numpy", "keras", "onnx")
            }
            report["machine"]["load_after"] = os.getloadavg()[0]
        if "http" in sections:
            wait_idle(args.wait_idle)
            (work / "http").mkdir(exist_ok=True)
            report["http_servers"] = bench_servers(
                export_dir,
                work / "http",
                args.http_window,
                args.http_warmup,
                args.http_rounds,
            )
        if "oip" in sections:
            wait_idle(args.wait_idle)
            latent_dim = exports.sampler(exports.latest()).latent_dim
            report["oip_routes"] = bench_routes(
                export_dir,
                latent_dim,
                args.http_window,
                args.http_warmup,
                args.http_rounds,
            )
    report["measured_in_last_run"] = sections
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = _markdown(report)
    (args.out / "serve_throughput.md").write_text(markdown)
    print()
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
