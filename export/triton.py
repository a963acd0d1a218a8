"""A Triton Inference Server model repository from an export directory.

For deployments that outgrow one ``python -m keras_mergan.serve`` process: Triton (or
any server that reads its repository layout) serves the same ONNX files,
with the same Open Inference Protocol names, so clients do not change::

    python -m keras_mergan.export RUN_DIR --triton REPOSITORY [--triton-name generator]

or from Python::

    from .triton import write_triton_repository
    write_triton_repository("runs/x/export", "models")

Layout: ``REPOSITORY/<name>/config.pbtxt`` and one version per exported
task, ``REPOSITORY/<name>/<task>/model.onnx``. The configuration serves
every version (``version_policy: all``) with dynamic batching. Triton
requires per-sample dimensions: ``label`` is declared as ``[1]`` reshaped to
a scalar, so Triton clients send labels of shape ``[N, 1]`` (the built-in
server accepts both ``[N]`` and ``[N, 1]``).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from keras_mergan.run_folder import sha256_file, task_folders

from .errors import ExportError
from .manifest import MANIFEST
from .publish import publish

MODEL_NAME = "generator"
MAX_BATCH_SIZE = 256
MAX_QUEUE_DELAY_US = 2000
_TRITON_TYPES = {"float32": "TYPE_FP32", "int32": "TYPE_INT32", "int64": "TYPE_INT64"}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def config_pbtxt(
    name: str,
    manifest: dict,
    *,
    max_batch_size: int = MAX_BATCH_SIZE,
    max_queue_delay_us: int = MAX_QUEUE_DELAY_US,
) -> str:
    """Triton's ``config.pbtxt`` (protobuf text format) for an export's signature.

    Example:

    >>> manifest = {"latent_dim": 128, "image_shape": [32, 32, 1],
    ...             "inputs": {"label": {"dtype": "int32"}}}
    >>> print(config_pbtxt("generator", manifest).splitlines()[1])
    name: "generator"
    """
    label = _triton_type(manifest["inputs"]["label"]["dtype"])
    image = ", ".join(str(int(d)) for d in manifest["image_shape"])
    return f"""\
# Written by keras-mergan's export: one version per exported task.
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: {int(max_batch_size)}
version_policy: {{ all: {{ }} }}
input [
  {{
    name: "z"
    data_type: TYPE_FP32
    dims: [ {int(manifest["latent_dim"])} ]
  }},
  {{
    name: "label"
    data_type: {label}
    dims: [ 1 ]
    reshape: {{ shape: [ ] }}
  }}
]
output [
  {{
    name: "image"
    data_type: TYPE_FP32
    dims: [ {image} ]
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: {int(max_queue_delay_us)}
}}
"""


def check_model_name(name: str) -> str:
    """``name`` if it is a valid model (and directory) name, else ExportError."""
    if not _NAME.match(name):
        raise ExportError(
            f"model name {name[:64]!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    return name


def _triton_type(dtype: str) -> str:
    try:
        return _TRITON_TYPES[dtype]
    except KeyError:
        raise ExportError(f"no Triton data type for {dtype!r}") from None


def _signature(manifest: dict) -> tuple:
    return (
        manifest["latent_dim"],
        tuple(manifest["image_shape"]),
        manifest["inputs"]["label"]["dtype"],
    )


def write_triton_repository(
    export_dir: str | Path,
    repository: str | Path,
    name: str = MODEL_NAME,
    *,
    max_batch_size: int = MAX_BATCH_SIZE,
    max_queue_delay_us: int = MAX_QUEUE_DELAY_US,
) -> Path:
    """Write ``repository/name`` from every task of ``export_dir``; returns it.

    Each ``model.onnx`` is checked against its manifest's sha256 before it
    is copied. The model directory is built beside its destination and
    swapped in whole (:func:`keras_mergan.export.publish.publish`), so a
    Triton polling the repository never loads a half-written version; other models in
    ``repository`` are left alone.

    Example:

    >>> # write_triton_repository("runs/x/export", "models")  ->  models/generator
    """
    check_model_name(name)
    if not 1 <= max_batch_size <= 2**20 or max_queue_delay_us < 0:
        raise ExportError("max_batch_size must be >= 1 and the queue delay >= 0")
    export_dir = Path(export_dir)
    tasks = task_folders(export_dir, MANIFEST)
    if not tasks:
        raise ExportError(f"no exported task in {export_dir}")
    manifests = {}
    for task, directory in tasks.items():
        manifest = json.loads((directory / MANIFEST).read_text())
        model = manifest["onnx"]["path"]
        expected = manifest.get("files", {}).get(model, {}).get("sha256")
        if expected != sha256_file(directory / model):
            raise ExportError(f"{directory / model} does not match its manifest")
        manifests[task] = manifest
    signatures = {_signature(m) for m in manifests.values()}
    if len(signatures) > 1:
        raise ExportError(
            "the tasks' generators differ in latent size, image shape or label "
            "type: one Triton model cannot hold them"
        )

    repository = Path(repository)
    repository.mkdir(parents=True, exist_ok=True)
    target = repository / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repository))
    try:
        latest = manifests[max(manifests)]
        (staging / "config.pbtxt").write_text(
            config_pbtxt(
                name,
                latest,
                max_batch_size=max_batch_size,
                max_queue_delay_us=max_queue_delay_us,
            )
        )
        for task, directory in tasks.items():
            version = staging / str(task)
            version.mkdir()
            shutil.copyfile(
                directory / manifests[task]["onnx"]["path"], version / "model.onnx"
            )
        staging.chmod(0o755)  # mkdtemp's 0o700 would hide it from Triton's user
        publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
