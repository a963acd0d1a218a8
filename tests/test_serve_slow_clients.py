"""Slow clients cannot lock out legitimate ones.

On loopback, for a bounded time: slowloris connections (request headers a
few bytes at a time), uploads whose body trickles, and clients that read a
large response a few bytes at a time; meanwhile legitimate inference and
sample requests must keep succeeding. Counts are small and deadlines short
so the whole module runs in well under a minute; nothing here asserts a
duration, only outcomes.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest
from keras_mergan.serve.admission import AdmissionLimits
from keras_mergan.serve.app import AppSettings, create_app
from keras_mergan.serve.connections import ServerLimits
from keras_mergan.serve.server import start_in_thread
from test_serve import cached_export

pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]

ATTACK_SECONDS = 6.0
LIMITS = ServerLimits(
    header_timeout=2.0,
    request_timeout=20.0,
    keep_alive=2.0,
    send_timeout=1.0,
    min_send_rate=256 * 2**10,
    shutdown_timeout=2.0,
)
ADMISSION = AdmissionLimits(body_timeout=1.0, min_body_rate=256 * 2**10)


@pytest.fixture(scope="module")
def export_dir(run_cache):
    return cached_export(run_cache)


def binary_infer(n: int = 1) -> tuple[bytes, dict]:
    z = np.zeros((n, 128), "<f4").tobytes()
    labels = np.zeros(n, "<i4").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "z",
                    "shape": [n, 128],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(z)},
                },
                {
                    "name": "label",
                    "shape": [n],
                    "datatype": "INT32",
                    "parameters": {"binary_data_size": len(labels)},
                },
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return head + z + labels, {"Inference-Header-Content-Length": str(len(head))}


def legitimate(url: str, stop: threading.Event, results: list[bool]) -> None:
    """Alternate inference and sample requests, each on a new connection."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body, headers = binary_infer()
    turn = 0
    while not stop.is_set():
        turn += 1
        connection = http.client.HTTPConnection(host, int(port), timeout=15)
        try:
            if turn % 2:
                connection.request(
                    "POST", "/v2/models/generator/infer", body=body, headers=headers
                )
            else:
                connection.request("GET", "/api/samples?category=0&n=4&seed=1")
            response = connection.getresponse()
            response.read()
            results.append(response.status == 200)
        except OSError:
            results.append(False)
        finally:
            connection.close()
        time.sleep(0.02)


async def _connect(host: str, port: int, rcvbuf: int | None = None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:  # a small window, so the server's writes back up
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return await asyncio.open_connection(sock=sock)


async def slowloris(host: str, port: int, until: float) -> None:
    """Request headers a few bytes at a time, reconnecting when cut off."""
    while time.monotonic() < until:
        writer = None
        try:
            _, writer = await _connect(host, port)
            writer.write(b"GET /api/tasks HTTP/1.1\r\nHost: x\r\n")
            while time.monotonic() < until:
                writer.write(b"X-a: b\r\n")
                await writer.drain()
                await asyncio.sleep(0.5)
        except OSError:
            await asyncio.sleep(0.1)
        finally:
            if writer is not None:
                writer.close()


async def slow_body(host: str, port: int, until: float) -> None:
    """An inference upload announcing 1 MiB and sending a byte now and then."""
    while time.monotonic() < until:
        writer = None
        try:
            _, writer = await _connect(host, port)
            writer.write(
                b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 1048576\r\n\r\n{"
            )
            while time.monotonic() < until:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.5)
        except OSError:
            await asyncio.sleep(0.1)
        finally:
            if writer is not None:
                writer.close()


async def slow_reader(host: str, port: int, until: float) -> None:
    """Asks for a large JSON response, then reads it 1 KiB at a time."""
    while time.monotonic() < until:
        writer = None
        try:
            reader, writer = await _connect(host, port, rcvbuf=4096)
            writer.write(
                b"GET /api/samples?category=0&n=256&format=json HTTP/1.1\r\n"
                b"Host: x\r\n\r\n"
            )
            await writer.drain()
            while time.monotonic() < until:
                if not await reader.read(1024):
                    break
                await asyncio.sleep(0.25)
        except OSError:
            pass
        finally:
            if writer is not None:
                writer.close()
        await asyncio.sleep(0.5)  # cut off: ask again a little later


async def attack(url: str, seconds: float, loris: int, bodies: int, readers: int):
    host, port = url.removeprefix("http://").rsplit(":", 1)
    until = time.monotonic() + seconds
    tasks = [slowloris(host, int(port), until) for _ in range(loris)]
    tasks += [slow_body(host, int(port), until) for _ in range(bodies)]
    tasks += [slow_reader(host, int(port), until) for _ in range(readers)]
    running = [asyncio.ensure_future(task) for task in tasks]
    # Each pattern stops at the deadline, even one blocked on a socket.
    _, late = await asyncio.wait(running, timeout=seconds + 0.5)
    for task in late:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def test_legitimate_requests_succeed_under_slow_clients(export_dir):
    settings = AppSettings(
        max_samples=512,
        memory_budget=32 * 2**20,
        max_body=2 * 2**20,
        admission=ADMISSION,
    )
    app = create_app(export_dir, settings)
    with start_in_thread(app, limits=LIMITS) as running:
        results: list[bool] = []
        stop = threading.Event()
        client = threading.Thread(target=legitimate, args=(running.url, stop, results))
        client.start()
        try:
            time.sleep(0.5)
            assert results and all(results)  # idle: everything succeeds
            asyncio.run(attack(running.url, ATTACK_SECONDS, 300, 8, 50))
        finally:
            stop.set()
            client.join(30)
        during = results[1:]
        print(f"legitimate requests: {sum(during)} of {len(during)} succeeded")
        assert len(during) >= 10, len(during)
        assert sum(during) / len(during) >= 0.95, (sum(during), len(during))
        # The slow clients were cut off: nothing is left holding memory.
        deadline = time.monotonic() + 10
        while app.state.service.budget.used and time.monotonic() < deadline:
            time.sleep(0.1)
        assert app.state.service.budget.used == 0


def test_a_slow_body_gets_408_and_holds_no_memory(export_dir):
    app = create_app(export_dir, AppSettings(admission=ADMISSION))
    with start_in_thread(app, limits=LIMITS) as running:
        host, port = running.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 100000\r\n\r\n{"
            )
            time.sleep(0.3)
            # Waiting for its body, the request holds none of the budget.
            assert app.state.service.budget.used == 0
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 408")
        assert b"connection: close" in data.lower()
        assert "KiB/s" in json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]


def test_idle_connections_make_room_for_new_ones(export_dir):
    limits = ServerLimits(header_timeout=30.0, max_connections=20)
    with start_in_thread(create_app(export_dir), limits=limits) as running:
        host, port = running.url.removeprefix("http://").rsplit(":", 1)
        idle = [socket.create_connection((host, int(port))) for _ in range(40)]
        try:
            for _ in range(5):
                connection = http.client.HTTPConnection(host, int(port), timeout=10)
                connection.request("GET", "/health")
                assert connection.getresponse().status == 200
                connection.close()
            assert len(running.server.guards) <= 20
        finally:
            for sock in idle:
                sock.close()


def test_per_client_cap(export_dir):
    admission = AdmissionLimits(max_per_client=2, body_timeout=30.0)
    app = create_app(export_dir, AppSettings(admission=admission))
    with start_in_thread(app, host="127.0.0.1") as running:
        port = int(running.url.rsplit(":", 1)[1])
        held = []
        try:
            for _ in range(2):  # two requests in flight from 127.0.0.2
                sock = socket.create_connection(
                    ("127.0.0.1", port), source_address=("127.0.0.2", 0)
                )
                sock.sendall(
                    b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 100\r\n\r\n{"
                )
                held.append(sock)
            time.sleep(0.3)
            third = socket.create_connection(
                ("127.0.0.1", port), source_address=("127.0.0.2", 0)
            )
            held.append(third)
            third.sendall(b"GET /api/tasks HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = third.recv(65536)
            assert (
                answer.startswith(b"HTTP/1.1 429") and b"retry-after" in answer.lower()
            )
            # Another client is served.
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/api/tasks")
            assert connection.getresponse().status == 200
            connection.close()
        finally:
            for sock in held:
                sock.close()
