"""Run the HTTP server: uvicorn with the httptools parser, hardened.

``python -m keras_mergan.serve EXPORT_DIR [--host H] [--port P] [...]`` (:func:`main`).
uvicorn parses HTTP and enforces keep-alive timeouts; :mod:`.connections`
adds deadlines on request headers (``header_timeout``, against slowloris),
on whole requests (``request_timeout``) and on responses a client reads too
slowly, caps open connections by closing idle ones first, and refuses
request headers over ``max_header_bytes``; :mod:`.admission` reads request
bodies under a deadline before they take memory and caps requests in
flight. On SIGTERM readiness turns false at once, requests in flight get
``--shutdown-timeout`` seconds to finish, then the process exits. No
``Server`` header is sent.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import math
import re
import socket
import sys
import threading

import uvicorn
from fastapi import FastAPI

from keras_mergan.usage import OneLineErrors

from .admission import AdmissionLimits
from .app import MAX_BODY, MODEL_NAME, AppSettings, create_app
from .batching import MAX_BATCH, MAX_WAIT
from .connections import GuardedServer, ServerLimits
from .sampler import MAX_SAMPLES as SAMPLER_MAX_SAMPLES
from .sampler import ExportDirectory
from .service import MAX_GRID, MAX_SAMPLES, MEMORY_BUDGET

log = logging.getLogger("keras_mergan.serve")

_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEFAULT_LIMITS = ServerLimits()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: any free port)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening from now on: clients that connect while the app starts
        # wait in the backlog instead of being refused.
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def make_server(
    app: FastAPI, limits: ServerLimits = DEFAULT_LIMITS, *, access_log: bool = False
) -> uvicorn.Server:
    """A uvicorn server for ``app``; run it with ``server.run(sockets=[bind(...)])``.

    Asked to stop (SIGTERM), it marks the app's service as draining, so that
    readiness probes fail at once while requests in flight finish.

    Example:

    >>> # make_server(create_app("runs/x/export")).run(sockets=[bind("::1", 0)])
    """
    service = getattr(getattr(app, "state", None), "service", None)

    def drain() -> None:
        if service is not None:
            service.draining = True

    return GuardedServer(app, limits, access_log=access_log, on_exit=drain)


class RunningServer:
    """A server running on a background thread (tests, notebooks, benchmarks).

    Example:

    >>> # with start_in_thread(create_app("runs/x/export")) as running:
    >>> #     urllib.request.urlopen(running.url + "/health")
    """

    def __init__(self, server: uvicorn.Server, sock: socket.socket):
        self.server = server
        host, port = sock.getsockname()[:2]
        self.url = (
            f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
        )
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._sock = sock

    def start(self, timeout: float = 60) -> RunningServer:
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server stopped while starting")
            self._thread.join(0.01)
            timeout -= 0.01
            if timeout <= 0:
                raise TimeoutError("the server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self._sock.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_in_thread(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: ServerLimits = DEFAULT_LIMITS,
) -> RunningServer:
    """Serve ``app`` from a daemon thread; returns once it accepts connections."""
    return RunningServer(make_server(app, limits), bind(host, port)).start()


# --- command line -------------------------------------------------------------


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        wanted = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text[:32]!r}")
    return value


def _ranged(kind, low, high):
    def check(text: str):
        value = _number(kind, text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}, got {value}")
        return value

    return check


def _positive(kind):
    def check(text: str):
        value = _number(kind, text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {value}")
        return value

    return check


def _model_name(text: str) -> str:
    if not _MODEL_NAME.match(text):
        raise argparse.ArgumentTypeError(
            "must be 1-64 letters, digits, '_', '.' or '-'"
        )
    return text


def _hosts(text: str) -> tuple[str, ...]:
    hosts = tuple(h.strip() for h in text.split(","))
    for host in hosts:
        if not host or " " in host:
            raise argparse.ArgumentTypeError(
                f"expected host names separated by commas, got {text[:64]!r}"
            )
        if "*" in host[1:] or (host.startswith("*") and not host.startswith("*.")):
            raise argparse.ArgumentTypeError(
                f"a wildcard is allowed only as a leading '*.', got {host[:64]!r}"
            )
    return hosts


def build_parser(prog: str = "python -m keras_mergan.serve") -> argparse.ArgumentParser:
    """The server's command line (``keras-mergan serve`` uses the same flags)."""
    parser = OneLineErrors(
        prog=prog,
        description="Serve exported generators over HTTP: REST API, gallery at /, "
        "API reference at /docs, Open Inference Protocol v2 at /v2.",
    )
    parser.add_argument(
        "export_dir",
        help="export directory (task_XX/manifest.json), or the run folder",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default loopback only)"
    )
    parser.add_argument(
        "--port",
        type=_ranged(int, 0, 65535),
        default=8000,
        help="port to listen on; 0: any free port (default 8000)",
    )
    parser.add_argument(
        "--max-grid",
        type=_ranged(int, 1, 4096),
        default=MAX_GRID,
        help=f"most samples in a PNG grid (default {MAX_GRID})",
    )
    parser.add_argument(
        "--max-samples",
        type=_ranged(int, 1, SAMPLER_MAX_SAMPLES),
        default=MAX_SAMPLES,
        help=f"most samples per /api/samples or inference request "
        f"(default {MAX_SAMPLES})",
    )
    parser.add_argument(
        "--threads",
        type=_ranged(int, 1, 1024),
        default=None,
        help="inference threads (default: the CPUs this process may use)",
    )
    parser.add_argument(
        "--model-name",
        type=_model_name,
        default=MODEL_NAME,
        help=f"model name in the Open Inference Protocol (default {MODEL_NAME})",
    )
    parser.add_argument(
        "--max-batch",
        type=_ranged(int, 1, 65536),
        default=MAX_BATCH,
        help=f"most rows merged into one onnxruntime call (default {MAX_BATCH})",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=_ranged(float, 0, 1000),
        default=MAX_WAIT * 1000,
        help=f"most ms a batch waits for more requests (default {MAX_WAIT * 1000:g})",
    )
    parser.add_argument(
        "--memory-mb",
        type=_positive(int),
        default=MEMORY_BUDGET // 2**20,
        help="MiB that requests in flight may hold together "
        f"(default {MEMORY_BUDGET // 2**20})",
    )
    parser.add_argument(
        "--max-body-kb",
        type=_positive(int),
        default=MAX_BODY // 2**10,
        help=f"request body limit in KiB (default {MAX_BODY // 2**10})",
    )
    defaults = DEFAULT_LIMITS
    admission = AdmissionLimits()
    parser.add_argument(
        "--limit-concurrency",
        type=_positive(int),
        default=admission.max_requests,
        help="requests in flight at once (health probes and /metrics aside); "
        f"beyond, 503 (default {admission.max_requests})",
    )
    parser.add_argument(
        "--max-per-client",
        type=_ranged(int, 0, 65536),
        default=admission.max_per_client,
        help="requests in flight at once per client address; beyond, 429 "
        "(default 0: no cap)",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive(int),
        default=defaults.max_connections,
        help="open connections; beyond, the oldest idle one is closed "
        f"(default {defaults.max_connections})",
    )
    parser.add_argument(
        "--timeout-body",
        type=_positive(float),
        default=admission.body_timeout,
        help="seconds a request body may take, plus its size at --min-rate-kb "
        f"(default {admission.body_timeout:g})",
    )
    parser.add_argument(
        "--timeout-send",
        type=_positive(float),
        default=defaults.send_timeout,
        help="seconds a client may leave a response unread, plus its size at "
        f"--min-rate-kb (default {defaults.send_timeout:g})",
    )
    parser.add_argument(
        "--min-rate-kb",
        type=_positive(int),
        default=admission.min_body_rate // 2**10,
        help="KiB/s a client must send a body, and read a response, at "
        f"(default {admission.min_body_rate // 2**10})",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=_positive(float),
        default=defaults.shutdown_timeout,
        help="seconds requests in flight get to finish after SIGTERM "
        f"(default {defaults.shutdown_timeout:g})",
    )
    parser.add_argument(
        "--timeout-keep-alive",
        type=_positive(float),
        default=defaults.keep_alive,
        help=f"seconds an idle connection stays open (default {defaults.keep_alive:g})",
    )
    parser.add_argument(
        "--timeout-header",
        type=_positive(float),
        default=defaults.header_timeout,
        help="seconds to receive a request's headers "
        f"(default {defaults.header_timeout:g})",
    )
    parser.add_argument(
        "--timeout-request",
        type=_positive(float),
        default=defaults.request_timeout,
        help="seconds from a request's headers to the end of its response "
        f"(default {defaults.request_timeout:g})",
    )
    parser.add_argument(
        "--allowed-hosts",
        type=_hosts,
        default=(),
        help="comma-separated Host header values to accept, e.g. "
        "'example.org,*.example.org' (default: any)",
    )
    parser.add_argument(
        "--grpc-port",
        type=_ranged(int, 0, 65535),
        default=None,
        help="also serve the Open Inference Protocol over gRPC on this port of "
        "--host (0: any free port; default: no gRPC; needs grpcio and grpcio-tools)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def main(
    argv: list[str] | None = None, prog: str = "python -m keras_mergan.serve"
) -> int:
    """Parse the command line, bind, serve until interrupted; the exit status.

    Example:

    >>> # main(["runs/x/export", "--port", "8000"])
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        exports = ExportDirectory(args.export_dir, threads=args.threads)
    except OSError as error:
        parser.error(str(error))
    settings = AppSettings(
        max_grid=args.max_grid,
        max_samples=args.max_samples,
        max_batch=args.max_batch,
        batch_wait=args.batch_wait_ms / 1000,
        memory_budget=args.memory_mb * 2**20,
        max_body=args.max_body_kb * 2**10,
        model_name=args.model_name,
        allowed_hosts=args.allowed_hosts,
        threads=args.threads,
        grpc_address=(
            None
            if args.grpc_port is None
            else f"[{args.host}]:{args.grpc_port}"
            if ":" in args.host
            else f"{args.host}:{args.grpc_port}"
        ),
        admission=AdmissionLimits(
            body_timeout=args.timeout_body,
            min_body_rate=args.min_rate_kb * 2**10,
            max_requests=args.limit_concurrency,
            max_per_client=args.max_per_client,
        ),
    )
    limits = ServerLimits(
        header_timeout=args.timeout_header,
        request_timeout=args.timeout_request,
        keep_alive=args.timeout_keep_alive,
        max_connections=args.max_connections,
        send_timeout=args.timeout_send,
        min_send_rate=args.min_rate_kb * 2**10,
        shutdown_timeout=args.shutdown_timeout,
    )
    if args.verbose:  # one line per request, with its request id
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access = logging.getLogger("keras_mergan.serve.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
    try:
        sock = bind(args.host, args.port)
    except OSError as error:
        print(
            f"{prog}: error: cannot listen on {args.host}:{args.port}: "
            f"{error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    server = make_server(create_app(exports, settings), limits, access_log=args.verbose)
    host, port = sock.getsockname()[:2]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(
            f"warning: listening on {host}, reachable from other machines",
            file=sys.stderr,
        )
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {args.export_dir} on http://{shown}:{port}/", flush=True)
    # Objects alive now (the app, the sessions) live as long as the server:
    # keeping them out of the collector's full passes shortens its pauses.
    gc.freeze()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
