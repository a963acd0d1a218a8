"""The Triton model repository written from an export, and its config.pbtxt.

``config.pbtxt`` is parsed with protobuf's text format against Triton's
``ModelConfig`` message: tritonclient's ``model_config_pb2`` when it is
installed, otherwise the fields used here declared as Triton's
``model_config.proto`` documents them (same names, numbers and types), so
a misspelt field, a wrong type or a bad enum value fails either way.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
)
from keras_mergan.export import ExportError
from keras_mergan.export.__main__ import main as export_main
from keras_mergan.export.triton import write_triton_repository
from keras_mergan.serve import Sampler
from test_serve import cached_export

pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]

_F = descriptor_pb2.FieldDescriptorProto
# (message, [(field, number, type, label, type_name)]) from model_config.proto.
_MODEL_CONFIG = [
    ("ModelTensorReshape", [("shape", 1, _F.TYPE_INT64, _F.LABEL_REPEATED, None)]),
    (
        "ModelInput",
        [
            ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
            ("data_type", 2, _F.TYPE_ENUM, _F.LABEL_OPTIONAL, ".inference.DataType"),
            ("dims", 4, _F.TYPE_INT64, _F.LABEL_REPEATED, None),
            (
                "reshape",
                5,
                _F.TYPE_MESSAGE,
                _F.LABEL_OPTIONAL,
                ".inference.ModelTensorReshape",
            ),
        ],
    ),
    (
        "ModelOutput",
        [
            ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
            ("data_type", 2, _F.TYPE_ENUM, _F.LABEL_OPTIONAL, ".inference.DataType"),
            ("dims", 3, _F.TYPE_INT64, _F.LABEL_REPEATED, None),
        ],
    ),
    (
        "ModelDynamicBatching",
        [("max_queue_delay_microseconds", 2, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, None)],
    ),
    (
        "ModelConfig",
        [
            ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
            ("platform", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
            (
                "version_policy",
                3,
                _F.TYPE_MESSAGE,
                _F.LABEL_OPTIONAL,
                ".inference.ModelVersionPolicy",
            ),
            ("max_batch_size", 4, _F.TYPE_INT32, _F.LABEL_OPTIONAL, None),
            ("input", 5, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.ModelInput"),
            ("output", 6, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.ModelOutput"),
            (
                "dynamic_batching",
                11,
                _F.TYPE_MESSAGE,
                _F.LABEL_OPTIONAL,
                ".inference.ModelDynamicBatching",
            ),
        ],
    ),
]
_DATA_TYPES = [
    "TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32",
    "TYPE_UINT64", "TYPE_INT8", "TYPE_INT16", "TYPE_INT32", "TYPE_INT64",
    "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING", "TYPE_BF16",
]  # fmt: skip


def _documented_model_config():
    proto = descriptor_pb2.FileDescriptorProto(
        name="model_config_documented_fields.proto",
        package="inference",
        syntax="proto3",
    )
    data_type = proto.enum_type.add(name="DataType")
    for number, name in enumerate(_DATA_TYPES):
        data_type.value.add(name=name, number=number)
    policy = proto.message_type.add(name="ModelVersionPolicy")
    policy.oneof_decl.add(name="policy_choice")
    policy.nested_type.add(name="Latest").field.add(
        name="num_versions", number=1, type=_F.TYPE_UINT32, label=_F.LABEL_OPTIONAL
    )
    policy.nested_type.add(name="All")
    policy.nested_type.add(name="Specific").field.add(
        name="versions", number=1, type=_F.TYPE_INT64, label=_F.LABEL_REPEATED
    )
    for number, name in enumerate(["latest", "all", "specific"], start=1):
        policy.field.add(
            name=name,
            number=number,
            type=_F.TYPE_MESSAGE,
            label=_F.LABEL_OPTIONAL,
            type_name=f".inference.ModelVersionPolicy.{name.capitalize()}",
            oneof_index=0,
        )
    for message, fields in _MODEL_CONFIG:
        declared = proto.message_type.add(name=message)
        for name, number, kind, label, type_name in fields:
            field = declared.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("inference.ModelConfig")
    )


def model_config_class():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return _documented_model_config()
    return model_config_pb2.ModelConfig


@pytest.fixture(scope="module")
def export_dir(run_cache):
    return cached_export(run_cache)


def test_repository_layout_and_config(export_dir, tmp_path):
    repository = tmp_path / "models"
    (repository / "other").mkdir(parents=True)  # another model, left alone
    model = write_triton_repository(export_dir, repository, max_batch_size=64)
    assert model == repository / "generator"
    assert sorted(p.name for p in repository.iterdir()) == ["generator", "other"]
    files = sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())
    assert files == ["1/model.onnx", "2/model.onnx", "config.pbtxt"]
    for task in (1, 2):
        exported = export_dir / f"task_{task:02d}" / "model.onnx"
        assert (model / str(task) / "model.onnx").read_bytes() == exported.read_bytes()

    config = text_format.Parse(
        (model / "config.pbtxt").read_text(), model_config_class()()
    )
    assert config.name == "generator" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64
    assert config.version_policy.WhichOneof("policy_choice") == "all"
    z, label = config.input
    assert (z.name, list(z.dims)) == ("z", [128])
    assert (label.name, list(label.dims)) == ("label", [1])
    assert label.HasField("reshape") and list(label.reshape.shape) == []
    [image] = config.output
    assert (image.name, list(image.dims)) == ("image", [32, 32, 1])
    types = type(config).DESCRIPTOR.fields_by_name["input"].message_type
    names = types.fields_by_name["data_type"].enum_type.values_by_number
    assert [names[t.data_type].name for t in (z, label, image)] == [
        "TYPE_FP32",
        "TYPE_INT32",
        "TYPE_FP32",
    ]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0


def test_repository_model_runs_as_triton_would_feed_it(export_dir, tmp_path):
    model = write_triton_repository(export_dir, tmp_path / "models")
    session = ort.InferenceSession(
        str(model / "2" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    z = np.random.default_rng(0).standard_normal((3, 128)).astype(np.float32)
    labels = np.array([[0], [1], [1]], np.int32)  # [N, 1], reshaped to [N]
    [images] = session.run(["image"], {"z": z, "label": labels.reshape(-1)})
    expected = Sampler(export_dir, 2).generate(z, labels.reshape(-1))
    np.testing.assert_allclose(images, expected, atol=1e-6)


def test_rewrite_and_refusals(export_dir, tmp_path):
    repository = tmp_path / "models"
    write_triton_repository(export_dir, repository, "gan")
    write_triton_repository(export_dir, repository, "gan")  # replaced whole
    assert sorted(p.name for p in repository.iterdir()) == ["gan"]
    with pytest.raises(ExportError, match="model name"):
        write_triton_repository(export_dir, repository, "../escape")
    with pytest.raises(ExportError, match="no exported task"):
        write_triton_repository(tmp_path / "empty", repository)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "task_01").symlink_to(export_dir / "task_01")
    task_02 = corrupt / "task_02"
    task_02.mkdir()
    manifest = json.loads((export_dir / "task_02" / "manifest.json").read_text())
    (task_02 / "manifest.json").write_text(json.dumps(manifest))
    (task_02 / "model.onnx").write_bytes(b"changed")
    with pytest.raises(ExportError, match="does not match"):
        write_triton_repository(corrupt, repository, "gan")
    files = sorted(p.name for p in (repository / "gan").iterdir())
    assert files == ["1", "2", "config.pbtxt"]  # the previous one is untouched
    assert sorted(p.name for p in repository.iterdir()) == ["gan"]


def test_export_command_line_writes_the_repository(
    export_dir, tmp_path, monkeypatch, capsys
):
    # The TensorFlow export itself is tested in test_export.py; here only the
    # --triton step after it.
    paths = [export_dir / "task_01", export_dir / "task_02"]
    monkeypatch.setattr(
        "keras_mergan.export.__main__.export_run", lambda *a, **k: paths
    )
    repository = tmp_path / "models"
    argv = [str(tmp_path), "--out", str(export_dir), "--triton", str(repository)]
    assert export_main([*argv, "--triton-name", "digits"]) == 0
    assert "Triton model, versions [1, 2]" in capsys.readouterr().out
    assert (repository / "digits" / "config.pbtxt").is_file()
    with pytest.raises(SystemExit) as exit_info:
        export_main([*argv, "--triton-name", "no/slash"])
    assert exit_info.value.code == 2
