"""Inference requests and responses of the Open Inference Protocol, JSON or binary.

JSON tensors carry their values in ``data``. Triton's binary tensor data
extension (which ``tritonclient`` uses by default) puts them after the
JSON instead: the ``Inference-Header-Content-Length`` header gives the
JSON's length, each binary input declares ``parameters.binary_data_size``
and the raw little-endian, row-major bytes of the inputs follow in the
order the inputs are listed. An output is sent the same way when it asks
for ``parameters.binary_data`` (or the request for
``parameters.binary_data_output``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidParameterError

HEADER_LENGTH = "inference-header-content-length"
_REQUEST_KEYS = {"id", "parameters", "inputs", "outputs"}
_TENSOR_KEYS = {"name", "shape", "datatype", "parameters", "data"}
_OUTPUT_KEYS = {"name", "parameters"}
# Little-endian as the extension requires, whatever this machine's order.
_BINARY_TYPES = {
    "FP32": np.dtype("<f4"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
}
_LABEL_TYPES = ("INT32", "INT64")
_DIGITS = re.compile(r"^[0-9]{1,12}$")


@dataclass
class InferRequest:
    """A checked inference request: inputs, the request id, how to answer.

    Example:

    >>> InferRequest(np.zeros((1, 2), np.float32), np.zeros(1, int), None, False).binary
    False
    """

    z: np.ndarray
    labels: np.ndarray
    request_id: str | None
    binary: bool  # whether the output goes back as binary tensor data


def _bad(message: str) -> InvalidParameterError:
    return InvalidParameterError(message)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON object of a request body and the binary tensor data after it.

    ``header_length`` is the ``Inference-Header-Content-Length`` header, if
    sent: without it, the whole body is JSON.
    """
    if header_length is None:
        head, tail = body, b""
    else:
        if not _DIGITS.match(header_length.strip()):
            raise _bad(
                "Inference-Header-Content-Length must be a byte count, got "
                f"{header_length[:32]!r}"
            )
        size = int(header_length.strip())
        if size > len(body):
            raise _bad(
                f"Inference-Header-Content-Length {size} is longer than the "
                f"body ({len(body)} bytes)"
            )
        head, tail = body[:size], body[size:]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        hint = (
            "; binary tensor data needs the Inference-Header-Content-Length header"
            if header_length is None
            else ""
        )
        raise _bad(f"the request's JSON is not UTF-8 text{hint}") from None
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        message = str(error)[:120] if isinstance(error, ValueError) else "too deep"
        raise _bad(f"the request body is not valid JSON: {message}") from None
    if not isinstance(payload, dict):
        raise _bad("the request body must be a JSON object with 'inputs'")
    return payload, tail


def _shape(spec: dict, name: str) -> list[int]:
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 8
        or not all(type(d) is int and 0 <= d < 2**31 for d in shape)
    ):
        raise _bad(f"input {name!r}: shape must be a list of non-negative integers")
    return shape


def _datatype(spec: dict, name: str, allowed: tuple[str, ...]) -> str:
    datatype = spec.get("datatype")
    # A list or object is no datatype: check the type before any lookup.
    if not isinstance(datatype, str) or datatype not in allowed:
        raise _bad(f"input {name!r}: datatype must be {' or '.join(allowed)}")
    return datatype


def _binary_size(spec: dict, name: str) -> int | None:
    size = spec.get("parameters", {}).get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise _bad(f"input {name!r}: binary_data_size must be a non-negative integer")
    if "data" in spec:
        raise _bad(f"input {name!r}: give data or binary_data_size, not both")
    return size


def _json_tensor(spec: dict, name: str, shape: list[int], kinds: str) -> np.ndarray:
    data = spec.get("data")
    if not isinstance(data, list):
        raise _bad(
            f"input {name!r}: data must be a JSON array (or the input binary, "
            "with parameters.binary_data_size)"
        )
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, RecursionError):
        raise _bad(f"input {name!r}: data must be numbers, nested evenly") from None
    if array.dtype.kind not in kinds:
        wanted = "integers" if kinds == "iu" else "numbers"
        raise _bad(f"input {name!r}: data must be {wanted}")
    if array.size != math.prod(shape):
        raise _bad(
            f"input {name!r}: shape {shape} needs {math.prod(shape)} values, "
            f"data has {array.size}"
        )
    return array.reshape(shape)


def _binary_tensor(
    raw: bytes, name: str, shape: list[int], datatype: str
) -> np.ndarray:
    dtype = _BINARY_TYPES[datatype]
    needed = math.prod(shape) * dtype.itemsize
    if len(raw) != needed:
        raise _bad(
            f"input {name!r}: shape {shape} of {datatype} needs {needed} bytes, "
            f"binary_data_size is {len(raw)}"
        )
    return np.frombuffer(raw, dtype).reshape(shape)


def _flag(parameters: dict, key: str, where: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise _bad(f"{where}: {key} must be true or false")
    return value


def _wants_binary(payload: dict, parameters: dict) -> bool:
    """Whether ``image`` goes back binary: its own flag, else the request's."""
    default = bool(_flag(parameters, "binary_data_output", "parameters"))
    outputs = payload.get("outputs")
    if outputs is None:
        return default
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise _bad('outputs must be a list of {"name": "image"}')
    binary = default
    for output in outputs:
        if output.get("name") != "image":
            raise _bad(
                f"unknown output {str(output.get('name'))[:64]!r}; the output is image"
            )
        extra = sorted(set(output) - _OUTPUT_KEYS)
        if extra:
            raise _bad(f"output 'image': unknown field {str(extra[0])[:64]!r}")
        own = output.get("parameters", {})
        if not isinstance(own, dict):
            raise _bad("output 'image': parameters must be a JSON object")
        if own.get("classification"):
            raise _bad("output 'image': the classification extension is not supported")
        flag = _flag(own, "binary_data", "output 'image'")
        if flag is not None:
            binary = flag
    return binary


def read_request(
    payload: dict,
    binary: bytes,
    latent_dim: int,
    seen_classes: np.ndarray,
    task: int,
    max_samples: int,
) -> InferRequest:
    """The inputs of an inference request, checked against one task's generator.

    Example:

    >>> # read_request(*split_body(body, None), 128, [0, 1], 2, 1024)
    """
    unknown = sorted(set(payload) - _REQUEST_KEYS)
    if unknown:
        raise _bad(
            f"unknown request field {unknown[0][:64]!r}; "
            f"allowed: {', '.join(sorted(_REQUEST_KEYS))}"
        )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("id must be a string")
    parameters = payload.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _bad("parameters must be a JSON object")
    wants_binary = _wants_binary(payload, parameters)
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise _bad("inputs must be a list of tensors: z and label")
    by_name: dict[str, dict] = {}
    for spec in inputs:
        name = spec.get("name")
        if name not in ("z", "label"):
            raise _bad(f"unknown input {str(name)[:64]!r}; inputs are z and label")
        if name in by_name:
            raise _bad(f"input {name!r} given twice")
        extra = sorted(set(spec) - _TENSOR_KEYS)
        if extra:
            raise _bad(f"input {name!r}: unknown field {str(extra[0])[:64]!r}")
        if not isinstance(spec.get("parameters", {}), dict):
            raise _bad(f"input {name!r}: parameters must be a JSON object")
        by_name[name] = spec
    missing = sorted({"z", "label"} - set(by_name))
    if missing:
        raise _bad(f"input {missing[0]!r} is missing")

    # Binary inputs take their bytes from the tail in the order listed.
    raw: dict[str, bytes] = {}
    offset = 0
    for spec in inputs:
        size = _binary_size(spec, spec["name"])
        if size is not None:
            raw[spec["name"]] = binary[offset : offset + size]
            offset += size
    if offset != len(binary):
        raise _bad(
            f"the binary inputs declare {offset} bytes (binary_data_size) but "
            f"{len(binary)} follow the JSON"
        )

    z_spec, label_spec = by_name["z"], by_name["label"]
    _datatype(z_spec, "z", ("FP32",))
    label_type = _datatype(label_spec, "label", _LABEL_TYPES)
    z_shape, label_shape = _shape(z_spec, "z"), _shape(label_spec, "label")
    n = z_shape[0]
    if len(z_shape) != 2 or z_shape[1] != latent_dim:
        raise _bad(f"input 'z': shape must be [N, {latent_dim}], got {z_shape}")
    if label_shape not in ([n], [n, 1]):
        raise _bad(
            f"input 'label': shape must be [{n}] or [{n}, 1] to match z, "
            f"got {label_shape}"
        )
    if not 1 <= n <= max_samples:
        raise _bad(f"N must be in 1..{max_samples}, got {n}")
    if "z" in raw:
        z = _binary_tensor(raw["z"], "z", z_shape, "FP32").astype(np.float32)
    else:
        with np.errstate(over="ignore"):
            z = _json_tensor(z_spec, "z", z_shape, "iuf").astype(np.float32)
    if not np.isfinite(z).all():
        raise _bad("input 'z': values must be finite float32 numbers")
    if "label" in raw:
        labels = _binary_tensor(raw["label"], "label", label_shape, label_type)
    else:
        labels = _json_tensor(label_spec, "label", label_shape, "iu")
    labels = labels.reshape(n)
    learned = np.isin(labels, seen_classes)
    if not learned.all():
        bad = labels[~learned][0]
        raise _bad(
            f"input 'label': class {int(bad)} is not learned at version {task}; "
            f"learned: {', '.join(map(str, seen_classes))}"
        )
    return InferRequest(z, labels, request_id, wants_binary)


def response_head(
    model_name: str, version: int, request_id: str | None, images: np.ndarray
) -> dict[str, Any]:
    """The JSON of an inference response, without the image's values."""
    head: dict[str, Any] = {"model_name": model_name, "model_version": str(version)}
    if request_id is not None:
        head["id"] = request_id
    output = {"name": "image", "datatype": "FP32", "shape": list(images.shape)}
    head["outputs"] = [output]
    return head


def binary_response(head: dict, images: np.ndarray) -> tuple[bytes, int]:
    """``(body, JSON length)`` of a response whose image is binary tensor data."""
    raw = np.ascontiguousarray(images, dtype="<f4").tobytes()
    head["outputs"][0]["parameters"] = {"binary_data_size": len(raw)}
    text = json.dumps(head, separators=(",", ":")).encode()
    return text + raw, len(text)
