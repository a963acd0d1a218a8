"""What inference clients and operators rely on beyond plain JSON inference.

Triton's binary tensor data extension (``tritonclient``'s default), JSON
floats in their shortest form, the statistics and model-configuration
extensions, Prometheus metrics, request ids, readiness and errors as the
protocol words them, and graceful shutdown. Spoken with a plain HTTP
client; tests/test_serve_tritonclient.py uses the real client.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from keras_mergan.export.triton import config_pbtxt
from keras_mergan.serve import Sampler
from keras_mergan.serve.app import AppSettings, create_app
from keras_mergan.serve.server import start_in_thread
from test_serve import cached_export
from test_serve_triton import model_config_class

pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]

INFER = "/v2/models/generator/versions/2/infer"
GOOD = json.dumps(
    {
        "inputs": [
            {"name": "z", "shape": [1, 128], "datatype": "FP32", "data": [0.0] * 128},
            {"name": "label", "shape": [1], "datatype": "INT32", "data": [0]},
        ]
    }
).encode()


@pytest.fixture(scope="module")
def export_dir(run_cache):
    return cached_export(run_cache)


@pytest.fixture(scope="module")
def server(export_dir):
    app = create_app(export_dir, AppSettings(max_samples=64, max_body=2**20))
    with start_in_thread(app) as running:
        yield running.url.removeprefix("http://")


def call(server: str, method: str, path: str, body: bytes | None = None, headers=None):
    """``(status, headers with lower-case names, body)`` on a new connection."""
    host, port = server.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def binary_request(
    z: np.ndarray, labels: np.ndarray, label_type: str = "INT32", **output_parameters
) -> tuple[bytes, dict]:
    """A request as tritonclient builds it by default: binary in, binary out."""
    label_dtype = {"INT32": "<i4", "INT64": "<i8"}[label_type]
    z_bytes = np.asarray(z, "<f4").tobytes()
    label_bytes = np.asarray(labels, label_dtype).tobytes()
    head = {
        "inputs": [
            {
                "name": "z",
                "shape": list(z.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(z_bytes)},
            },
            {
                "name": "label",
                "shape": [len(labels), 1],
                "datatype": label_type,
                "parameters": {"binary_data_size": len(label_bytes)},
            },
        ],
        "outputs": [
            {"name": "image", "parameters": output_parameters or {"binary_data": True}}
        ],
    }
    text = json.dumps(head).encode()
    headers = {
        "Inference-Header-Content-Length": str(len(text)),
        "Content-Type": "application/octet-stream",
    }
    return text + z_bytes + label_bytes, headers


def read_binary_response(headers: dict, body: bytes) -> tuple[dict, np.ndarray]:
    length = int(headers["inference-header-content-length"])
    head = json.loads(body[:length])
    output = head["outputs"][0]
    assert output["parameters"]["binary_data_size"] == len(body) - length
    images = np.frombuffer(body[length:], "<f4").reshape(output["shape"])
    return head, images


# --- binary tensor data ---------------------------------------------------------


def test_binary_inputs_and_outputs_match_the_sampler(server, export_dir):
    z = np.random.default_rng(3).standard_normal((3, 128)).astype(np.float32)
    labels = np.array([1, 0, 1])
    expected = Sampler(export_dir, 2).generate(z, labels)
    for label_type in ("INT32", "INT64"):
        body, headers = binary_request(z, labels, label_type)
        status, got, raw = call(server, "POST", INFER, body, headers)
        assert status == 200, raw[:300]
        assert got["content-type"] == "application/octet-stream"
        head, images = read_binary_response(got, raw)
        assert head["model_version"] == "2" and "data" not in head["outputs"][0]
        np.testing.assert_allclose(images, expected, atol=1e-6)


def test_binary_inputs_with_json_output(server, export_dir):
    z = np.random.default_rng(4).standard_normal((2, 128)).astype(np.float32)
    body, headers = binary_request(z, np.array([0, 1]), binary_data=False)
    status, got, raw = call(server, "POST", INFER, body, headers)
    assert status == 200 and got["content-type"] == "application/json", raw[:300]
    assert "inference-header-content-length" not in got
    output = json.loads(raw)["outputs"][0]
    images = np.asarray(output["data"], np.float32).reshape(output["shape"])
    # JSON floats read back to exactly the float32 values the binary form has.
    body, headers = binary_request(z, np.array([0, 1]))
    _, images_binary = read_binary_response(
        *call(server, "POST", INFER, body, headers)[1:]
    )
    np.testing.assert_array_equal(images, images_binary)


def test_request_level_binary_output(server):
    # tritonclient asks so when no output is named.
    z = np.zeros((1, 128), np.float32)
    request = {
        "parameters": {"binary_data_output": True},
        "inputs": [
            {"name": "z", "shape": [1, 128], "datatype": "FP32", "data": z[0].tolist()},
            {"name": "label", "shape": [1], "datatype": "INT32", "data": [0]},
        ],
    }
    status, got, raw = call(server, "POST", INFER, json.dumps(request).encode())
    assert status == 200 and "inference-header-content-length" in got
    head, images = read_binary_response(got, raw)
    assert images.shape == (1, 32, 32, 1) and np.isfinite(images).all()


def test_json_floats_are_shortest_round_trip(server):
    z = np.random.default_rng(5).standard_normal((1, 128)).astype(np.float32)
    request = {
        "inputs": [
            {"name": "z", "shape": [1, 128], "datatype": "FP32", "data": z[0].tolist()},
            {"name": "label", "shape": [1], "datatype": "INT32", "data": [1]},
        ]
    }
    status, _, raw = call(server, "POST", INFER, json.dumps(request).encode())
    assert status == 200
    text = raw.decode()
    values = re.search(r'"data": \[([^\]]*)\]', text).group(1).split(",")
    floats = np.asarray([float(v) for v in values], np.float32)
    for value, number in zip(values, floats.tolist(), strict=True):
        # No digit could be dropped: the shortest text of that float32.
        assert value == str(np.float32(number))
    assert max(len(v) for v in values) <= 15  # 17 significant digits before


@pytest.mark.parametrize(
    "body, header, message",
    [
        (b"\xff\xfe{}", None, "not UTF-8"),
        (b'{"inputs": []}', "x1", "byte count"),
        (b'{"inputs": []}', "\uff11\uff12", "byte count"),  # full-width digits
        (b'{"inputs": []}', "99", "longer than the body"),
        (GOOD + b"\x00\x00", str(len(GOOD)), "declare 0 bytes"),
    ],
)
def test_binary_framing_errors_are_clear(server, body, header, message):
    headers = {} if header is None else {"Inference-Header-Content-Length": header}
    if header is not None and not header.isascii():
        # http.client sends latin-1 only: send the UTF-8 bytes as a raw header.
        headers = {"Inference-Header-Content-Length": header.encode().decode("latin-1")}
    status, got, raw = call(server, "POST", INFER, body, headers)
    assert status == 400 and got["content-type"] == "application/json"
    error = json.loads(raw)["error"]
    assert message in error, error


def test_binary_size_must_match_the_shape(server):
    z = np.zeros((1, 128), np.float32)
    body, headers = binary_request(z, np.array([0]))
    head_length = int(headers["Inference-Header-Content-Length"])
    head = json.loads(body[:head_length])
    head["inputs"][0]["parameters"]["binary_data_size"] = 508
    head["inputs"][1]["parameters"]["binary_data_size"] = 8
    text = json.dumps(head).encode()
    headers["Inference-Header-Content-Length"] = str(len(text))
    status, _, raw = call(server, "POST", INFER, text + body[head_length:], headers)
    assert status == 400 and "needs 512 bytes" in json.loads(raw)["error"]


# --- defects --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/generator/versions/%EF%BC%91/ready",  # full-width "1"
        "/v2/models/generator/versions/%D9%A1",  # Arabic-Indic "1"
        "/api/samples?category=0&n=%EF%BC%92",
        "/api/samples?category=0&task=%EF%BC%91",
        "/api/grid.png?category=0&seed=%EF%BC%93",
    ],
)
def test_only_ascii_digits_are_numbers(server, path):
    status, got, raw = call(server, "GET", path)
    assert status == 400 and got["content-type"] == "application/json", raw[:200]


def test_trailing_slash_redirect_is_relative(server):
    for host in ("evil.example", "127.0.0.1"):
        status, got, _ = call(server, "GET", "/v2/health/live/", headers={"Host": host})
        assert status == 307 and got["location"] == "/v2/health/live"
    status, got, _ = call(server, "GET", "//evil.example/health/")
    assert status == 404 or not got.get("location", "/").startswith("//")
    status, got, _ = call(server, "GET", "/api/samples/?category=0&n=1")
    assert status == 307 and got["location"] == "/api/samples?category=0&n=1"


def test_errors_are_in_the_protocols_form(server):
    # A malformed request line on a /v2 path, refused before the app.
    host, port = server.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400")
    assert isinstance(json.loads(data.split(b"\r\n\r\n", 1)[1])["error"], str)
    # Every /v2 error body is {"error": "<message>"}.
    for method, path, body in [
        ("GET", "/v2/models/other/config", None),
        ("GET", "/v2/models/generator/versions/9/stats", None),
        ("DELETE", "/v2/models/generator", None),
        ("POST", INFER, b"[]"),
    ]:
        status, got, raw = call(server, method, path, body)
        assert 400 <= status < 500 and got["content-type"] == "application/json"
        assert list(json.loads(raw)) == ["error"], (path, raw)


def test_newest_ready_version_serves_unversioned_calls(export_dir, tmp_path):
    root = tmp_path / "export"
    shutil.copytree(export_dir, root)
    (root / "task_02" / "model.onnx").write_bytes(b"broken")  # fails its hash
    z = [0.0] * 128
    request = {
        "inputs": [
            {"name": "z", "shape": [1, 128], "datatype": "FP32", "data": z},
            {"name": "label", "shape": [1], "datatype": "INT32", "data": [0]},
        ]
    }
    body = json.dumps(request).encode()
    with start_in_thread(create_app(root)) as running:
        url = running.url.removeprefix("http://")
        status, _, raw = call(url, "POST", "/v2/models/generator/infer", body)
        assert status == 200 and json.loads(raw)["model_version"] == "1"
        assert call(url, "GET", "/v2/models/generator/ready")[0] == 200
        status, _, raw = call(url, "POST", INFER, body)
        assert status == 400 and "version 2" in json.loads(raw)["error"]
        assert call(url, "GET", "/v2/models/generator/versions/2/ready")[0] == 400
        # The REST API keeps 503 for it, which says when to retry.
        status, got, _ = call(url, "GET", "/api/samples?category=0&task=2")
        assert status == 503 and got["retry-after"] == "1"
        # The export folder vanishes: nothing is ok any more.
        shutil.move(root, tmp_path / "moved")
        status, got, raw = call(url, "GET", "/health")
        assert status == 503 and json.loads(raw)["status"] == "unavailable"
        assert got["retry-after"] and got["cache-control"] == "no-store"
        assert call(url, "GET", "/v2/health/ready")[0] == 400
        status, _, raw = call(url, "POST", "/v2/models/generator/infer", body)
        assert status == 400 and "ready" in json.loads(raw)["error"]


def test_overload_503_has_retry_after_and_json(export_dir):
    from keras_mergan.serve.admission import AdmissionLimits

    app = create_app(export_dir, AppSettings(admission=AdmissionLimits(max_requests=1)))
    with start_in_thread(app) as running:
        url = running.url.removeprefix("http://")
        host, port = url.rsplit(":", 1)
        # One request in flight, its body never finished: the limit is reached.
        hold = socket.create_connection((host, int(port)), timeout=10)
        hold.sendall(
            b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                status, got, raw = call(url, "GET", "/api/tasks")
                if status == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert status == 503 and got["content-type"] == "application/json"
            assert got["retry-after"] == "1"
            assert got["cache-control"] == "no-store"
            assert got["x-content-type-options"] == "nosniff"
            assert json.loads(raw)["error"]["code"] == "overloaded"
            # Probes are not refused for load.
            assert call(url, "GET", "/v2/health/ready")[0] == 200
        finally:
            hold.close()


def test_serve_of_a_file_says_it_is_a_file(export_dir, tmp_path):
    run_json = tmp_path / "run.json"
    run_json.write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "keras_mergan.serve", str(run_json), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "is a file" in result.stderr and "does not exist" not in result.stderr


# --- observability --------------------------------------------------------------


def test_model_config_matches_the_triton_export(server, export_dir):
    status, _, raw = call(server, "GET", "/v2/models/generator/config")
    assert status == 200
    config = model_config_class()  # Triton's ModelConfig message
    served = json_format.ParseDict(json.loads(raw), config())
    manifest = json.loads((export_dir / "task_02" / "manifest.json").read_text())
    exported = text_format.Parse(config_pbtxt("generator", manifest), config())
    assert served == exported


def test_statistics_count_inferences(export_dir):
    with start_in_thread(create_app(export_dir)) as running:
        url = running.url.removeprefix("http://")
        z = np.zeros((3, 128), np.float32)
        body, headers = binary_request(z, np.array([0, 1, 0]))
        for _ in range(2):
            assert call(url, "POST", INFER, body, headers)[0] == 200
        assert call(url, "POST", INFER, b"{}")[0] == 400
        status, _, raw = call(url, "GET", "/v2/models/generator/versions/2/stats")
        assert status == 200
        (stat,) = json.loads(raw)["model_stats"]
        assert stat["name"] == "generator" and stat["version"] == "2"
        assert stat["inference_count"] == 6
        assert 1 <= stat["execution_count"] <= 2
        inference = stat["inference_stats"]
        assert inference["success"]["count"] == 2 and inference["fail"]["count"] == 1
        assert inference["compute_infer"]["ns"] > 0
        assert {b["batch_size"] for b in stat["batch_stats"]} <= {3, 6}
        everything = json.loads(call(url, "GET", "/v2/models/generator/stats")[2])
        assert [s["version"] for s in everything["model_stats"]] == ["1", "2"]
        assert call(url, "GET", "/v2/models/stats")[0] == 200


def test_metrics_and_request_ids(export_dir, caplog):
    with start_in_thread(create_app(export_dir)) as running:
        url = running.url.removeprefix("http://")
        body, headers = binary_request(np.zeros((2, 128), np.float32), np.array([0, 1]))
        with caplog.at_level("INFO", logger="keras_mergan.serve.access"):
            status, got, _ = call(
                url, "POST", INFER, body, {**headers, "X-Request-ID": "client-42"}
            )
            assert status == 200 and got["x-request-id"] == "client-42"
            status, got, _ = call(
                url, "GET", "/nothing", headers={"X-Request-ID": "a b"}
            )
            generated = got["x-request-id"]
            assert status == 404 and re.fullmatch(r"[0-9a-f]{32}", generated)
        assert any("request_id=client-42" in r.getMessage() for r in caplog.records)
        assert any(generated in r.getMessage() for r in caplog.records)
        status, got, raw = call(url, "GET", "/metrics")
        assert status == 200 and got["content-type"].startswith("text/plain")
        text = raw.decode()
        route = "/v2/models/{name}/versions/{version}/infer"
        assert (
            f'keras_mergan_http_requests_total{{method="POST",route="{route}",'
            'status="200"} 1.0'
        ) in text
        assert 'route="unmatched",status="404"' in text
        assert "keras_mergan_batch_rows_count 1.0" in text
        assert 'keras_mergan_inference_seconds_count{version="2"} 1.0' in text
        assert "keras_mergan_queued_requests 0.0" in text


# --- graceful shutdown ----------------------------------------------------------


def test_sigterm_drains_then_exits(export_dir, tmp_path):
    """Readiness false at once; a request in flight finishes; then the exit."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keras_mergan.serve",
            str(export_dir),
            "--port",
            "0",
            "--shutdown-timeout",
            "8",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"http://([^/]+)/", line).group(1)
        host, port = url.rsplit(":", 1)
        # A request in flight: headers sent, body not yet.
        z = json.dumps(
            {
                "inputs": [
                    {
                        "name": "z",
                        "shape": [1, 128],
                        "datatype": "FP32",
                        "data": [0.0] * 128,
                    },
                    {"name": "label", "shape": [1], "datatype": "INT32", "data": [0]},
                ]
            }
        ).encode()
        slow = socket.create_connection((host, int(port)), timeout=30)
        slow.sendall(
            b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {len(z)}\r\n\r\n".encode()
            + z[:10]
        )
        time.sleep(0.3)  # the request's headers reach the app
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # New connections are refused at once (the listener is closed).
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=5)
        slow.sendall(z[10:])  # the request in flight still gets its answer
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = slow.recv(65536)
            if not chunk:
                break
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_readiness_turns_false_when_draining(export_dir):
    with start_in_thread(create_app(export_dir)) as running:
        url = running.url.removeprefix("http://")
        assert call(url, "GET", "/v2/health/ready")[0] == 200
        running.server.on_exit()  # what SIGTERM's handler calls first
        assert call(url, "GET", "/v2/health/ready")[0] == 400
        assert call(url, "GET", "/v2/models/generator/ready")[0] == 400
        status, got, raw = call(url, "GET", "/health")
        assert status == 503 and json.loads(raw)["status"] == "draining"
        # Requests are still answered while draining.
        assert call(url, "POST", INFER, GOOD)[0] == 200


def test_shutdown_timeout_bounds_a_stalled_request(export_dir):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keras_mergan.serve",
            str(export_dir),
            "--port",
            "0",
            "--shutdown-timeout",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = re.search(r"http://([^/]+)/", process.stdout.readline()).group(1)
        host, port = url.rsplit(":", 1)
        stalled = socket.create_connection((host, int(port)), timeout=30)
        stalled.sendall(
            b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        # Its body allowance (10 s + size) and request deadline (60 s) are
        # longer: only the shutdown timeout ends it.
        process.wait(timeout=20)
        stalled.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
