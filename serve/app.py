"""The ASGI application: the REST API, the gallery, OpenAPI docs and the OIP v2 routes.

Endpoints (GET; errors are JSON ``{"error": {"status", "code", "message",
"parameter"}}``, a 4xx status for anything wrong in the request, 503 for a
task whose export cannot be loaded):

``/``                 gallery page (HTML + JS, no external resources)
``/docs``             API reference, rendered from ``/openapi.json``
``/health``           ``{"status": "ok" | "degraded", "tasks", "latest", "broken"}``
``/api/tasks``        every exported task with its learned categories (a task
                      that cannot load is listed with an ``error`` instead)
``/api/tasks/<T>``    one task's manifest
``/api/grid.png``     PNG grid; query ``category`` (name or index, required),
                      ``task`` (number or ``latest``, default latest), ``n``
                      (1..max_grid, default 16), ``seed`` (default 0),
                      ``scale`` (1..8, default 2), ``columns`` (default
                      near-square)
``/api/samples``      raw images; same ``category``/``task``/``n``/``seed``
                      plus ``format`` = ``npy`` (default, uint8 ``[n, H, W,
                      C]``) or ``json``, and ``dtype`` = ``uint8`` (default)
                      or ``float32`` (generator output in ``value_range``)
``/v2/...``           the Open Inference Protocol (:mod:`keras_mergan.serve.oip`)
``/metrics``          Prometheus metrics (:mod:`keras_mergan.serve.observe`)

Every response carries an ``X-Request-ID``. A path with a trailing slash
too many or too few is redirected with a relative ``Location`` (never
built from the ``Host`` header).

Run it with :func:`.server.main` (``keras-mergan serve``), or with any
ASGI server: ``create_app("runs/x/export")`` is the application.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .admission import AdmissionLimits, ConcurrencyLimit
from .batching import MAX_BATCH, MAX_WAIT
from .errors import PayloadTooLargeError
from .gallery import API_DOCS_HTML, GALLERY_HTML
from .observe import Metrics, RequestObserver
from .oip import ModelVersions, oip_router
from .responses import (
    HEADERS,
    RETRY_AFTER,
    GuardedRoute,
    error_response,
    json_response,
    payload_response,
)
from .sampler import ExportDirectory, available_cpus
from .service import (
    MAX_GRID,
    MAX_SAMPLES,
    MEMORY_BUDGET,
    GeneratorService,
    parse_query,
)
from .stats import ModelStats

MAX_BODY = 4 * 2**20
MODEL_NAME = "generator"
_ENDPOINTS = "/, /docs, /health, /api/tasks, /api/grid.png, /api/samples, /v2, /metrics"


@dataclass(frozen=True)
class AppSettings:
    """What :func:`create_app` may be asked to change; the defaults are the CLI's.

    Example:

    >>> AppSettings(max_samples=64).max_grid
    256
    """

    max_grid: int = MAX_GRID
    max_samples: int = MAX_SAMPLES
    max_batch: int = MAX_BATCH
    batch_wait: float = MAX_WAIT
    memory_budget: int = MEMORY_BUDGET
    max_body: int = MAX_BODY
    model_name: str = MODEL_NAME
    allowed_hosts: tuple[str, ...] = ()
    threads: int | None = None
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)
    # "host:port" of the gRPC service (port 0: any free one); None: no gRPC.
    grpc_address: str | None = None


class HostCheck:
    """ASGI middleware: only the allowed ``Host`` values; else a JSON 400.

    ``allowed`` holds host names, or ``*.domain`` for any subdomain.

    Example:

    >>> # app = HostCheck(app, ("example.org", "*.example.org"))
    """

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]):
        self.app = app
        self.allowed = tuple(host.lower() for host in allowed)

    def _ok(self, host: str) -> bool:
        host = host.lower()
        if host.startswith("["):  # an IPv6 literal: keep the brackets
            host = host.split("]", 1)[0] + "]"
        else:
            host = host.rsplit(":", 1)[0]
        return any(
            host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
            for pattern in self.allowed
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = ""
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value.decode("latin-1")
                    break
            if not self._ok(host):
                response = error_response(
                    400,
                    "invalid_host",
                    "this server does not answer for that Host header",
                    oip=scope["path"].startswith("/v2"),
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequestGuard:
    """ASGI middleware: request body size limit, and HEAD answered as GET.

    A body announced larger than ``max_body`` is refused before it is read;
    a chunked one is cut off once it passes the limit.

    Example:

    >>> # app = RequestGuard(app, max_body=4 * 2**20)
    """

    def __init__(self, app: ASGIApp, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            # The server leaves out the body of a HEAD response itself.
            scope = dict(scope, method="GET")
        for name, value in scope["headers"]:
            if name == b"content-length":
                if int(value) > self.max_body:
                    oip = scope["path"].startswith("/v2")
                    response = error_response(
                        413, "too_large", self._message(), oip=oip
                    )
                    await response(scope, receive, send)
                    return
                break
            if name == b"transfer-encoding":
                receive = self._counting(receive)
                break
        await self.app(scope, receive, send)

    def _message(self) -> str:
        return f"request body over the limit of {self.max_body} bytes"

    def _counting(self, receive: Receive) -> Receive:
        total = 0

        async def counted() -> dict:
            nonlocal total
            message = await receive()
            total += len(message.get("body", b""))
            if total > self.max_body:
                raise PayloadTooLargeError(self._message())
            return message

        return counted


QUERY_PARAMETERS = {
    "category": ("class name or index, learned by the task", True, "string"),
    "task": ("task number or 'latest' (default)", False, "string"),
    "n": ("number of samples (default 16)", False, "integer"),
    "seed": ("seed of the latent vectors (default 0)", False, "integer"),
    "scale": ("pixel enlargement 1..8 (default 2)", False, "integer"),
    "columns": ("grid columns (default near-square)", False, "integer"),
    "format": ("npy (default) or json", False, "string"),
    "dtype": ("uint8 (default) or float32 (raw generator output)", False, "string"),
}


def _query_docs(*names: str) -> dict:
    """OpenAPI parameters of a route that parses its own query string."""
    parameters = []
    for name in names:
        description, required, kind = QUERY_PARAMETERS[name]
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": required,
                "description": description,
                "schema": {"type": kind},
            }
        )
    return {"parameters": parameters}


def _query(request: Request) -> dict[str, str]:
    return parse_query(request.scope["query_string"].decode("latin-1"))


def create_app(
    exports: ExportDirectory | str | os.PathLike,
    settings: AppSettings | None = None,
) -> FastAPI:
    """The FastAPI application serving ``exports``.

    Args:
        exports: an :class:`~keras_mergan.serve.sampler.ExportDirectory`, or its path.
        settings: limits, batching and host allow-list.

    Example:

    >>> # import uvicorn
    >>> # uvicorn.run(create_app("runs/x/export"), port=8000)
    """
    settings = settings or AppSettings()
    if not isinstance(exports, ExportDirectory):
        exports = ExportDirectory(exports, threads=settings.threads)
    executor = ThreadPoolExecutor(
        settings.threads or available_cpus(), thread_name_prefix="generate"
    )
    metrics = Metrics()
    stats = ModelStats()

    def observe(task: int, rows: int, seconds: float) -> None:
        metrics.batch(task, rows=rows, seconds=seconds)
        stats.execution(task, rows, seconds)

    service = GeneratorService(
        exports,
        max_grid=settings.max_grid,
        max_samples=settings.max_samples,
        max_batch=settings.max_batch,
        max_wait=settings.batch_wait,
        memory_budget=settings.memory_budget,
        executor=executor,
        observe=observe,
    )
    metrics.watch(lambda: service.queued, lambda: service.budget.used)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Load every task once, off the event loop: requests then find their
        # sessions ready, and a broken task is known before the first request.
        await run_in_threadpool(exports.status)
        grpc_server = None
        if settings.grpc_address is not None:
            # Imported only when asked for: HTTP alone needs no grpcio.
            from .grpc_service import start_grpc

            grpc_server, port = await start_grpc(
                service,
                ModelVersions(service, settings.model_name),
                settings.grpc_address,
                settings.max_body,
            )
            app.state.grpc_port = port
            host = settings.grpc_address.rsplit(":", 1)[0]
            print(f"gRPC (Open Inference Protocol) on {host}:{port}", flush=True)
        yield
        if grpc_server is not None:
            await grpc_server.stop(grace=1.0)
        executor.shutdown(wait=False)

    app = FastAPI(
        title="keras-mergan serve",
        version=__version__,
        description="Samples of exported conditional generators, and the Open "
        "Inference Protocol v2 (`/v2`).",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.router.route_class = GuardedRoute
    # Starlette's own redirect builds an absolute URL from the Host header;
    # ours (the 404 handler) is relative.
    app.router.redirect_slashes = False
    app.state.service = service
    app.state.metrics = metrics

    @app.get("/", response_class=HTMLResponse, summary="Gallery page")
    async def gallery() -> Response:
        return HTMLResponse(GALLERY_HTML, headers=HEADERS)

    @app.get("/index.html", include_in_schema=False)
    async def gallery_index() -> Response:
        return HTMLResponse(GALLERY_HTML, headers=HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return HTMLResponse(API_DOCS_HTML, headers=HEADERS)

    @app.get(
        "/health",
        summary="ok, or degraded with the tasks that cannot load (503 if none can)",
    )
    async def health() -> Response:
        health = service.health()
        if health["status"] in ("ok", "degraded"):
            return json_response(health)
        return json_response(health, 503, {"Retry-After": RETRY_AFTER})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(
            metrics.exposition(),
            200,
            HEADERS,
            "text/plain; version=0.0.4; charset=utf-8",
        )

    @app.get("/api/tasks", summary="Every exported task and its categories")
    async def tasks() -> Response:
        return json_response(service.tasks())

    # ``path`` so that an encoded slash reaches the task check (a 400), not
    # a routing miss.
    @app.get("/api/tasks/{task:path}", summary="One task's manifest")
    async def task(task: str) -> Response:
        return json_response(service.task(task))

    @app.get(
        "/api/grid.png",
        summary="PNG grid of samples of one category",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
        openapi_extra=_query_docs("category", "task", "n", "seed", "scale", "columns"),
    )
    async def grid_png(request: Request) -> Response:
        return payload_response(await service.grid_png(_query(request)))

    @app.get(
        "/api/samples",
        summary="Samples as .npy or JSON",
        response_class=Response,
        responses={
            200: {"content": {"application/octet-stream": {}, "application/json": {}}}
        },
        openapi_extra=_query_docs("category", "task", "n", "seed", "format", "dtype"),
    )
    async def samples(request: Request) -> Response:
        return payload_response(await service.samples(_query(request)))

    app.include_router(
        oip_router(
            service, settings.model_name, settings.max_body, settings.admission, stats
        )
    )

    def redirect(request: Request) -> Response | None:
        """A relative redirect to this path, trailing slash toggled, if routed."""
        path = request.scope["path"]
        if path == "/":
            return None
        other = path.rstrip("/") if path.endswith("/") else path + "/"
        # Never "//host": a Location starting so would leave this server.
        other = "/" + other.lstrip("/")
        scope = dict(request.scope, path=other)
        if not any(route.matches(scope)[0] is Match.FULL for route in app.routes):
            return None
        query = request.scope.get("query_string", b"").decode("latin-1")
        location = quote(other) + ("?" + quote(query, safe="=&+%") if query else "")
        return Response(status_code=307, headers={**HEADERS, "Location": location})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        path = request.url.path
        if error.status_code == 404 and (moved := redirect(request)) is not None:
            return moved
        if error.status_code == 404:
            message = f"no such endpoint {path[:100]!r}; see {_ENDPOINTS}"
            code = "not_found"
        elif error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "GET")
            message = f"{request.method} is not supported here; use {allowed}"
            code = "method_not_allowed"
        else:
            message, code = str(error.detail)[:200], "http"
        return error_response(
            error.status_code,
            code,
            message,
            oip=path.startswith("/v2"),
            headers=error.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        return error_response(
            400,
            "invalid_parameter",
            "malformed request",
            oip=request.url.path.startswith("/v2"),
        )

    # Outermost last: the observer sees every answer, refusals included.
    app.add_middleware(RequestGuard, max_body=settings.max_body)
    app.add_middleware(ConcurrencyLimit, limits=settings.admission)
    if settings.allowed_hosts:
        app.add_middleware(HostCheck, allowed=settings.allowed_hosts)
    app.add_middleware(RequestObserver, metrics=metrics)
    return app
