"""The Open Inference Protocol v2 routes, spoken with a plain HTTP client.

Requests and responses follow the protocol's documented examples (KServe's
"Predict Protocol - Version 2", as Triton and MLServer implement it): the
``id`` echoed back, ``outputs`` naming the requested tensors, ``data`` flat
in row-major order or nested, errors as ``{"error": "<message>"}``.
"""

from __future__ import annotations

import http.client
import json

import numpy as np
import pytest
from keras_mergan.serve import Sampler
from keras_mergan.serve.app import AppSettings, create_app
from keras_mergan.serve.server import start_in_thread
from test_serve import cached_export, raw_request

pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]


@pytest.fixture(scope="module")
def export_dir(run_cache):
    return cached_export(run_cache)


@pytest.fixture(scope="module")
def server(export_dir):
    app = create_app(export_dir, AppSettings(max_samples=64, max_body=2**20))
    with start_in_thread(app) as running:
        yield running.url.removeprefix("http://")


def call(server: str, method: str, path: str, body=None, headers=None):
    """(status, Content-Type, parsed JSON) of one request on a new connection."""
    host, port = server.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def infer_request(z, labels, label_type="INT32", label_shape=None, **extra):
    return {
        **extra,
        "inputs": [
            {
                "name": "z",
                "shape": list(np.shape(z)),
                "datatype": "FP32",
                "data": np.asarray(z).reshape(-1).tolist(),
            },
            {
                "name": "label",
                "shape": label_shape or [len(labels)],
                "datatype": label_type,
                "data": list(labels),
            },
        ],
    }


def test_health_and_server_metadata(server):
    assert call(server, "GET", "/v2/health/live")[::2] == (200, b'{"live": true}')
    assert call(server, "GET", "/v2/health/ready")[::2] == (200, b'{"ready": true}')
    status, kind, body = call(server, "GET", "/v2")
    metadata = json.loads(body)
    assert status == 200 and kind == "application/json"
    assert metadata["name"] == "keras-mergan"
    assert set(metadata["extensions"]) == {
        "binary_tensor_data",
        "statistics",
        "model_configuration",
    }
    assert isinstance(metadata["version"], str)


def test_model_metadata(server):
    status, _, body = call(server, "GET", "/v2/models/generator")
    assert status == 200
    assert json.loads(body) == {
        "name": "generator",
        "versions": ["1", "2"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "z", "datatype": "FP32", "shape": [-1, 128]},
            {"name": "label", "datatype": "INT32", "shape": [-1]},
        ],
        "outputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 32, 32, 1]}],
    }
    status, _, body = call(server, "GET", "/v2/models/generator/versions/1")
    assert status == 200 and json.loads(body)["versions"] == ["1"]
    for path in ("/v2/models/generator/ready", "/v2/models/generator/versions/1/ready"):
        status, _, body = call(server, "GET", path)
        assert status == 200 and json.loads(body) == {
            "name": "generator",
            "ready": True,
        }


def test_infer_follows_the_documented_example(server, export_dir):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((3, 128)).astype(np.float32)
    labels = [0, 1, 1]
    request = infer_request(z, labels, id="42", outputs=[{"name": "image"}])
    status, kind, body = call(
        server, "POST", "/v2/models/generator/versions/2/infer", request
    )
    assert status == 200 and kind == "application/json", body[:300]
    response = json.loads(body)
    assert response["model_name"] == "generator"
    assert response["model_version"] == "2" and response["id"] == "42"
    [output] = response["outputs"]
    assert output["name"] == "image" and output["datatype"] == "FP32"
    assert output["shape"] == [3, 32, 32, 1]
    images = np.asarray(output["data"], np.float32).reshape(output["shape"])
    expected = Sampler(export_dir, 2).generate(z, labels)
    np.testing.assert_allclose(images, expected, atol=1e-6)


def test_infer_variants_give_the_same_images(server):
    z = np.random.default_rng(1).standard_normal((2, 128)).astype(np.float32)
    flat = json.loads(
        call(server, "POST", "/v2/models/generator/infer", infer_request(z, [1, 0]))[2]
    )
    assert flat["model_version"] == "2" and "id" not in flat  # latest task
    nested = infer_request(z, [1, 0], label_type="INT64")
    nested["inputs"][0]["data"] = z.tolist()  # nested rows instead of flat
    triton_style = infer_request(z, [[1], [0]], label_shape=[2, 1])
    for request in (nested, triton_style):
        status, _, body = call(
            server, "POST", "/v2/models/generator/versions/2/infer", request
        )
        assert status == 200, body[:300]
        assert json.loads(body)["outputs"] == flat["outputs"]


Z1 = [0.0] * 128


def _with(request: dict, index: int, **changes) -> dict:
    inputs = [dict(spec) for spec in request["inputs"]]
    inputs[index].update(changes)
    return {**request, "inputs": inputs}


GOOD = infer_request([Z1], [0])
BAD_INFERENCE = [
    (b"", 400),
    (b"{", 400),
    (b"[1, 2]", 400),
    (b'{"inputs": [{"name": "z", "data": [NaN]}]}', 400),
    (b"[" * 100_000 + b"]" * 100_000, 400),
    ({"inputs": "z"}, 400),
    ({"inputs": []}, 400),
    ({"inputs": [GOOD["inputs"][0]]}, 400),
    ({**GOOD, "inputs": GOOD["inputs"] * 2}, 400),
    ({**GOOD, "input": []}, 400),
    ({**GOOD, "id": 42}, 400),
    ({**GOOD, "outputs": [{"name": "logits"}]}, 400),
    (
        {**GOOD, "outputs": [{"name": "image", "parameters": {"binary_data": 1}}]},
        400,
    ),
    ({**GOOD, "parameters": {"binary_data_output": "yes"}}, 400),
    (_with(GOOD, 0, datatype=[]), 400),  # unhashable: once a 500
    (_with(GOOD, 1, datatype={"a": 1}), 400),
    (_with(GOOD, 0, parameters={"binary_data_size": 512}), 400),  # no bytes follow
    (b"\x80\x81 not UTF-8", 400),
    (_with(GOOD, 0, datatype="FP64"), 400),
    (_with(GOOD, 0, shape=[1, 127]), 400),
    (_with(GOOD, 0, shape=[1, 128, 1]), 400),
    (_with(GOOD, 0, shape=[2, 128]), 400),
    (_with(GOOD, 0, shape="1,128"), 400),
    (_with(GOOD, 0, shape=[-1, 128]), 400),
    (_with(GOOD, 0, data=[1.0] * 127), 400),
    (_with(GOOD, 0, data=["x"] * 128), 400),
    (_with(GOOD, 0, data=[True] * 128), 400),
    (_with(GOOD, 0, data=[[1.0], [2.0, 3.0]]), 400),
    (_with(GOOD, 0, data=[1e39] * 128), 400),
    (_with(GOOD, 0, data={"b64": "AAAA"}), 400),
    (_with(GOOD, 1, datatype="FP32"), 400),
    (_with(GOOD, 1, data=[0.5]), 400),
    (_with(GOOD, 1, data=[2]), 400),  # not learned at task 2
    (_with(GOOD, 1, data=[-1]), 400),
    (_with(GOOD, 1, data=[2**70]), 400),
    (_with(GOOD, 1, name="labels"), 400),
    (infer_request([Z1] * 65, [0] * 65), 400),  # over max_samples
    (infer_request(np.zeros((0, 128)), []), 400),
]


@pytest.mark.parametrize("request_body, status", BAD_INFERENCE)
def test_bad_inference_requests_get_protocol_errors(server, request_body, status):
    got, kind, body = call(
        server, "POST", "/v2/models/generator/versions/2/infer", request_body
    )
    assert (got, kind) == (status, "application/json"), body[:300]
    error = json.loads(body)
    assert list(error) == ["error"] and isinstance(error["error"], str)
    assert 0 < len(error["error"]) < 400


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("POST", "/v2/models/other/infer", 404),
        ("POST", "/v2/models/generator/versions/9/infer", 404),
        ("POST", "/v2/models/generator/versions/x/infer", 400),
        ("POST", "/v2/models/generator/versions/..%2F1/infer", 404),
        ("GET", "/v2/models/other", 404),
        ("GET", "/v2/models/generator/versions/0", 404),
        ("GET", "/v2/models/generator/versions/3/ready", 404),
        ("GET", "/v2/models/generator/infer", 405),
        ("PUT", "/v2/health/live", 405),
        ("GET", "/v2/nothing", 404),
    ],
)
def test_unknown_models_and_routes(server, method, path, status):
    got, _, body = call(server, method, path, GOOD if method != "GET" else None)
    assert got == status, body[:300]
    assert isinstance(json.loads(body)["error"], str)


def test_oversized_body_is_refused_before_it_is_read(server):
    # Headers only: the 413 must come without the server waiting for the body.
    status, headers, body = raw_request(
        "http://" + server,
        b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1048577\r\n\r\n",
    )
    assert status == 413 and headers["connection"] == "close"
    assert "limit" in json.loads(body)["error"]
