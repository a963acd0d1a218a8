"""HTTP server for exported generators (stdlib ``http.server``, loopback by default).

Endpoints (all GET; errors are JSON ``{"error": {"status", "code", "message",
"parameter"}}`` with a 4xx status for anything wrong in the request):

``/``                       gallery page (HTML + JS, no external resources)
``/health``                 ``{"status": "ok", "tasks": [...], "latest": T}``
``/api/tasks``              every exported task with its learned categories
``/api/tasks/<T>``          one task's manifest
``/api/grid.png``           PNG grid; query ``category`` (name or index,
                            required), ``task`` (number or ``latest``,
                            default latest), ``n`` (1..max_grid, default 16),
                            ``seed`` (default 0), ``scale`` (1..8, default 2),
                            ``columns`` (default near-square)
``/api/samples``            raw images; same ``category``/``task``/``n``/
                            ``seed`` plus ``format`` = ``npy`` (default,
                            uint8 ``[n, H, W, C]``) or ``json``, and
                            ``dtype`` = ``uint8`` (default) or ``float32``
                            (generator output in ``value_range``)
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from serve.errors import InvalidParameterError, ServeError
from serve.gallery import GALLERY_HTML
from serve.images import make_grid, png_bytes
from serve.sampler import ExportDirectory

log = logging.getLogger("serve")

MAX_GRID = 256
MAX_SAMPLES = 1024
_INTEGER = re.compile(r"^[+-]?\d{1,19}$")
_TASK_PATH = re.compile(r"^/api/tasks/([^/]+)$")


def _integer(query: dict, name: str, default: int, low: int, high: int) -> int:
    value = query.get(name)
    if value is None:
        return default
    if not _INTEGER.match(value.strip()):
        raise InvalidParameterError(
            f"{name} must be an integer, got {value[:64]!r}", name
        )
    number = int(value)
    if not low <= number <= high:
        raise InvalidParameterError(
            f"{name} must be in {low}..{high}, got {number}", name
        )
    return number


class GeneratorService:
    """What the HTTP handler calls: parameter checking, sampling and encoding.

    Kept apart from the handler so that it can be used and tested without
    sockets. Every method raises :class:`~serve.errors.ServeError` on bad
    input.

    Example:

    >>> # service = GeneratorService(ExportDirectory("runs/x/export"))
    >>> # png = service.grid_png({"category": "3", "n": "16"})
    """

    def __init__(
        self,
        exports: ExportDirectory,
        max_grid: int = MAX_GRID,
        max_samples: int = MAX_SAMPLES,
        concurrency: int = 4,
    ):
        self.exports = exports
        self.max_grid = max_grid
        self.max_samples = max_samples
        # Bounds how many generator calls run at once, so a burst of large
        # requests queues instead of exhausting memory.
        self._slots = threading.BoundedSemaphore(concurrency)

    def health(self) -> dict:
        tasks = self.exports.tasks()
        return {"status": "ok", "tasks": tasks, "latest": tasks[-1] if tasks else None}

    def tasks(self) -> dict:
        entries = []
        for task in self.exports.tasks():
            try:
                manifest = self.exports.manifest(task)
            except ServeError as error:  # e.g. a corrupt export: list it as such
                entries.append({"task": task, "error": error.message})
                continue
            entries.append(
                {
                    "task": task,
                    "categories": manifest["categories"],
                    "new_categories": [
                        c
                        for c in manifest["categories"]
                        if c["index"] in manifest.get("task_classes", [])
                    ],
                    "latent_dim": manifest["latent_dim"],
                    "image_shape": manifest["image_shape"],
                    "value_range": manifest["value_range"],
                }
            )
        latest = entries[-1]["task"] if entries else None
        limits = {"max_grid": self.max_grid, "max_samples": self.max_samples}
        return {"tasks": entries, "latest": latest, "limits": limits}

    def task(self, value: str) -> dict:
        return self.exports.manifest(value)

    def _sample(
        self, query: dict, allowed: set[str], max_n: int
    ) -> tuple[np.ndarray, dict]:
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise InvalidParameterError(
                f"unknown parameter {unknown[0][:64]!r}; "
                f"allowed: {', '.join(sorted(allowed))}",
                unknown[0][:64],
            )
        if "category" not in query or not query["category"].strip():
            raise InvalidParameterError(
                "category is required (a name or an index)", "category"
            )
        dtype = query.get("dtype", "uint8")
        if dtype not in ("uint8", "float32"):
            raise InvalidParameterError("dtype must be uint8 or float32", "dtype")
        sampler = self.exports.sampler(query.get("task"))
        sampler.category_index(query["category"])
        n = _integer(query, "n", 16, 1, max_n)
        seed = _integer(query, "seed", 0, 0, 2**63 - 1)
        raw = dtype == "float32"
        with self._slots:
            images = sampler.sample(query["category"], n, seed, raw=raw)
        return images, {"task": sampler.task, "n": n, "seed": seed}

    def grid_png(self, query: dict) -> bytes:
        allowed = {"task", "category", "n", "seed", "scale", "columns"}
        scale = _integer(query, "scale", 2, 1, 8)
        columns = _integer(query, "columns", 0, 0, MAX_GRID)
        images, _ = self._sample(query, allowed, self.max_grid)
        return png_bytes(make_grid(images, columns=columns or None, scale=scale))

    def samples(self, query: dict) -> tuple[bytes, str]:
        allowed = {"task", "category", "n", "seed", "format", "dtype"}
        form = query.get("format", "npy")
        if form not in ("npy", "json"):
            raise InvalidParameterError("format must be npy or json", "format")
        images, meta = self._sample(query, allowed, self.max_samples)
        if form == "json":
            body = dict(meta, shape=list(images.shape), dtype=str(images.dtype))
            body["data"] = images.tolist()
            return json.dumps(body).encode(), "application/json"
        buffer = BytesIO()
        np.save(buffer, images, allow_pickle=False)
        return buffer.getvalue(), "application/octet-stream"


class Handler(BaseHTTPRequestHandler):
    """Routes GET requests to a :class:`GeneratorService`; no error escapes.

    Use :func:`make_server`, which binds a service to a subclass.

    Example:

    >>> # server = make_server("runs/x/export", port=8000); server.serve_forever()
    """

    service: GeneratorService  # set on the subclass made by make_server
    protocol_version = "HTTP/1.1"
    server_version = "keras-mergan-serve/1"
    quiet = True

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY,
        # Nagle + delayed ACK stall every keep-alive response by ~40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        try:
            self._route()
        except ServeError as error:
            self._send_json(error.to_json(), error.status)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("internal error on %s", self.path)
            self._send_json(
                {
                    "error": {
                        "status": 500,
                        "code": "internal",
                        "message": "internal error",
                    }
                },
                500,
            )

    def _route(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        query = self._query(url.query)
        service = self.service
        if path in ("/", "/index.html"):
            self._send(GALLERY_HTML.encode(), "text/html; charset=utf-8")
        elif path == "/health":
            self._send_json(service.health())
        elif path == "/api/tasks":
            self._send_json(service.tasks())
        elif match := _TASK_PATH.match(path):
            self._send_json(service.task(match.group(1)))
        elif path == "/api/grid.png":
            self._send(service.grid_png(query), "image/png")
        elif path == "/api/samples":
            body, content_type = service.samples(query)
            self._send(body, content_type)
        else:
            self._send_json(
                {
                    "error": {
                        "status": 404,
                        "code": "not_found",
                        "message": f"no such endpoint {path[:100]!r}; see / for "
                        "the gallery, "
                        "/health, /api/tasks, /api/grid.png, /api/samples",
                    }
                },
                404,
            )

    @staticmethod
    def _query(text: str) -> dict[str, str]:
        try:
            pairs = parse_qsl(
                text,
                keep_blank_values=True,
                strict_parsing=bool(text),
                max_num_fields=32,
            )
        except ValueError as error:
            raise InvalidParameterError(f"malformed query string: {error}") from None
        query: dict[str, str] = {}
        for key, value in pairs:
            if key in query:
                raise InvalidParameterError(
                    f"parameter {key[:64]!r} given twice", key[:64]
                )
            query[key] = value
        return query

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, body: dict, status: int = 200) -> None:
        self._send(json.dumps(body).encode(), "application/json", status)

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ):
        """http.server's own errors (bad request line, 414...) as JSON too.

        It answers 501 to an unknown method and 505 to an unknown HTTP
        version; both are the client's doing, so they become 405 and 400.
        """
        code = {501: 405, 505: 400}.get(code, code)
        # A one-word request line parses as HTTP/0.9, which would get a body
        # without status line or headers; nobody speaks 0.9, answer in 1.0.
        if getattr(self, "request_version", None) == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        try:
            reason = HTTPStatus(code).phrase
        except ValueError:
            reason = ""
        self.close_connection = True
        body = {"error": {"status": code, "code": "http", "message": message or reason}}
        try:
            self._send_json(body, code)
        except OSError:
            pass

    def _method_not_allowed(self) -> None:
        self.close_connection = True
        self._send_json(
            {
                "error": {
                    "status": 405,
                    "code": "method_not_allowed",
                    "message": f"{self.command} is not supported; use GET",
                }
            },
            405,
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed  # noqa: N815

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        if not self.quiet:
            super().log_message(format, *args)


def make_server(
    export_dir: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    max_grid: int = MAX_GRID,
    max_samples: int = MAX_SAMPLES,
    quiet: bool = True,
    threads: int | None = None,
) -> ThreadingHTTPServer:
    """A ready-to-run ThreadingHTTPServer (``port=0`` picks a free port).

    Example:

    >>> # server = make_server("runs/x/export", port=0)
    >>> # threading.Thread(target=server.serve_forever, daemon=True).start()
    """
    exports = ExportDirectory(export_dir, threads=threads)
    service = GeneratorService(exports, max_grid=max_grid, max_samples=max_samples)
    handler = type("BoundHandler", (Handler,), {"service": service, "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
