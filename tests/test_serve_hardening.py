"""The server under hostile or broken conditions, all on loopback and bounded.

Malformed requests (a seeded fuzz of the request line, headers and bodies)
never get a 5xx; slow and unfinished connections are closed by the server
once their deadline passes; a task whose export cannot load is listed as
broken while the others keep serving; every command-line flag is checked.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from keras_mergan.serve import Sampler
from keras_mergan.serve.app import AppSettings, create_app
from keras_mergan.serve.server import ServerLimits, main, start_in_thread
from test_serve import cached_export, raw_request

pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]

# Short deadlines, so that the server closes slow connections within seconds.
LIMITS = ServerLimits(header_timeout=1.0, request_timeout=3.0, keep_alive=1.0)


@pytest.fixture(scope="module")
def export_dir(run_cache):
    return cached_export(run_cache)


@pytest.fixture(scope="module")
def server(export_dir):
    app = create_app(export_dir, AppSettings(max_grid=16, max_samples=16))
    with start_in_thread(app, limits=LIMITS) as running:
        yield running


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


# --- fuzz ---------------------------------------------------------------------

VALID = [
    b"GET /health HTTP/1.1\r\nHost: a\r\n",
    b"GET /api/tasks/2 HTTP/1.1\r\nHost: a\r\n",
    b"GET /api/grid.png?category=1&n=4&seed=3&scale=1 HTTP/1.1\r\nHost: a\r\n",
    b"GET /api/samples?category=0&n=2&format=json HTTP/1.1\r\nHost: a\r\n",
    b"GET /v2/models/generator/versions/1 HTTP/1.1\r\nHost: a\r\n",
]
INFER = json.dumps(
    {
        "inputs": [
            {"name": "z", "shape": [1, 128], "datatype": "FP32", "data": [0.5] * 128},
            {"name": "label", "shape": [1], "datatype": "INT32", "data": [0]},
        ]
    }
).encode()
ALPHABET = b"%&=?/.:; \t\x00\x7f\xff\xc3\xa9aZ09-_[]{}\"'<>\\" + bytes(range(1, 32))


def _mutate(rng: np.random.Generator, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        position = int(rng.integers(0, len(data) + 1))
        operation = rng.integers(0, 4)
        if operation == 0 and data:  # flip a byte
            data[min(position, len(data) - 1)] = ALPHABET[rng.integers(len(ALPHABET))]
        elif operation == 1:  # insert a run of odd bytes
            run = rng.choice(list(ALPHABET), int(rng.integers(1, 40)))
            data[position:position] = bytes(int(b) for b in run)
        elif operation == 2:  # delete a span
            del data[position : position + int(rng.integers(1, 20))]
        else:  # repeat a span
            span = data[position : position + int(rng.integers(1, 30))]
            data[position:position] = span * int(rng.integers(2, 50))
    return bytes(data)


def fuzz_cases(count: int, seed: int = 0) -> list[bytes]:
    """Mutated requests, each ending its headers and carrying a true length.

    A request whose headers never end would only wait for its deadline; the
    slow-connection tests cover that.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        if i % 3 == 2:  # a mutated inference body
            body = _mutate(rng, INFER)
            head = b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: a\r\n"
            head += b"Content-Length: %d\r\n" % len(body)
        else:
            head, body = _mutate(rng, VALID[i % len(VALID)]), b""
        cases.append(
            head.replace(b"\r\n\r\n", b"\r\n") + b"Connection: close\r\n\r\n" + body
        )
    return cases


def _exchange(server, payload: bytes) -> int | None:
    """The status of the response to ``payload``, None if the server just closed."""
    try:
        return raw_request(server.url, payload)[0]
    except (http.client.HTTPException, ConnectionError):
        return None


def test_fuzzed_requests_never_get_a_5xx(server):
    cases = fuzz_cases(300)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda case: _exchange(server, case), cases))
    server_errors = [
        (status, case[:120])
        for status, case in zip(statuses, cases, strict=True)
        if status and status >= 500
    ]
    assert not server_errors
    answered = [s for s in statuses if s is not None]
    # Most mutations are refused, a few still form valid requests.
    assert len(answered) > 0.9 * len(cases)
    assert any(400 <= s < 500 for s in answered) and 200 in answered
    assert get(server.url + "/health")[0] == 200


# --- slow and unfinished connections ------------------------------------------


def _closed_by_server(sock: socket.socket) -> bool:
    """Wait (bounded by the socket's timeout) for the server to close ``sock``."""
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize(
    "opening",
    [
        b"",  # connects, says nothing
        b"GET /health HTTP/1.1\r\nHost: a\r\n",  # headers never end
        b"GET /heal",  # request line never ends
        b"\r\n",  # blank lines only
        b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: a\r\n"
        b'Content-Length: 1000\r\n\r\n{"inputs":',  # body never ends
    ],
)
def test_unfinished_requests_are_closed(server, opening):
    host, port = address(server)
    # Many at once: each holds a connection, none may hold it for ever.
    sockets = [socket.create_connection((host, port), timeout=30) for _ in range(40)]
    try:
        for sock in sockets:
            sock.sendall(opening)
        with ThreadPoolExecutor(8) as pool:
            closed = list(pool.map(_closed_by_server, sockets))
    finally:
        for sock in sockets:
            sock.close()
    assert all(closed)
    assert get(server.url + "/health")[0] == 200


def test_a_trickled_request_does_not_extend_its_deadline(server):
    # Slowloris: one byte at a time keeps resetting an idle timer, but not
    # the header deadline. The server closes before the headers could end.
    request = b"GET /health HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"z" * 200 + b"\r\n\r\n"
    host, port = address(server)
    with socket.create_connection((host, port), timeout=30) as sock:
        sent = 0
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            time.sleep(0.05)
        assert sent < len(request)  # cut off before the request was complete


def test_idle_keep_alive_connections_are_closed(server):
    host, port = address(server)
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request("GET", "/health")
    assert connection.getresponse().read()
    assert _closed_by_server(connection.sock)
    connection.close()


# --- a broken task among good ones --------------------------------------------


@pytest.fixture(scope="module")
def broken_export(export_dir, tmp_path_factory):
    """task_01 good; task_02's ONNX unloadable (hash matches); task_03 bad JSON."""
    root = tmp_path_factory.mktemp("broken") / "export"
    shutil.copytree(export_dir, root)
    model = root / "task_02" / "model.onnx"
    model.write_bytes(b"not an onnx model" * 100)
    manifest = json.loads((root / "task_02" / "manifest.json").read_text())
    manifest["files"]["model.onnx"]["sha256"] = hashlib.sha256(
        model.read_bytes()
    ).hexdigest()
    (root / "task_02" / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(root / "task_01", root / "task_03")
    (root / "task_03" / "manifest.json").write_text("{")
    return root


def test_a_broken_task_is_listed_and_the_others_serve(broken_export):
    bodies = []

    def fetch(path, expected):
        status, body = get(running.url + path)
        bodies.append(body)
        assert status == expected, (path, body[:300])
        return json.loads(body) if body[:1] == b"{" else body

    with start_in_thread(create_app(broken_export)) as running:
        assert fetch("/health", 200) == {
            "status": "degraded",
            "tasks": [1, 2, 3],
            "latest": 3,
            "broken": [2, 3],
        }
        assert fetch("/api/tasks/1", 200)["task"] == 1
        tasks = fetch("/api/tasks", 200)["tasks"]
        assert tasks[0]["categories"] == [{"index": 0, "name": "0"}]
        assert "cannot be loaded by onnxruntime" in tasks[1]["error"]
        assert "task_03/manifest.json" in tasks[2]["error"]
        assert fetch("/api/grid.png?task=1&category=0&n=4", 200)[:4] == b"\x89PNG"
        error = fetch("/api/grid.png?task=2&category=0", 503)["error"]
        assert error["code"] == "export_integrity"
        assert fetch("/api/samples?category=0", 503)["error"]["status"] == 503
        # The protocol answers "not ready" with a 4xx, as Triton does.
        assert fetch("/v2/health/ready", 400)["ready"] is False
        assert fetch("/v2/models/generator/versions/2/ready", 400)["ready"] is False
        assert fetch("/v2/models/generator/versions/1/ready", 200)["ready"] is True
        assert fetch("/v2/models/generator/ready", 200)["ready"] is True
        assert fetch("/v2/models/generator", 200)["versions"] == ["1"]
        assert "not ready" in fetch("/v2/models/generator/versions/2", 400)["error"]
    # No response tells where the server keeps its files.
    for body in bodies:
        assert str(broken_export.parent).encode() not in body
        assert b"/tmp" not in body and str(broken_export).encode() not in body


def test_cli_list_shows_every_task(broken_export):
    result = subprocess.run(
        [sys.executable, "-m", "keras_mergan.serve.cli", str(broken_export), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1
    assert [line["task"] for line in lines] == [1, 2, 3]
    assert lines[0]["categories"] == ["0"] and "error" in lines[1]


# --- limits and headers -------------------------------------------------------


def test_memory_budget_bounds_every_format(export_dir):
    settings = AppSettings(max_samples=256, memory_budget=2**20)
    app = create_app(export_dir, settings)
    with start_in_thread(app) as running:
        url = running.url + "/api/samples?category=0&seed=1"
        # float32 JSON of 256 samples needs more than the whole budget.
        status, body = get(url + "&n=256&format=json&dtype=float32")
        assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
        # A streamed response within the budget, checked against the sampler.
        status, body = get(url + "&n=64&format=json&dtype=float32")
        assert status == 200
        data = np.asarray(json.loads(body)["data"], np.float32)
        expected = Sampler(export_dir).sample(0, 64, 1, raw=True)
        np.testing.assert_allclose(data, expected, atol=1e-6)
        # A client that leaves in the middle of a streamed response.
        host, port = address(running)
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.sendall(
                b"GET /api/samples?category=0&n=64&format=json&dtype=float32 "
                b"HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            sock.recv(1000)
        # Concurrent ones (one fits at a time) queue for the budget; none fails.
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(get, [url + "&n=32&format=json"] * 12))
        assert [status for status, _ in results] == [200] * 12
        assert len({body for _, body in results}) == 1
        budget = app.state.service.budget
        for _ in range(1000):  # the leaving client's lease returns asynchronously
            if budget.used == 0:
                break
            time.sleep(0.01)
        assert budget.used == 0


def test_allowed_hosts(export_dir):
    app = create_app(export_dir, AppSettings(allowed_hosts=("good.example",)))
    with start_in_thread(app) as running:
        assert get(running.url + "/health", {"Host": "good.example"})[0] == 200
        assert get(running.url + "/health", {"Host": "evil.example"})[0] == 400
        assert get(running.url + "/health")[0] == 400  # 127.0.0.1 is not listed


def test_no_server_header_and_no_store(server):
    with urllib.request.urlopen(server.url + "/api/tasks", timeout=60) as response:
        headers = {k.lower(): v for k, v in response.getheaders()}
    assert "server" not in headers
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"


# --- command line -------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--port", "99999"], "--port"),
        (["--port", "-1"], "--port"),
        (["--port", "http"], "--port"),
        (["--max-samples", "-5"], "--max-samples"),
        (["--max-samples", "0"], "--max-samples"),
        (["--max-grid", "100000"], "--max-grid"),
        (["--threads", "-3"], "--threads"),
        (["--max-batch", "0"], "--max-batch"),
        (["--batch-wait-ms", "nan"], "--batch-wait-ms"),
        (["--batch-wait-ms", "5000"], "--batch-wait-ms"),
        (["--memory-mb", "0"], "--memory-mb"),
        (["--max-body-kb", "-1"], "--max-body-kb"),
        (["--limit-concurrency", "0"], "--limit-concurrency"),
        (["--timeout-header", "inf"], "--timeout-header"),
        (["--timeout-request", "-2"], "--timeout-request"),
        (["--timeout-keep-alive", "0"], "--timeout-keep-alive"),
        (["--allowed-hosts", "a.example,,b.example"], "--allowed-hosts"),
        (["--allowed-hosts", "ex*ample.org"], "--allowed-hosts"),
        (["--model-name", "my model"], "--model-name"),
    ],
)
def test_bad_flags_get_a_one_line_error(export_dir, capsys, flags, flag):
    with pytest.raises(SystemExit) as exit_info:
        main([str(export_dir), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and "Traceback" not in err


def test_missing_export_dir_and_busy_port(tmp_path, export_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nothing")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main([str(export_dir), "--port", str(taken.getsockname()[1])]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot listen" in err
