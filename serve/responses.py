"""Responses of the HTTP API: standard headers, errors as JSON, memory leases.

Shared by the REST routes (:mod:`.app`) and the Open Inference Protocol
routes (:mod:`.oip`), whose error bodies differ: ``{"error": {"status",
"code", "message"}}`` for the first, ``{"error": "message"}`` for the second.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from .batching import Lease
from .errors import ServeError
from .service import Payload

log = logging.getLogger("keras_mergan.serve")

# Sent with every response: nothing here may be cached by a proxy (samples
# depend on the export currently published) or sniffed into another type.
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# Seconds a client should wait before retrying a 503.
RETRY_AFTER = "1"


def json_response(
    body: Any, status: int = 200, headers: dict | None = None
) -> Response:
    """``body`` as JSON with the server's standard headers."""
    return Response(
        json.dumps(body).encode(),
        status,
        {**HEADERS, **(headers or {})},
        "application/json",
    )


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    oip: bool,
    parameter: str | None = None,
    headers: dict | None = None,
) -> Response:
    """An error in the REST API's form, or in the Open Inference Protocol's."""
    if status in (408, 413):  # the rest of the body is not worth reading
        headers = {**(headers or {}), "Connection": "close"}
    if status == 503:  # a condition that passes: tell clients when to retry
        headers = {"Retry-After": RETRY_AFTER, **(headers or {})}
    if oip:
        return json_response({"error": message}, status, headers)
    error = {"status": status, "code": code, "message": message}
    if parameter is not None:
        error["parameter"] = parameter
    return json_response({"error": error}, status, headers)


def serve_error_response(error: ServeError, *, oip: bool) -> Response:
    return error_response(
        error.status, error.code, error.message, oip=oip, parameter=error.parameter
    )


class LeasedResponse(Response):
    """A response that gives its memory back to the budget once it is sent.

    Example:

    >>> # LeasedResponse(Response(b"..."), lease)  # lease released after sending
    """

    def __init__(self, inner: Response, lease: Lease):
        self.inner = inner
        self.lease = lease
        self.status_code = inner.status_code
        self.background = None

    @property
    def headers(self) -> MutableHeaders:  # those of the response it wraps
        return self.inner.headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.lease.release()


def payload_response(payload: Payload) -> Response:
    headers = {**HEADERS, **(payload.headers or {})}
    if isinstance(payload.body, bytes):
        response = Response(payload.body, 200, headers, payload.media_type)
    else:
        response = StreamingResponse(payload.body, 200, headers, payload.media_type)
    return (
        response if payload.lease is None else LeasedResponse(response, payload.lease)
    )


class GuardedRoute(APIRoute):
    """An API route whose errors become JSON responses; nothing else escapes.

    Routes under ``/v2`` answer in the Open Inference Protocol's error form.

    Example:

    >>> # APIRouter(route_class=GuardedRoute)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        oip = self.path.startswith("/v2")

        async def guarded(request: Request) -> Response:
            noted = request.scope.get("keras_mergan.route")
            if noted is not None:  # for the metrics (observe.RequestObserver)
                noted.append(self.path)
            try:
                return await handler(request)
            except (HTTPException, RequestValidationError):
                raise
            except ClientDisconnect:  # nobody is left to read an answer
                return Response(status_code=499)
            except ServeError as error:
                return serve_error_response(error, oip=oip)
            except Exception:
                log.exception("internal error on %s", request.url.path[:200])
                return error_response(500, "internal", "internal error", oip=oip)

        return guarded
