"""The connection guard beneath uvicorn: deadlines per request, public API only.

A minimal ASGI app stands in for the exported generators, so these run in
seconds without an export; the hardening tests cover the real app.
"""

from __future__ import annotations

import ast
import asyncio
import socket
import time
from pathlib import Path

import keras_mergan.serve
import pytest
from keras_mergan.serve.connections import GuardedServer, ServerLimits
from keras_mergan.serve.server import RunningServer, bind

pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]

LIMITS = ServerLimits(header_timeout=1.0, request_timeout=2.0, keep_alive=1.0)


async def slow_app(scope, receive, send) -> None:
    """Answers every request after ``?seconds`` (default 0), lifespan included."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    seconds = float(scope["query_string"].decode().partition("=")[2] or 0)
    await asyncio.sleep(seconds)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def running():
    server = GuardedServer(slow_app, LIMITS)
    with RunningServer(server, bind("127.0.0.1", 0)).start() as running:
        yield running


def _connect(running) -> socket.socket:
    host, port = running.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def test_each_pipelined_request_gets_its_own_deadline(running):
    # Two requests sent at once take longer together than one deadline; the
    # second's deadline starts when the first's response is complete.
    request = b"GET /?seconds=1.2 HTTP/1.1\r\nHost: a\r\n\r\n"
    with _connect(running) as sock:
        sock.sendall(request * 2)
        received = b""
        while received.count(b"HTTP/1.1 200") < 2 or not received.endswith(b"ok"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    assert received.count(b"HTTP/1.1 200") == 2


def test_a_request_over_its_deadline_is_aborted(running):
    # Answered after 3 s, if the 2 s deadline did not abort it first.
    with _connect(running) as sock:
        sock.sendall(b"GET /?seconds=3 HTTP/1.1\r\nHost: a\r\n\r\n")
        try:
            assert sock.recv(4096) == b""
        except ConnectionResetError:
            pass


def test_closed_connections_leave_no_guard(running):
    for _ in range(5):
        with _connect(running) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            while sock.recv(4096):
                pass
    for _ in range(500):
        if not running.server.guards:
            break
        time.sleep(0.01)
    assert running.server.guards == {}


def test_serving_without_the_guard_is_refused():
    # `await server.serve()` on another loop would leave connections unguarded.
    server = GuardedServer(slow_app, LIMITS)
    with bind("127.0.0.1", 0) as sock, pytest.raises(RuntimeError, match="run"):
        asyncio.run(server.serve(sockets=[sock]))


def test_serve_uses_only_uvicorn_public_api():
    # uvicorn's public API is the `uvicorn` package's Config, Server and run.
    for path in Path(keras_mergan.serve.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("uvicorn"), path.name
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
                assert not any(n.startswith("uvicorn.") for n in names), path.name
            elif isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == (
                "uvicorn"
            ):
                assert node.attr in {"Config", "Server", "run"}, (path.name, node.attr)
