"""The gRPC service (``--grpc-port``) is the shipped ``grpc_predict_v2.proto``.

Triton's own client against it is in test_serve_tritonclient.py; here the
service is called with message classes compiled from the same ``.proto``, so
these tests need no network.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf.message_factory import GetMessageClass
from keras_mergan.serve import Sampler
from keras_mergan.serve.app import AppSettings, create_app
from keras_mergan.serve.grpc_service import PROTO, PROTOCOL, SERVICE
from keras_mergan.serve.server import start_in_thread
from test_serve import cached_export

pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]

# Field numbers of the published protocol that a client's encoding depends
# on: (message, field) -> number.
PUBLISHED = {
    ("ModelInferRequest", "model_name"): 1,
    ("ModelInferRequest", "model_version"): 2,
    ("ModelInferRequest", "id"): 3,
    ("ModelInferRequest", "parameters"): 4,
    ("ModelInferRequest", "inputs"): 5,
    ("ModelInferRequest", "outputs"): 6,
    ("ModelInferRequest", "raw_input_contents"): 7,
    ("ModelInferRequest.InferInputTensor", "contents"): 5,
    ("ModelInferResponse", "outputs"): 5,
    ("ModelInferResponse", "raw_output_contents"): 6,
    ("ModelInferResponse.InferOutputTensor", "shape"): 3,
    ("ModelMetadataResponse", "outputs"): 5,
    ("ModelMetadataResponse.TensorMetadata", "shape"): 3,
    ("ServerMetadataResponse", "extensions"): 3,
    ("InferTensorContents", "int_contents"): 2,
    ("InferTensorContents", "int64_contents"): 3,
    ("InferTensorContents", "fp32_contents"): 6,
    ("InferParameter", "string_param"): 3,
}


@pytest.fixture(scope="module")
def export_dir(run_cache) -> Path:
    return cached_export(run_cache)


@pytest.fixture(scope="module")
def channel(export_dir):
    app = create_app(export_dir, AppSettings(grpc_address="127.0.0.1:0"))
    with start_in_thread(app):
        with grpc.insecure_channel(f"127.0.0.1:{app.state.grpc_port}") as channel:
            yield channel


def call(channel, method: str, **request):
    """One RPC the ``.proto`` declares, by name, with its message classes."""
    (declared,) = [m for m in SERVICE.methods if m.name == method]
    stub = channel.unary_unary(
        f"/{SERVICE.full_name}/{method}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=GetMessageClass(declared.output_type).FromString,
    )
    return stub(GetMessageClass(declared.input_type)(**request), timeout=60)


def typed_inputs(z: np.ndarray, labels: np.ndarray) -> list[dict]:
    return [
        {
            "name": "z",
            "datatype": "FP32",
            "shape": z.shape,
            "contents": {"fp32_contents": z.ravel()},
        },
        {
            "name": "label",
            "datatype": "INT32",
            "shape": labels.shape,
            "contents": {"int_contents": labels.ravel()},
        },
    ]


def test_the_service_is_compiled_from_the_shipped_proto():
    import keras_mergan.serve

    assert PROTO.parent == Path(keras_mergan.serve.__file__).parent
    assert PROTOCOL.name == PROTO.name == "grpc_predict_v2.proto"
    assert PROTOCOL.package == "inference"
    assert SERVICE.full_name == "inference.GRPCInferenceService"
    declared = re.findall(r"^\s*rpc (\w+)\(", PROTO.read_text(), re.MULTILINE)
    assert [method.name for method in SERVICE.methods] == declared
    assert declared == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]
    for (message, field), number in PUBLISHED.items():
        found = PROTOCOL.pool.FindMessageTypeByName(f"inference.{message}")
        assert found.fields_by_name[field].number == number, (message, field)


def test_every_declared_rpc_is_answered(channel, export_dir):
    z = np.random.default_rng(0).standard_normal((2, 128)).astype(np.float32)
    labels = np.array([1, 0], np.int32)
    requests = {
        "ServerLive": {},
        "ServerReady": {},
        "ModelReady": {"name": "generator", "version": "1"},
        "ServerMetadata": {},
        "ModelMetadata": {"name": "generator"},
        "ModelInfer": {
            "model_name": "generator",
            "id": "7",
            "inputs": typed_inputs(z, labels),
        },
    }
    answers = {
        m.name: call(channel, m.name, **requests[m.name]) for m in SERVICE.methods
    }
    assert answers["ServerLive"].live and answers["ServerReady"].ready
    assert answers["ModelReady"].ready
    assert "binary_tensor_data" in answers["ServerMetadata"].extensions
    metadata = answers["ModelMetadata"]
    assert list(metadata.versions) == ["1", "2"]
    assert [(t.name, list(t.shape)) for t in metadata.inputs] == [
        ("z", [-1, 128]),
        ("label", [-1]),
    ]
    infer = answers["ModelInfer"]
    assert (infer.model_version, infer.id) == ("2", "7")
    (output,) = infer.outputs
    image = np.frombuffer(infer.raw_output_contents[0], "<f4").reshape(output.shape)
    expected = Sampler(export_dir, 2).generate(z, labels)
    np.testing.assert_allclose(image, expected, atol=1e-6)
    # What the .proto does not declare is not served.
    undeclared = channel.unary_unary(f"/{SERVICE.full_name}/ModelConfig")
    with pytest.raises(grpc.RpcError) as error:
        undeclared(b"", timeout=60)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_infer_raw_contents_and_errors(channel, export_dir):
    z = np.random.default_rng(1).standard_normal((3, 128)).astype(np.float32)
    labels = np.array([0, 0, 0], np.int64)
    tensors = [
        {"name": "z", "datatype": "FP32", "shape": z.shape},
        {"name": "label", "datatype": "INT64", "shape": labels.shape},
    ]
    raw = [z.astype("<f4").tobytes(), labels.astype("<i8").tobytes()]
    answer = call(
        channel,
        "ModelInfer",
        model_name="generator",
        model_version="1",
        inputs=tensors,
        raw_input_contents=raw,
    )
    image = np.frombuffer(answer.raw_output_contents[0], "<f4")
    expected = Sampler(export_dir, 1).generate(z, labels)
    np.testing.assert_allclose(image.reshape(expected.shape), expected, atol=1e-6)
    failures = [
        ({"model_name": "other"}, grpc.StatusCode.NOT_FOUND, "unknown model"),
        (
            {"model_name": "generator", "model_version": "9"},
            grpc.StatusCode.NOT_FOUND,
            "",
        ),
        (
            {
                "model_name": "generator",
                "inputs": tensors,
                "raw_input_contents": raw[:1],
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "raw_input_contents",
        ),
        (
            {"model_name": "generator", "inputs": tensors[:1]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "label",
        ),
    ]
    for request, code, words in failures:
        with pytest.raises(grpc.RpcError) as error:
            call(channel, "ModelInfer", **request)
        assert error.value.code() == code, request
        assert words in error.value.details()


def test_another_copy_of_the_protocol_in_the_process_does_not_clash(tmp_path):
    # Generated modules (tritonclient's, KServe's) put the protocol's
    # messages in protobuf's default pool; ours are in a pool of their own.
    (tmp_path / "grpc_predict_v2.proto").write_bytes(PROTO.read_bytes())
    script = textwrap.dedent(
        f"""
        import sys
        import grpc
        sys.path.insert(0, {str(tmp_path)!r})
        generated = grpc.protos("grpc_predict_v2.proto")
        from keras_mergan.serve.grpc_service import MESSAGES
        ours = MESSAGES["ServerLiveResponse"](live=True).SerializeToString()
        theirs = generated.ServerLiveResponse.FromString(ours)
        sys.exit(0 if theirs.live else 1)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
