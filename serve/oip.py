"""The Open Inference Protocol v2 (KServe, Triton, MLServer), REST with JSON tensors.

One model, named ``generator`` unless the server was told otherwise, whose
versions are the exported tasks::

    GET  /v2                                    server metadata
    GET  /v2/health/live | /v2/health/ready     ready: every task loads
    GET  /v2/models/{name}[/versions/{task}]    model metadata
    GET  /v2/models/{name}[/versions/{task}]/ready
    POST /v2/models/{name}[/versions/{task}]/infer

Inference takes ``z`` (FP32 ``[N, latent_dim]``) and ``label`` (INT32 or
INT64 ``[N]``, or ``[N, 1]`` as Triton's configuration declares it) and
returns ``image`` (FP32 ``[N, H, W, C]`` in the export's ``value_range``)::

    {"inputs": [{"name": "z", "shape": [1, 128], "datatype": "FP32",
                 "data": [0.1, ...]},
                {"name": "label", "shape": [1], "datatype": "INT32",
                 "data": [3]}]}
    -> {"model_name": "generator", "model_version": "2",
        "outputs": [{"name": "image", "shape": [1, 32, 32, 1],
                     "datatype": "FP32", "data": [...]}]}

``data`` may be flat (row-major) or nested. Errors are ``{"error": "..."}``
with a 4xx status for a bad request, 503 for a task that cannot load.
Triton's binary tensor extension is not supported.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from . import __version__
from .errors import (
    ExportIntegrityError,
    InvalidParameterError,
    UnknownModelError,
    UnknownTaskError,
)
from .responses import GuardedRoute, json_response, payload_response
from .sampler import Sampler
from .service import GeneratorService, Payload, json_body, json_held

PLATFORM = "onnxruntime_onnx"
# Python objects per byte of JSON a parsed request holds at most: "0," is
# two bytes and becomes a float (24 bytes) in a list slot (8), then numpy's
# float64 copy (8).
_PARSE_FACTOR = 20
_INLINE_BYTES = 64 * 2**10
_REQUEST_KEYS = {"id", "parameters", "inputs", "outputs"}
_TENSOR_KEYS = {"name", "shape", "datatype", "parameters", "data"}
_LABEL_TYPES = {"INT32", "INT64"}
_VERSION = re.compile(r"^\d{1,6}$")

# For a generator with the default latent_dim of 128 (the model metadata
# gives the actual one).
INFER_EXAMPLE = {
    "id": "example-1",
    "inputs": [
        {"name": "z", "shape": [1, 128], "datatype": "FP32", "data": [0.0] * 128},
        {"name": "label", "shape": [1], "datatype": "INT32", "data": [0]},
    ],
    "outputs": [{"name": "image"}],
}


def _bad(message: str) -> InvalidParameterError:
    return InvalidParameterError(message)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def parse_request(body: bytes) -> dict:
    """The JSON of an inference request; NaN and Infinity are refused."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        message = str(error)[:120] if isinstance(error, ValueError) else "too deep"
        raise _bad(f"the request body is not valid JSON: {message}") from None
    if not isinstance(payload, dict):
        raise _bad("the request body must be a JSON object with 'inputs'")
    return payload


def _shape(spec: dict, name: str) -> list[int]:
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 8
        or not all(type(d) is int and 0 <= d < 2**31 for d in shape)
    ):
        raise _bad(f"input {name!r}: shape must be a list of non-negative integers")
    return shape


def _tensor(spec: dict, name: str, kinds: str) -> np.ndarray:
    """``spec``'s data as an array of its declared shape (numbers of ``kinds``)."""
    shape = _shape(spec, name)
    data = spec.get("data")
    if not isinstance(data, list):
        raise _bad(
            f"input {name!r}: data must be a JSON array (binary data is not supported)"
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


def read_inputs(
    payload: dict, sampler: Sampler, max_samples: int
) -> tuple[np.ndarray, np.ndarray, Any]:
    """``(z, labels, request id)`` of an inference request, checked against the task.

    Example:

    >>> # z, labels, _ = read_inputs(json.loads(body), sampler, 1024)
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
    if parameters.get("binary_data_output"):
        raise _bad("binary tensor data is not supported: ask for JSON outputs")
    _check_outputs(payload.get("outputs"))
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
            raise _bad(f"input {name!r}: unknown field {extra[0][:64]!r}")
        if not isinstance(spec.get("parameters", {}), dict):
            raise _bad(f"input {name!r}: parameters must be a JSON object")
        by_name[name] = spec
    missing = sorted({"z", "label"} - set(by_name))
    if missing:
        raise _bad(f"input {missing[0]!r} is missing")

    z_spec, label_spec = by_name["z"], by_name["label"]
    if z_spec.get("datatype") != "FP32":
        raise _bad("input 'z': datatype must be FP32")
    if label_spec.get("datatype") not in _LABEL_TYPES:
        raise _bad("input 'label': datatype must be INT32 or INT64")
    z_shape, label_shape = _shape(z_spec, "z"), _shape(label_spec, "label")
    n = z_shape[0]
    if len(z_shape) != 2 or z_shape[1] != sampler.latent_dim:
        raise _bad(f"input 'z': shape must be [N, {sampler.latent_dim}], got {z_shape}")
    if label_shape not in ([n], [n, 1]):
        raise _bad(
            f"input 'label': shape must be [{n}] or [{n}, 1] to match z, "
            f"got {label_shape}"
        )
    if not 1 <= n <= max_samples:
        raise _bad(f"N must be in 1..{max_samples}, got {n}")
    with np.errstate(over="ignore"):
        z = _tensor(z_spec, "z", "iuf").astype(np.float32)
    if not np.isfinite(z).all():
        raise _bad("input 'z': values must be finite float32 numbers")
    labels = _tensor(label_spec, "label", "iu").reshape(n)
    learned = np.isin(labels, sampler.seen_classes)
    if not learned.all():
        bad = labels[~learned][0]
        raise _bad(
            f"input 'label': class {int(bad)} is not learned at version "
            f"{sampler.task}; learned: "
            f"{', '.join(map(str, sampler.seen_classes))}"
        )
    return z, labels, request_id


def _check_outputs(outputs) -> None:
    if outputs is None:
        return
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise _bad('outputs must be a list of {"name": "image"}')
    for output in outputs:
        if output.get("name") != "image":
            raise _bad(
                f"unknown output {str(output.get('name'))[:64]!r}; the output is image"
            )
        parameters = output.get("parameters", {})
        if not isinstance(parameters, dict):
            raise _bad("output 'image': parameters must be a JSON object")
        if parameters.get("binary_data"):
            raise _bad(
                "binary tensor data is not supported: ask for JSON outputs "
                "(binary_data false)"
            )


def model_metadata(name: str, sampler: Sampler, versions: list[int]) -> dict:
    """The protocol's model metadata for one task's generator."""
    label = sampler.manifest["inputs"]["label"]["dtype"].upper()
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM,
        "inputs": [
            {"name": "z", "datatype": "FP32", "shape": [-1, sampler.latent_dim]},
            {"name": "label", "datatype": label, "shape": [-1]},
        ],
        "outputs": [
            {"name": "image", "datatype": "FP32", "shape": [-1, *sampler.image_shape]}
        ],
    }


def oip_router(service: GeneratorService, model_name: str, max_body: int) -> APIRouter:
    """The ``/v2`` routes for ``service``'s tasks as versions of ``model_name``.

    ``max_body`` is the request body limit, the memory reserved for parsing
    a body whose size is not announced.

    Example:

    >>> # app.include_router(oip_router(service, "generator", 4 * 2**20))
    """
    router = APIRouter(
        prefix="/v2", route_class=GuardedRoute, tags=["Open Inference Protocol v2"]
    )
    exports = service.exports

    def check_name(name: str) -> None:
        if name != model_name:
            raise UnknownModelError(
                f"unknown model {name[:64]!r}; this server has {model_name!r}"
            )

    def sampler_of(version: str | None) -> Sampler:
        if version is not None and not _VERSION.match(version):
            raise _bad(f"version must be a task number, got {version[:64]!r}")
        return exports.sampler(version)

    def loadable() -> list[int]:
        return [task for task, error in exports.status().items() if error is None]

    @router.get("", summary="Server metadata")
    async def server_metadata() -> Response:
        return json_response(
            {"name": "keras-mergan", "version": __version__, "extensions": []}
        )

    @router.get("/health/live", summary="The server answers")
    async def live() -> Response:
        return json_response({"live": True})

    @router.get("/health/ready", summary="Every task loads (503 otherwise)")
    async def ready() -> Response:
        status = exports.status()
        ok = bool(status) and all(error is None for error in status.values())
        return json_response({"ready": ok}, 200 if ok else 503)

    @router.get("/models/{name}", summary="Model metadata (latest task)")
    async def metadata(name: str) -> Response:
        check_name(name)
        versions = loadable()
        if not versions:
            raise UnknownTaskError("no task of this model can be loaded", "task")
        return json_response(
            model_metadata(name, exports.sampler(versions[-1]), versions)
        )

    @router.get("/models/{name}/versions/{version}", summary="Model metadata")
    async def version_metadata(name: str, version: str) -> Response:
        check_name(name)
        sampler = sampler_of(version)
        return json_response(model_metadata(name, sampler, [sampler.task]))

    async def model_ready(name: str, version: str | None) -> Response:
        check_name(name)
        try:
            sampler_of(version)
        except ExportIntegrityError:
            return json_response({"name": name, "ready": False}, 503)
        return json_response({"name": name, "ready": True})

    @router.get("/models/{name}/ready", summary="The latest task loads")
    async def latest_ready(name: str) -> Response:
        return await model_ready(name, None)

    @router.get("/models/{name}/versions/{version}/ready", summary="The task loads")
    async def version_ready(name: str, version: str) -> Response:
        return await model_ready(name, version)

    async def infer(request: Request, name: str, version: str | None) -> Response:
        check_name(name)
        sampler = sampler_of(version)
        declared = request.headers.get("content-length")
        expected = int(declared) if declared else max_body
        lease = await service.budget.acquire(expected * (1 + _PARSE_FACTOR))
        try:
            body = await request.body()
            if len(body) > _INLINE_BYTES:
                payload = await run_in_threadpool(parse_request, body)
                z, labels, request_id = await run_in_threadpool(
                    read_inputs, payload, sampler, service.max_samples
                )
            else:
                payload = parse_request(body)
                z, labels, request_id = read_inputs(
                    payload, sampler, service.max_samples
                )
            del body, payload  # what the lease accounted for goes with it
        finally:
            lease.release()
        pixels = math.prod(sampler.image_shape)
        values = len(z) * pixels
        lease = await service.budget.acquire(
            values * 4 + json_held(values, pixels, "float32")
        )
        try:
            images = await service.generate(sampler, z, labels)
            head = {"model_name": name, "model_version": str(sampler.task)}
            if request_id is not None:
                head["id"] = request_id
            output = {"name": "image", "datatype": "FP32", "shape": list(images.shape)}
            prefix = (
                json.dumps(head)[:-1]
                + ', "outputs": ['
                + json.dumps(output)[:-1]
                + ', "data": ['
            )
            if images.nbytes > _INLINE_BYTES:
                body_out = await run_in_threadpool(
                    json_body, prefix, images, "]}]}", nested=False
                )
            else:
                body_out = json_body(prefix, images, "]}]}", nested=False)
        except BaseException:
            lease.release()
            raise
        return payload_response(Payload(body_out, "application/json", lease))

    infer_docs = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"example": INFER_EXAMPLE}},
        }
    }

    @router.post(
        "/models/{name}/infer",
        summary="Generate images with the latest task",
        openapi_extra=infer_docs,
    )
    async def infer_latest(request: Request, name: str) -> Response:
        return await infer(request, name, None)

    @router.post(
        "/models/{name}/versions/{version}/infer",
        summary="Generate images with one task",
        openapi_extra=infer_docs,
    )
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await infer(request, name, version)

    return router
