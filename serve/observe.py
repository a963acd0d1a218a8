"""Request ids, the access log and Prometheus metrics.

Every response carries an ``X-Request-ID``: the client's own if it sent a
usable one (up to 128 visible ASCII characters), else a new one; the access
log (``keras_mergan.serve.access``, on with ``--verbose``) names it, so a
client's report can be found in the log.

``GET /metrics`` (Prometheus text format) counts requests by route,
method and status, times them by route, and reports the rows of each
onnxruntime call, its time per model version, requests queued and memory
held. Each app has its own registry, so several can live in one process.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("keras_mergan.serve.access")
# One line per request only when asked for (`serve --verbose`, or a level the
# program set): the package's other messages are shown at INFO.
if access_log.level == logging.NOTSET:
    access_log.setLevel(logging.WARNING)
_REQUEST_ID = re.compile(r"^[!-~]{1,128}$")  # visible ASCII: safe in a log line
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_ROWS = tuple(2**i for i in range(17))


class Metrics:
    """The server's Prometheus metrics, on a registry of their own.

    Example:

    >>> metrics = Metrics()
    >>> metrics.batch(2, rows=8, seconds=0.01)
    >>> b"keras_mergan_batch_rows_count" in metrics.exposition()
    True
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        prefix = "keras_mergan_"
        self.requests = Counter(
            prefix + "http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            prefix + "http_request_duration_seconds",
            "Seconds from a request's headers to the end of its response",
            ["route"],
            buckets=_LATENCY,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            prefix + "http_requests_in_flight",
            "Requests being answered",
            registry=self.registry,
        )
        self.rows = Histogram(
            prefix + "batch_rows",
            "Rows (samples) per onnxruntime call, merged requests included",
            buckets=_ROWS,
            registry=self.registry,
        )
        self.inference = Histogram(
            prefix + "inference_seconds",
            "Seconds per onnxruntime call, by model version (task)",
            ["version"],
            buckets=_LATENCY,
            registry=self.registry,
        )
        self.queued = Gauge(
            prefix + "queued_requests",
            "Requests waiting for a batch or for memory",
            registry=self.registry,
        )
        self.memory = Gauge(
            prefix + "memory_budget_used_bytes",
            "Bytes of the memory budget held by requests in flight",
            registry=self.registry,
        )

    def batch(self, version: int, *, rows: int, seconds: float) -> None:
        """One onnxruntime call (from the batcher)."""
        self.rows.observe(rows)
        self.inference.labels(str(version)).observe(seconds)

    def watch(self, queued: Callable[[], float], memory: Callable[[], float]) -> None:
        """Gauges read when scraped, not kept up to date by every request."""
        self.queued.set_function(queued)
        self.memory.set_function(memory)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# The scope key where the matched route notes its path template
# (responses.GuardedRoute): a label of bounded values, unlike the path.
ROUTE_KEY = "keras_mergan.route"


class RequestObserver:
    """ASGI middleware: request id, access log line and metrics of every request.

    Requests are named in metrics by their route's path template, or
    ``unmatched``.

    Example:

    >>> # app = RequestObserver(app, Metrics())
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                if _REQUEST_ID.match(text):
                    request_id = text
                break
        request_id = request_id or uuid.uuid4().hex
        started = time.perf_counter()
        status = 500
        sent = 0
        # A list, not a string: shared by the copies of the scope made below.
        routes: list[str] = []
        scope[ROUTE_KEY] = routes
        done = False

        def record() -> None:
            nonlocal done
            if done:
                return
            done = True
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - started
            route = routes[0] if routes else "unmatched"
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            if access_log.isEnabledFor(logging.INFO):
                _log(scope, status, sent, seconds, request_id)

        async def observed(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode()))
                message = dict(message, headers=headers)
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                if not message.get("more_body", False):
                    # Before the last bytes leave: a client that reads its
                    # answer then finds it in the log and the metrics.
                    record()
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, observed)
        finally:
            record()  # a request that ended without a complete response


def _log(scope: Scope, status: int, sent: int, seconds: float, request_id: str):
    client = scope.get("client") or ("-", 0)
    query = scope.get("query_string", b"")
    path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
    access_log.info(
        '%s - "%s %s HTTP/%s" %d %d %.1fms request_id=%s',
        client[0],
        scope["method"],
        # Escaped: a decoded "%0A" must not start a forged line.
        ascii(path[:300])[1:-1],
        scope.get("http_version", "1.1"),
        status,
        sent,
        seconds * 1000,
        request_id,
    )
