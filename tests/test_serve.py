"""Serving exported generators: Sampler API, CLI, HTTP server, gallery page.

The export is built from a run trained under the current KERAS_BACKEND (in a
subprocess, cached); everything under test here uses onnxruntime only. The
other serving tests (test_serve_*.py) share this export through
:func:`cached_export`.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from keras_mergan.export import MANIFEST, export_run
from keras_mergan.serve import (
    CategoryNotLearnedError,
    ExportDirectory,
    ExportIntegrityError,
    InvalidParameterError,
    Sampler,
    UnknownCategoryError,
    UnknownTaskError,
    make_grid,
)
from keras_mergan.serve.app import AppSettings, create_app
from keras_mergan.serve.server import start_in_thread
from PIL import Image
from synthetic_run import cached_run

from keras_mergan.image_grid import SEPARATOR

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
CHROMIUM = "/usr/bin/chromium"
# Serving is onnxruntime alone: the Keras backend of the test process is unused.
pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]


def cached_export(run_cache: Path) -> Path:
    """The export of the cached synthetic run, made once and shared by modules.

    Tests must not change it: those that break an export work on a copy.
    """
    run_dir = cached_run(run_cache, BACKEND)
    out = run_cache / f"{run_dir.name}-export"
    if not (out / "task_02" / MANIFEST).is_file():
        export_run(run_dir, out)
    return out


@pytest.fixture(scope="module")
def run_dir(run_cache) -> Path:
    return cached_run(run_cache, BACKEND)


@pytest.fixture(scope="module")
def export_dir(run_cache) -> Path:
    return cached_export(run_cache)


@pytest.fixture(scope="module")
def server(export_dir):
    app = create_app(export_dir, AppSettings(max_grid=64, max_samples=128))
    with start_in_thread(app) as running:
        yield running.url


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


# --- Sampler ------------------------------------------------------------------


def test_sampler_defaults_to_latest_task(export_dir):
    sampler = Sampler(export_dir)
    assert sampler.task == 2
    assert sampler.categories == [(0, "0"), (1, "class_1")]
    assert Sampler(export_dir, task=1).categories == [(0, "0")]
    assert Sampler(export_dir / "task_01").task == 1


def test_sample_by_name_or_index(export_dir):
    sampler = Sampler(export_dir)
    by_name = sampler.sample("class_1", 5, seed=3)
    assert by_name.shape == (5, 32, 32, 1) and by_name.dtype == np.uint8
    np.testing.assert_array_equal(sampler.sample(1, 5, seed=3), by_name)
    np.testing.assert_array_equal(sampler.sample("1", 5, seed=3), by_name)
    assert not np.array_equal(sampler.sample(0, 5, seed=3), by_name)
    assert not np.array_equal(sampler.sample(1, 5, seed=4), by_name)
    assert len(np.unique(by_name)) > 20  # real images, not a constant


def test_sample_is_deterministic_and_prefix_stable(export_dir):
    sampler = Sampler(export_dir, threads=2)
    many = sampler.sample("0", 100, seed=7)
    np.testing.assert_array_equal(
        Sampler(export_dir, threads=1).sample("0", 100, seed=7), many
    )
    # Batch independence: the first k of n samples are sample(k).
    np.testing.assert_array_equal(sampler.sample("0", 3, seed=7), many[:3])


def test_sampler_matches_keras_reference(export_dir, run_dir):
    sampler = Sampler(export_dir, task=2, threads=2)
    reference = np.load(run_dir / "task_02" / "reference.npz")
    images = sampler.generate(reference["z"], reference["labels"])
    assert np.abs(images - reference["batch"]).max() <= 1e-4
    raw = sampler.sample(1, 4, seed=0, raw=True)
    assert raw.dtype == np.float32 and raw.min() >= -1 and raw.max() <= 1


def test_sampler_bad_input(export_dir):
    sampler = Sampler(export_dir, task=1)
    with pytest.raises(CategoryNotLearnedError, match="not learned at task 1"):
        sampler.sample("class_1", 4)
    with pytest.raises(UnknownCategoryError, match="unknown category"):
        sampler.sample("zebra", 4)
    with pytest.raises(UnknownCategoryError):
        sampler.sample(10, 4)
    for bad_n in (0, -1, 10**9, 2.5, "4", True):
        with pytest.raises(InvalidParameterError):
            sampler.sample("0", bad_n)
    with pytest.raises(InvalidParameterError):
        sampler.sample("0", 4, seed=-1)
    with pytest.raises(InvalidParameterError):
        sampler.sample(None, 4)
    with pytest.raises(UnknownTaskError, match="exported tasks: 1, 2"):
        Sampler(export_dir, task=5)
    for bad_task in ("../task_01", "task_01", "1; rm", "-1", "", True):
        with pytest.raises(InvalidParameterError):
            Sampler(export_dir, task=bad_task)


def test_corrupted_export_is_refused(export_dir, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    model = copy / "task_02" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-100] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ExportIntegrityError, match="sha256"):
        Sampler(copy, task=2)
    assert Sampler(copy, task=1).task == 1


def test_export_directory_picks_up_replaced_exports(export_dir, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(export_dir / "task_01", copy / "task_01")
    exports = ExportDirectory(copy)
    assert exports.tasks() == [1] and exports.latest() == 1
    first = exports.sampler(1)
    assert exports.sampler(1) is first  # cached
    shutil.copytree(export_dir / "task_02", copy / "task_02")
    assert exports.latest() == 2
    # A republished task (a new directory swapped in) gets a fresh sampler.
    shutil.copytree(export_dir / "task_01", copy / ".new")
    shutil.rmtree(copy / "task_01")
    os.rename(copy / ".new", copy / "task_01")
    assert exports.sampler(1) is not first


def test_make_grid_layout():
    images = np.stack([np.full((4, 4, 1), i * 40, np.uint8) for i in range(5)])
    grid = make_grid(images, columns=3, padding=1, scale=2)
    assert grid.shape == (2 * 8 + 3, 3 * 8 + 4, 1)
    assert grid[1, 1, 0] == 0 and grid[1, 1 + 9, 0] == 40 and grid[10, 1, 0] == 120
    # black cells stay apart: the lines between them are gray
    assert grid[0, 0, 0] == grid[1, 9, 0] == SEPARATOR
    assert grid[-1, -1, 0] == SEPARATOR  # the missing sixth cell


# --- isolation from ML frameworks ---------------------------------------------


def test_serving_imports_no_ml_framework(export_dir, tmp_path):
    script = textwrap.dedent(
        f"""
        import json, sys, urllib.request
        from keras_mergan.serve import Sampler
        from keras_mergan.serve.app import AppSettings, create_app
        from keras_mergan.serve.cli import main as cli_main
        from keras_mergan.serve.server import start_in_thread
        Sampler({str(export_dir)!r}).sample("0", 4, seed=0)
        assert cli_main([{str(export_dir)!r}, "--category", "0", "--out",
                         {str(tmp_path / "g.png")!r}]) == 0
        with start_in_thread(create_app({str(export_dir)!r})) as server:
            for path in ("/", "/docs", "/openapi.json", "/health", "/api/tasks",
                         "/api/grid.png?category=0&n=4",
                         "/api/samples?category=0&n=2", "/v2/models/generator"):
                urllib.request.urlopen(server.url + path).read()
            z = [0.0] * 128
            body = json.dumps({{"inputs": [
                {{"name": "z", "shape": [1, 128], "datatype": "FP32", "data": z}},
                {{"name": "label", "shape": [1], "datatype": "INT32", "data": [0]}},
            ]}}).encode()
            urllib.request.urlopen(
                server.url + "/v2/models/generator/infer", body).read()
        # HTTP alone needs no gRPC.
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "grpc")
        settings = AppSettings(grpc_address="127.0.0.1:0")
        with start_in_thread(create_app({str(export_dir)!r}, settings)):
            pass
        banned = ("keras", "tensorflow", "jax", "torch", "tf2onnx")
        loaded += sorted(m for m in sys.modules if m.split(".")[0] in banned)
        # keras_mergan itself is only the namespace: no training code. The
        # run-folder, image-grid, logs and usage modules are allowed: they
        # give the task folders' names, the manifest hashes, the grid layout,
        # the messages' handler and the one-line usage errors, and import no
        # ML framework.
        allowed = (
            "keras_mergan.serve",
            "keras_mergan.run_folder",
            "keras_mergan.image_grid",
            "keras_mergan.logs",
            "keras_mergan.usage",
        )
        loaded += sorted(
            m for m in sys.modules
            if m.startswith("keras_mergan.") and not m.startswith(allowed)
        )
        print("LOADED", loaded)
        sys.exit(1 if loaded else 0)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


# --- CLI ----------------------------------------------------------------------


def test_cli_writes_png_grid(export_dir, tmp_path):
    out = tmp_path / "grid.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_mergan.serve.cli",
            str(export_dir),
            "--task",
            "2",
            "--category",
            "class_1",
            "--n",
            "6",
            "--seed",
            "1",
            "--columns",
            "3",
            "--scale",
            "2",
            "--out",
            str(out),
            "--npy",
            str(tmp_path / "s.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    image = np.asarray(Image.open(out))
    assert image.shape == (2 * 64 + 3 * 2, 3 * 64 + 4 * 2)
    samples = np.load(tmp_path / "s.npy")
    np.testing.assert_array_equal(
        samples, Sampler(export_dir, 2).sample("class_1", 6, 1)
    )
    listing = subprocess.run(
        [sys.executable, "-m", "keras_mergan.serve.cli", str(export_dir), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in listing.stdout.splitlines()]
    assert lines == [
        {"task": 1, "categories": ["0"]},
        {"task": 2, "categories": ["0", "class_1"]},
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "1", "--category", "class_1"], "not learned at task 1"),
        (["--category", "zebra"], "unknown category"),
        (["--task", "9", "--category", "0"], "no export for task 9"),
        (["--task", "../../etc", "--category", "0"], "task must be"),
        (["--category", "0", "--n", "0"], "n must be"),
    ],
)
def test_cli_bad_input(export_dir, tmp_path, args, message):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_mergan.serve.cli",
            str(export_dir),
            *args,
            "--out",
            str(tmp_path / "g.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "g.png").exists()


def test_sample_takes_a_run_folder_writes_the_suffixs_format_and_checks_out(
    run_dir, export_dir, tmp_path, capsys
):
    from keras_mergan import cli

    run = shutil.copytree(run_dir, tmp_path / "run")
    sample = ["sample", str(run), "--category", "0", "--n", "4"]
    assert cli.main([*sample, "--out", str(tmp_path / "y.png")]) == 1
    assert capsys.readouterr().err == (
        f"keras-mergan sample: error: {run} is a run with no export yet: "
        f"keras-mergan export {run}\n"
    )
    shutil.copytree(export_dir, run / "export")
    # The run folder stands for its export/; --out's suffix names the format.
    assert cli.main([*sample, "--out", str(tmp_path / "y.jpg")]) == 0
    with Image.open(tmp_path / "y.jpg") as image:
        assert image.format == "JPEG"
    refused = {
        "nodir/y.png": f"the folder {tmp_path / 'nodir'} does not exist",
        "y.xyz": "no image format is named by .xyz: end it with .png, .jpg, .webp, ...",
        ".": "a folder, not a file",
    }
    for out, problem in refused.items():
        capsys.readouterr()
        path = tmp_path / out
        assert cli.main([*sample, "--out", str(path)]) == 2
        assert capsys.readouterr().err == (
            f"keras-mergan sample: error: --out {path}: {problem}\n"
        )
    assert not (tmp_path / "nodir").exists() and not (tmp_path / "y.xyz").exists()


# --- HTTP ---------------------------------------------------------------------


def test_health_and_tasks(server):
    status, kind, body = _get(server + "/health")
    assert status == 200 and kind == "application/json"
    assert json.loads(body) == {
        "status": "ok",
        "tasks": [1, 2],
        "latest": 2,
        "broken": [],
    }
    tasks = json.loads(_get(server + "/api/tasks")[2])
    assert tasks["latest"] == 2
    assert [t["task"] for t in tasks["tasks"]] == [1, 2]
    assert tasks["tasks"][1]["new_categories"] == [{"index": 1, "name": "class_1"}]
    manifest = json.loads(_get(server + "/api/tasks/1")[2])
    assert manifest["task"] == 1 and "files" in manifest


def test_grid_png_endpoint(server, export_dir):
    status, kind, body = _get(
        server + "/api/grid.png?task=2&category=class_1&n=4&seed=5&scale=1"
    )
    assert status == 200 and kind == "image/png"
    grid = np.asarray(Image.open(io.BytesIO(body)))
    images = Sampler(export_dir, 2).sample("class_1", 4, 5)
    expected = make_grid(images, row_labels="class_1")[..., 0]
    np.testing.assert_array_equal(grid, expected)
    # the rows are named on the left, the cells on the right as they are
    plain = make_grid(images)[..., 0]
    assert grid.shape[1] > plain.shape[1]
    np.testing.assert_array_equal(grid[:, -plain.shape[1] :], plain)


def test_samples_endpoint_npy_and_json(server, export_dir):
    expected = Sampler(export_dir, 1).sample(0, 3, 9)
    status, kind, body = _get(server + "/api/samples?task=1&category=0&n=3&seed=9")
    assert status == 200 and kind == "application/octet-stream"
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), expected)
    status, kind, body = _get(
        server + "/api/samples?task=1&category=0&n=3&seed=9&format=json"
    )
    data = json.loads(body)
    assert data["shape"] == [3, 32, 32, 1] and data["task"] == 1
    np.testing.assert_array_equal(np.asarray(data["data"], np.uint8), expected)
    status, _, body = _get(server + "/api/samples?category=0&n=2&dtype=float32")
    floats = np.load(io.BytesIO(body))
    assert floats.dtype == np.float32 and floats.shape == (2, 32, 32, 1)


BAD_REQUESTS = [
    ("/api/grid.png?category=zebra", 404, "unknown_category"),
    ("/api/grid.png?category=class_1&task=1", 404, "category_not_learned"),
    ("/api/grid.png?category=9&task=1", 404, "category_not_learned"),
    ("/api/grid.png?category=10", 404, "unknown_category"),
    ("/api/grid.png?category=-1", 404, "unknown_category"),
    ("/api/grid.png?category=0&task=3", 404, "unknown_task"),
    ("/api/grid.png?category=0&task=0", 404, "unknown_task"),
    ("/api/grid.png?category=0&task=-2", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&task=..%2F..%2Fetc%2Fpasswd", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&task=task_01", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&task=%2Ftmp", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&task=1e3", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&n=0", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&n=-5", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&n=65", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&n=99999999999999999999999", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&n=abc", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&n=2.5", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&n=", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&seed=-1", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&seed=x", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&scale=100", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&columns=-1", 400, "invalid_parameter"),
    ("/api/grid.png", 400, "invalid_parameter"),
    ("/api/grid.png?category=", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&category=1", 400, "invalid_parameter"),
    ("/api/grid.png?category=0&bogus=1", 400, "invalid_parameter"),
    ("/api/grid.png?category=%00%ff", 404, "unknown_category"),
    ("/api/grid.png?%%%", 400, "invalid_parameter"),
    ("/api/samples?category=0&n=129", 400, "invalid_parameter"),
    ("/api/samples?category=0&format=pickle", 400, "invalid_parameter"),
    ("/api/samples?category=0&dtype=float64", 400, "invalid_parameter"),
    ("/api/tasks/9", 404, "unknown_task"),
    ("/api/tasks/..", 400, "invalid_parameter"),
    ("/api/tasks/..%2F..%2Fetc", 400, "invalid_parameter"),
    ("/api/tasks/abc", 400, "invalid_parameter"),
    ("/../../etc/passwd", 404, "not_found"),
    ("/api/grid.png/../../manifest.json", 404, "not_found"),
    ("/task_01/model.onnx", 404, "not_found"),
    ("/favicon.ico", 404, "not_found"),
]


def test_bad_requests_get_clear_4xx_json(server):
    # Bounded: every bad request 5 times, 8 at a time, loopback only.
    def check(case):
        path, status, code = case
        got, kind, body = _get(server + path)
        assert (got, kind) == (status, "application/json"), (path, got, body[:200])
        error = json.loads(body)["error"]
        assert error["code"] == code and error["status"] == status and error["message"]
        return path

    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(check, BAD_REQUESTS * 5))
    assert len(done) == 5 * len(BAD_REQUESTS)
    assert json.loads(_get(server + "/health")[2])["status"] == "ok"


def raw_request(server: str, payload: bytes) -> tuple[int, dict, bytes]:
    """Send ``payload`` as is; the first response's status, headers and body."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(payload)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


@pytest.mark.parametrize(
    "payload",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\n" + b"X-Pad: " + b"b" * 70000 + b"\r\n\r\n",
        b"POST /api/grid.png?category=0 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        b"DELETE /api/tasks/1 HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /api/grid.png?category=\xff\xfe HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"BREW /pot HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /health HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
)
def test_malformed_http_gets_4xx(server, payload):
    status, headers, body = raw_request(server, payload)
    assert 400 <= status < 500, (status, body[:300])
    assert json.loads(body)["error"]["status"] == status
    assert "server" not in {name.lower() for name in headers}
    assert _get(server + "/health")[0] == 200


def test_http_09_request_line_gets_a_status_line(server):
    # The stdlib server answered a bare "GET /path" with raw HTML and no
    # status line; httptools parses it and the answer is ordinary HTTP.
    status, headers, body = raw_request(server, b"GET /health\r\n\r\n")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_get_body_is_not_a_second_request(server):
    # The body of a GET is read as its body, not parsed as a pipelined request.
    body = b"GET /api/tasks HTTP/1.1\r\n\r\n"
    payload = (
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 ") == 1 and b'"broken"' in received


def test_concurrent_requests(server):
    urls = [f"{server}/api/grid.png?category={i % 2}&n=16&seed={i}" for i in range(24)]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(_get, urls))
    assert all(status == 200 for status, _, _ in results)
    assert len({body for _, _, body in results}) == len(urls)


def test_server_command_line(export_dir):
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_mergan.serve", str(export_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line + process.stderr.read()
        status, _, body = _get(f"http://127.0.0.1:{match.group(1)}/health")
        assert status == 200 and json.loads(body)["latest"] == 2
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- gallery ------------------------------------------------------------------


def _chromium(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1000,900",
            "--virtual-time-budget=10000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} missing: `apt-get install -y chromium` to test the gallery",
)
def test_gallery_shows_generated_images(server, tmp_path):
    url = server + "/#task=2&category=1"
    dom = _chromium(url, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # The status line is set by the grid image's onload handler.
    assert "Task 2, category class_1 (1), 16 samples, seed 0" in dom.stdout
    assert dom.stdout.count("<figure") == 2  # one overview per learned category
    shot = tmp_path / "gallery.png"
    result = _chromium(url, tmp_path, f"--screenshot={shot}")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
    # The 16-sample grid (scale 3) sits below the controls on the left.
    region = pixels[200:500, 40:380]
    assert region.std() > 20 and len(np.unique(region)) > 50
    blank = pixels[200:500, 700:980]  # right of the grid: page background only
    assert blank.std() < 1


def test_keras_mergan_serve_is_the_server_command(tmp_path, capsys):
    from keras_mergan import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", str(tmp_path / "absent"), "--port", "0"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("keras-mergan serve: error:") and "does not exist" in error
