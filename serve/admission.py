"""Admission control: what a request must do before it takes shared resources.

Slow clients must not hold what fast ones need. So:

- a request body is read whole, within ``body_timeout`` seconds plus its
  size at ``min_body_rate``, before the request takes any of the memory
  budget (:func:`read_body`); a slower body gets a 408 and a closed
  connection;
- requests in flight (headers complete, response not yet sent) are capped
  by ``max_requests``, and optionally per client address by
  ``max_per_client`` (:class:`ConcurrencyLimit`): beyond, a JSON 503 (or
  429 for one client's excess) with ``Retry-After``. Health probes and
  ``/metrics`` are not counted, so an orchestrator still sees the server
  under load. Unfinished request headers and slow readers are bounded by
  the connection deadlines of :mod:`.connections`, not by this count.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ServeError
from .responses import error_response

# Paths that are never refused for load: probes must see the server's state.
_PROBES = ("/health", "/v2/health/", "/metrics")


@dataclass(frozen=True)
class AdmissionLimits:
    """Limits on requests, as opposed to connections (see :class:`.ServerLimits`).

    Example:

    >>> AdmissionLimits(max_per_client=4).max_requests
    256
    """

    body_timeout: float = 10.0
    min_body_rate: int = 256 * 2**10  # bytes per second
    max_requests: int = 256
    max_per_client: int = 0  # 0: no per-client cap


class RequestTimeoutError(ServeError):
    """The request body did not arrive in time (HTTP 408, connection closed)."""

    status = 408
    code = "timeout"


class ClientLimitError(ServeError):
    """One client has too many requests in flight (HTTP 429)."""

    status = 429
    code = "too_many_requests"


async def read_body(request: Request, limits: AdmissionLimits, max_body: int) -> bytes:
    """The whole request body, or a :class:`RequestTimeoutError` if it came too slowly.

    The allowance is ``body_timeout`` plus the announced size (or
    ``max_body`` for a chunked body) at ``min_body_rate``.

    Example:

    >>> # body = await read_body(request, AdmissionLimits(), 4 * 2**20)
    """
    declared = request.headers.get("content-length")
    size = (
        int(declared)
        if declared and declared.isascii() and declared.isdigit()
        else max_body
    )
    allowance = limits.body_timeout + size / limits.min_body_rate
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(allowance):
            async for chunk in request.stream():
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeoutError(
            f"the request body took over {allowance:.0f} s to arrive "
            f"(at least {limits.min_body_rate // 1024} KiB/s are needed)"
        ) from None
    return b"".join(chunks)


class ConcurrencyLimit:
    """ASGI middleware: caps requests in flight, overall and per client address.

    Example:

    >>> # app = ConcurrencyLimit(app, AdmissionLimits(max_requests=64))
    """

    def __init__(self, app: ASGIApp, limits: AdmissionLimits) -> None:
        self.app = app
        self.limits = limits
        self.in_flight = 0
        self.per_client: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_PROBES):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("", 0))[0]
        oip = scope["path"].startswith("/v2")
        if self.in_flight >= self.limits.max_requests:
            response = error_response(
                503, "overloaded", "the server is at its request limit; retry", oip=oip
            )
            await response(scope, receive, send)
            return
        cap = self.limits.max_per_client
        if cap and self.per_client[client] >= cap:
            response = error_response(
                429,
                "too_many_requests",
                f"at most {cap} requests at once per client; retry",
                oip=oip,
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        self.per_client[client] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.per_client[client] -= 1
            if not self.per_client[client]:
                del self.per_client[client]
