"""Triton's own clients against the built-in server: HTTP (binary and JSON), gRPC.

``tritonclient`` pins ``ml_dtypes`` below what TensorFlow needs, so it runs
in a virtualenv of its own, made here once and kept in pytest's cache. If
that virtualenv cannot be made (no network, no index), the test is skipped
and says why.
"""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest
from keras_mergan.serve import Sampler
from keras_mergan.serve.app import AppSettings, create_app
from keras_mergan.serve.server import start_in_thread
from test_serve import cached_export

pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]

REQUIREMENTS = ["tritonclient[http,grpc]>=2.40", "numpy"]

# Runs inside the client's virtualenv: argv[1] the server, argv[2] an .npz.
CLIENT = r"""
import json, sys
import numpy as np
import tritonclient.http as httpclient

client = httpclient.InferenceServerClient(sys.argv[1])
z = np.random.default_rng(0).standard_normal((3, 128)).astype(np.float32)
labels = np.array([[1], [0], [1]], np.int32)


def inputs(binary, labels=labels):
    tensors = [
        httpclient.InferInput("z", list(z.shape), "FP32"),
        httpclient.InferInput("label", list(labels.shape), "INT32"),
    ]
    tensors[0].set_data_from_numpy(z, binary_data=binary)
    tensors[1].set_data_from_numpy(labels, binary_data=binary)
    return tensors


# The default call: binary inputs, no output named (so binary outputs).
default = client.infer("generator", inputs(True)).as_numpy("image")
as_json = client.infer(
    "generator",
    inputs(False),
    outputs=[httpclient.InferRequestedOutput("image", binary_data=False)],
    model_version="2",
).as_numpy("image")
# Version 1 has learned class 0 only.
binary_out = client.infer(
    "generator",
    inputs(False, np.zeros_like(labels)),
    outputs=[httpclient.InferRequestedOutput("image", binary_data=True)],
    model_version="1",
).as_numpy("image")
np.savez(sys.argv[2], z=z, labels=labels, default=default, json=as_json,
         binary_out=binary_out)
statistics = client.get_inference_statistics("generator", "2")
print(json.dumps({
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready("generator", "2"),
    "extensions": client.get_server_metadata()["extensions"],
    "config": client.get_model_config("generator"),
    "inferences": statistics["model_stats"][0]["inference_count"],
}))
"""


GRPC_CLIENT = r"""
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient

client = grpcclient.InferenceServerClient(sys.argv[1])
z = np.random.default_rng(1).standard_normal((2, 128)).astype(np.float32)
labels = np.array([[1], [0]], np.int32)
tensors = [
    grpcclient.InferInput("z", list(z.shape), "FP32"),
    grpcclient.InferInput("label", list(labels.shape), "INT32"),
]
tensors[0].set_data_from_numpy(z)
tensors[1].set_data_from_numpy(labels)
result = client.infer("generator", tensors)
np.savez(sys.argv[2], z=z, labels=labels, image=result.as_numpy("image"))
try:
    client.get_model_metadata("other")
    unknown = "answered"
except Exception as error:
    unknown = str(error)
print(json.dumps({
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready("generator", "1"),
    "extensions": list(client.get_server_metadata().extensions),
    "versions": list(client.get_model_metadata("generator").versions),
    "version": result.get_response().model_version,
    "unknown": unknown,
}))
"""


@pytest.fixture(scope="module")
def client_python(request, tmp_path_factory) -> Path:
    """The Python of a virtualenv with tritonclient, made once per cache."""
    cache = getattr(request.config, "cache", None)
    root = (
        Path(cache.mkdir("keras_mergan_tritonclient"))
        if cache is not None
        else tmp_path_factory.mktemp("tritonclient")
    )
    python = root / "venv" / "bin" / "python"
    done = root / "venv" / "installed.json"
    if done.is_file() and json.loads(done.read_text()) == REQUIREMENTS:
        return python
    try:
        venv.create(root / "venv", with_pip=True, clear=True)
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"cannot make a virtualenv for tritonclient: {error}")
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"cannot install tritonclient (no network?): {last[:200]}")
    done.write_text(json.dumps(REQUIREMENTS))
    return python


def test_tritonclient_binary_and_json(run_cache, client_python, tmp_path):
    export_dir = cached_export(run_cache)
    with start_in_thread(create_app(export_dir)) as running:
        result = subprocess.run(
            [
                str(client_python),
                "-c",
                CLIENT,
                running.url.removeprefix("http://"),
                str(tmp_path / "out.npz"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["live"] and report["ready"] and report["model_ready"]
    assert "binary_tensor_data" in report["extensions"]
    assert report["config"]["name"] == "generator"
    assert report["inferences"] == 6  # the two calls on version 2
    out = np.load(tmp_path / "out.npz")
    z, labels = out["z"], out["labels"].reshape(-1)
    latest = Sampler(export_dir, 2).generate(z, labels)
    np.testing.assert_allclose(out["default"], latest, atol=1e-6)
    # JSON floats are the same float32 values as the binary ones.
    np.testing.assert_array_equal(out["json"], out["default"])
    first = Sampler(export_dir, 1).generate(z, np.zeros_like(labels))
    np.testing.assert_allclose(out["binary_out"], first, atol=1e-6)


def test_tritonclient_grpc(run_cache, client_python, tmp_path):
    export_dir = cached_export(run_cache)
    app = create_app(export_dir, AppSettings(grpc_address="127.0.0.1:0"))
    with start_in_thread(app):
        result = subprocess.run(
            [
                str(client_python),
                "-c",
                GRPC_CLIENT,
                f"127.0.0.1:{app.state.grpc_port}",
                str(tmp_path / "out.npz"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["live"] and report["ready"] and report["model_ready"]
    assert report["versions"] == ["1", "2"] and report["version"] == "2"
    assert "binary_tensor_data" in report["extensions"]
    assert "unknown model" in report["unknown"]
    out = np.load(tmp_path / "out.npz")
    expected = Sampler(export_dir, 2).generate(out["z"], out["labels"].reshape(-1))
    np.testing.assert_allclose(out["image"], expected, atol=1e-6)
