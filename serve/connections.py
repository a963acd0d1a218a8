"""Connection deadlines and request-head checks that uvicorn's settings lack.

uvicorn's public settings bound idle keep-alive connections
(``timeout_keep_alive``), but not a client that sends its request headers
slowly or never (slowloris), nor one that sends its body or reads its
response too slowly; its connection limit (``limit_concurrency``, unused
here) counts such clients' connections and so lets them lock everyone
else out; and it answers unparseable requests in plain text.
So every connection that uvicorn accepts gets a :class:`ConnectionGuard`
around uvicorn's own protocol (put there by :class:`GuardedEventLoop`, on
which :class:`GuardedServer` runs), which reads the same bytes with its own
httptools parser before uvicorn does:

- from the connection's opening, or the first byte of a request, until that
  request's headers are complete: ``header_timeout``;
- from then until its response is complete: ``request_timeout``;
- while idle between requests: uvicorn's keep-alive timeout;
- while a response waits for the client to read it (the socket's buffer is
  full): ``send_timeout`` plus the bytes buffered at ``min_send_rate``.

A deadline that passes aborts the connection. Past ``max_connections``
open connections, the oldest that has no request in progress (idle, or
still sending its headers) is closed to make room: a flood of idle or
unfinished connections cannot lock legitimate clients out. A request line and headers
over ``max_header_bytes`` get a JSON 431, an unparseable request a JSON 400,
as every other error of the API is JSON, and neither reaches uvicorn.

Everything here uses public interfaces only: asyncio's event loop and
protocols, httptools' parser, ASGI middleware, and ``uvicorn.Server.serve``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from types import FrameType
from typing import Any

import httptools
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("keras_mergan.serve")

Peer = tuple[str, int]


@dataclass(frozen=True)
class ServerLimits:
    """Connection-level limits of the server (seconds, connections, bytes).

    Example:

    >>> ServerLimits(header_timeout=2).request_timeout
    60.0
    """

    header_timeout: float = 10.0
    request_timeout: float = 60.0
    keep_alive: float = 5.0
    max_header_bytes: int = 64 * 2**10
    max_connections: int = 4096
    send_timeout: float = 10.0
    min_send_rate: int = 64 * 2**10  # bytes per second
    shutdown_timeout: float = 20.0


class _HeaderTooLarge(Exception):
    pass


class ConnectionGuard(asyncio.Protocol):
    """uvicorn's protocol for one connection, behind deadlines and a header cap.

    Every moment of a connection is under one deadline (see the module's
    docstring). The guard learns that a response is complete from
    :class:`ResponseTracker`, which finds it in ``guards`` by the client's
    address, as the ASGI scope names it.

    Example:

    >>> # ConnectionGuard(uvicorn_protocol, ServerLimits(), guards={})
    """

    def __init__(
        self, inner: asyncio.Protocol, limits: ServerLimits, guards: dict[Peer, Any]
    ) -> None:
        self.inner = inner
        self.limits = limits
        self.guards = guards
        self.parser = httptools.HttpRequestParser(self)
        # As uvicorn sets its own parser: a request that closes its connection
        # is answered even if bytes follow it. The two parsers must agree on
        # where each request ends.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._request_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._url_head = b""  # the first bytes of the request's path
        self._header_bytes = 0
        self._too_large = False
        # Requests whose headers are complete and whose response is not.
        self._waiting = 0

    def _arm(self, seconds: float) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._cancel_timers()
        # Forgotten here too: a connection handed to another protocol (an
        # upgrade) never reports its loss to the guard.
        self._forget()
        if self.transport is not None and not self.transport.is_closing():
            log.debug("closing a connection that passed its deadline")
            # abort, not close: close would wait for a client that does not
            # read to take the buffered response.
            self.transport.abort()

    def _forget(self) -> None:
        if self.peer is not None and self.guards.get(self.peer) is self:
            del self.guards[self.peer]

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._request_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._request_timer = self._write_timer = None

    def _make_room(self) -> bool:
        """Close the oldest connection with no request in progress; False if none."""
        for guard in list(self.guards.values()):  # oldest first
            if guard is not self and not guard._waiting:
                guard._expire()
                return True
        return False

    # --- asyncio.Protocol: the guard first, then uvicorn's protocol --------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        peer = transport.get_extra_info("peername")
        full = len(self.guards) >= self.limits.max_connections
        if isinstance(peer, tuple | list) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
            self.guards[self.peer] = self
        self._header_timer = self._arm(self.limits.header_timeout)
        self.inner.connection_made(transport)
        if full and not self._make_room():
            log.warning("closing a new connection: every connection is busy")
            self._expire()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self._forget()
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        # The client reads slower than we write: it has send_timeout plus
        # what is buffered at min_send_rate to take the buffer.
        assert self.transport is not None
        buffered = self.transport.get_write_buffer_size()
        allowance = self.limits.send_timeout + buffered / self.limits.min_send_rate
        if self._write_timer is not None:
            self._write_timer.cancel()
        self._write_timer = self._arm(allowance)
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
        self._write_timer = None
        self.inner.resume_writing()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # uvicorn's protocol decides what becomes of an upgrade
        except httptools.HttpParserError:
            self._refuse()
            return
        self.inner.data_received(data)
        assert self.transport is not None
        if not (self._waiting or self._header_timer or self.transport.is_closing()):
            # Bytes that begin no request (blank lines) stop uvicorn's
            # keep-alive timeout: they must not hold the connection for ever.
            self._header_timer = self._arm(self.limits.header_timeout)

    def response_complete(self) -> None:
        """Called by :class:`ResponseTracker` once a response has been sent."""
        if self._request_timer is not None:
            self._request_timer.cancel()
        self._request_timer = None
        self._waiting = max(self._waiting - 1, 0)
        if self._waiting and self.transport and not self.transport.is_closing():
            # A pipelined request starts now; its deadline with it.
            self._request_timer = self._arm(self.limits.request_timeout)

    def _refuse(self) -> None:
        """Unparseable requests get JSON like every other error, then a close."""
        assert self.transport is not None
        status = 431 if self._too_large else 400
        message = (
            f"request headers over {self.limits.max_header_bytes} bytes"
            if self._too_large
            else "malformed HTTP request"
        )
        log.debug("refusing a request: %s", message)
        # In the error form of the API the request was for.
        if self._url_head.startswith(b"/v2"):
            error: dict = {"error": message}
        else:
            error = {"error": {"status": status, "code": "http", "message": message}}
        body = json.dumps(error).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            f"date: {formatdate(usegmt=True)}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()

    # --- httptools callbacks -----------------------------------------------

    def on_message_begin(self) -> None:
        self._header_bytes = 0
        self._url_head = b""
        if self._header_timer is None:
            self._header_timer = self._arm(self.limits.header_timeout)

    def _count(self, nbytes: int) -> None:
        self._header_bytes += nbytes
        if self._header_bytes > self.limits.max_header_bytes:
            self._too_large = True
            raise _HeaderTooLarge  # httptools reports it as a parser error

    def on_url(self, url: bytes) -> None:
        if len(self._url_head) < 3:
            self._url_head += url[:3]
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = None
        self._waiting += 1
        if self._request_timer is None:
            self._request_timer = self._arm(self.limits.request_timeout)


class ResponseTracker:
    """ASGI middleware: tells a connection's guard when its response is complete.

    Example:

    >>> # app = ResponseTracker(app, guards)  # the guards of GuardedServer
    """

    def __init__(self, app: ASGIApp, guards: dict[Peer, ConnectionGuard]) -> None:
        self.app = app
        self.guards = guards

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client") if scope["type"] == "http" else None
        guard = self.guards.get((client[0], client[1])) if client else None
        if guard is None:
            await self.app(scope, receive, send)
            return

        async def tracked(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get(
                "more_body", False
            ):
                guard.response_complete()

        await self.app(scope, receive, tracked)


class GuardedEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop that puts a :class:`ConnectionGuard` on each connection."""

    def __init__(self, limits: ServerLimits, guards: dict[Peer, ConnectionGuard]):
        super().__init__()
        self.limits = limits
        self.guards = guards
        self.guarding = False  # whether a server was created through this loop

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        *args: Any,
        **kwargs: Any,
    ) -> asyncio.Server:
        def guarded() -> ConnectionGuard:
            return ConnectionGuard(protocol_factory(), self.limits, self.guards)

        self.guarding = True
        return await super().create_server(guarded, *args, **kwargs)


class GuardedServer(uvicorn.Server):
    """A uvicorn server whose connections are guarded (see the module docstring).

    uvicorn's ``loop`` setting takes only an import string, which cannot
    carry this server's limits; so :meth:`run` runs the public
    :meth:`uvicorn.Server.serve` on a :class:`GuardedEventLoop` of its own.

    Example:

    >>> # GuardedServer(app, ServerLimits(), access_log=False).run(sockets=[sock])
    """

    def __init__(
        self,
        app: ASGIApp,
        limits: ServerLimits,
        *,
        access_log: bool = False,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.limits = limits
        self.guards: dict[Peer, ConnectionGuard] = {}
        self.on_exit = on_exit
        super().__init__(
            uvicorn.Config(
                ResponseTracker(app, self.guards),
                http="httptools",  # the parser the guard reads requests with
                lifespan="on",
                timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]
                # In-flight requests get this long after SIGTERM; then they
                # are cancelled and the process exits.
                timeout_graceful_shutdown=limits.shutdown_timeout,  # type: ignore[arg-type]
                server_header=False,
                proxy_headers=False,
                # The app logs each request itself, with its request id.
                access_log=False,
                log_level="info" if access_log else "warning",
            )
        )

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """On SIGTERM or SIGINT: tell the app first (readiness turns false)."""
        if self.on_exit is not None:
            self.on_exit()
        super().handle_exit(sig, frame)

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        def loop() -> GuardedEventLoop:
            return GuardedEventLoop(self.limits, self.guards)

        with asyncio.Runner(loop_factory=loop) as runner:
            runner.run(self.serve(sockets=sockets))

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # Served on another loop (``await server.serve()``), or by a uvicorn
        # that listens without loop.create_server, no connection would be
        # guarded: refusing to serve is safer than serving so.
        loop = asyncio.get_running_loop()
        if not isinstance(loop, GuardedEventLoop):
            raise RuntimeError("start a GuardedServer with its run method")
        await super().startup(sockets=sockets)
        if self.started and not loop.guarding:
            await self.shutdown(sockets=sockets)
            raise RuntimeError("uvicorn listened without loop.create_server")
