"""The Open Inference Protocol v2 (KServe, Triton, MLServer), REST with JSON tensors.

One model, named ``generator`` unless the server was told otherwise, whose
versions are the exported tasks::

    GET  /v2                                    server metadata
    GET  /v2/health/live | /v2/health/ready     ready: every task loads
    GET  /v2/models/{name}[/versions/{task}]    model metadata
    GET  /v2/models/{name}[/versions/{task}]/ready
    POST /v2/models/{name}[/versions/{task}]/infer
    GET  /v2/models/{name}/config               model configuration (Triton's)
    GET  /v2/models[/{name}[/versions/{task}]]/stats   statistics (Triton's)

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

``data`` may be flat (row-major) or nested. Tensors may also travel as
Triton's binary tensor data (:mod:`.tensors`), as ``tritonclient`` sends
them by default. Without a version, inference uses the newest version that
is ready. Errors are ``{"error": "..."}``: a 4xx status for a bad request
and for a model or version that is not ready (as the protocol says), 503
(with ``Retry-After``) when the server is overloaded.
"""

from __future__ import annotations

import json
import math
import re
import time

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from . import __version__
from .admission import AdmissionLimits, read_body
from .errors import (
    ExportIntegrityError,
    InvalidParameterError,
    ModelNotReadyError,
    UnknownModelError,
    UnknownTaskError,
)
from .responses import GuardedRoute, json_response, payload_response
from .sampler import Sampler
from .service import GeneratorService, Payload, json_body, json_held
from .stats import ModelStats
from .tensors import (
    HEADER_LENGTH,
    binary_response,
    read_request,
    response_head,
    split_body,
)

PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data", "statistics", "model_configuration"]
# Python objects per byte of JSON a parsed request holds at most: "0," is
# two bytes and becomes a float (24 bytes) in a list slot (8), then numpy's
# float64 copy (8).
_PARSE_FACTOR = 20
_INLINE_BYTES = 64 * 2**10
# ASCII digits only: \d would also take other scripts' digits ("１").
_VERSION = re.compile(r"^[0-9]{1,6}$")
_TRITON_TYPES = {"float32": "TYPE_FP32", "int32": "TYPE_INT32", "int64": "TYPE_INT64"}

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


def model_config(name: str, sampler: Sampler, max_batch: int, max_wait: float) -> dict:
    """Triton's model configuration, as JSON, of the model this server serves.

    The fields and values of the ``config.pbtxt`` that the Triton export
    writes for the same generator (``keras_mergan.export.triton``), with
    this server's batching in place of the export's defaults (the same
    unless the server was told otherwise): a Triton client sees one model
    whichever server it talks to.
    """
    label = _TRITON_TYPES[sampler.manifest["inputs"]["label"]["dtype"]]
    return {
        "name": name,
        "platform": PLATFORM,
        "max_batch_size": max_batch,
        "version_policy": {"all": {}},
        "input": [
            {"name": "z", "data_type": "TYPE_FP32", "dims": [sampler.latent_dim]},
            {
                "name": "label",
                "data_type": label,
                "dims": [1],
                "reshape": {"shape": []},
            },
        ],
        "output": [
            {
                "name": "image",
                "data_type": "TYPE_FP32",
                "dims": list(sampler.image_shape),
            }
        ],
        "dynamic_batching": {"max_queue_delay_microseconds": round(max_wait * 1e6)},
    }


class ModelVersions:
    """The model's versions (tasks) as the protocol names and picks them.

    Shared by the HTTP routes and the gRPC service.

    Example:

    >>> # ModelVersions(service, "generator").sampler(None)  # newest ready
    """

    def __init__(self, service: GeneratorService, model_name: str) -> None:
        self.exports = service.exports
        self.model_name = model_name

    def check_name(self, name: str) -> None:
        if name != self.model_name:
            raise UnknownModelError(
                f"unknown model {name[:64]!r}; this server has {self.model_name!r}"
            )

    def task_number(self, version: str) -> int:
        if not _VERSION.match(version):
            raise _bad(f"version must be a task number, got {version[:64]!r}")
        return int(version)

    def loadable(self) -> list[int]:
        return [task for task, error in self.exports.status().items() if error is None]

    def newest_ready(self) -> Sampler:
        """The newest version that loads, as Triton picks for an unversioned call."""
        try:  # the common case in one directory scan
            return self.exports.sampler(None)
        except (ExportIntegrityError, UnknownTaskError):
            pass
        for task in reversed(self.exports.tasks()):
            try:
                return self.exports.sampler(task)
            except (ExportIntegrityError, UnknownTaskError):
                continue
        raise ModelNotReadyError(f"no version of model {self.model_name!r} is ready")

    def sampler(self, version: str | None) -> Sampler:
        """A version's sampler (``None``: the newest ready); 400 if it cannot load."""
        if version is None:
            return self.newest_ready()
        task = self.task_number(version)
        try:
            return self.exports.sampler(task)
        except ExportIntegrityError as error:
            raise ModelNotReadyError(
                f"version {task} of model {self.model_name!r} is not ready: "
                f"{error.message}"
            ) from None


def oip_router(
    service: GeneratorService,
    model_name: str,
    max_body: int,
    admission: AdmissionLimits | None = None,
    stats: ModelStats | None = None,
) -> APIRouter:
    """The ``/v2`` routes for ``service``'s tasks as versions of ``model_name``.

    ``max_body`` is the request body limit; ``admission`` how fast a body
    must arrive; ``stats`` collects the statistics extension's counters.

    Example:

    >>> # app.include_router(oip_router(service, "generator", 4 * 2**20))
    """
    admission = admission or AdmissionLimits()
    stats = stats or ModelStats()
    router = APIRouter(
        prefix="/v2", route_class=GuardedRoute, tags=["Open Inference Protocol v2"]
    )
    exports = service.exports

    versions = ModelVersions(service, model_name)
    check_name, task_number = versions.check_name, versions.task_number
    loadable, newest_ready = versions.loadable, versions.newest_ready
    sampler_of = versions.sampler

    @router.get("", summary="Server metadata")
    async def server_metadata() -> Response:
        return json_response(
            {"name": "keras-mergan", "version": __version__, "extensions": EXTENSIONS}
        )

    @router.get("/health/live", summary="The server answers")
    async def live() -> Response:
        return json_response({"live": True})

    @router.get("/health/ready", summary="Every task loads (400 otherwise)")
    async def ready() -> Response:
        health = service.health()
        ok = health["status"] == "ok"
        if ok:
            return json_response({"ready": True})
        reason = health.get("error") or f"versions {health['broken']} cannot load"
        return json_response({"ready": False, "error": f"not ready: {reason}"}, 400)

    # Before /models/{name}, which would take "stats" for a model name.
    @router.get("/models/stats", summary="Statistics of every version (Triton)")
    async def all_stats() -> Response:
        return json_response(stats.report(model_name, exports.tasks()))

    @router.get("/models/{name}", summary="Model metadata (newest ready version)")
    async def metadata(name: str) -> Response:
        check_name(name)
        versions = loadable()
        if not versions:
            raise ModelNotReadyError(f"no version of model {name!r} is ready")
        return json_response(
            model_metadata(name, exports.sampler(versions[-1]), versions)
        )

    @router.get("/models/{name}/versions/{version}", summary="Model metadata")
    async def version_metadata(name: str, version: str) -> Response:
        check_name(name)
        sampler = sampler_of(version)
        return json_response(model_metadata(name, sampler, [sampler.task]))

    @router.get("/models/{name}/config", summary="Model configuration (Triton)")
    async def config(name: str) -> Response:
        check_name(name)
        sampler = newest_ready()
        return json_response(
            model_config(name, sampler, service.max_batch, service.max_wait)
        )

    async def model_ready(name: str, version: str | None) -> Response:
        check_name(name)
        if service.draining:
            error = "the server is shutting down"
            return json_response({"name": name, "ready": False, "error": error}, 400)
        try:
            sampler_of(version)
        except ModelNotReadyError as error:
            body = {"name": name, "ready": False, "error": error.message}
            return json_response(body, 400)
        return json_response({"name": name, "ready": True})

    @router.get("/models/{name}/ready", summary="A version is ready (400 if none)")
    async def latest_ready(name: str) -> Response:
        return await model_ready(name, None)

    @router.get(
        "/models/{name}/versions/{version}/ready", summary="The version is ready"
    )
    async def version_ready(name: str, version: str) -> Response:
        return await model_ready(name, version)

    @router.get("/models/{name}/stats", summary="Statistics of every version")
    async def model_stats(name: str) -> Response:
        check_name(name)
        return json_response(stats.report(name, exports.tasks()))

    @router.get(
        "/models/{name}/versions/{version}/stats", summary="Statistics of a version"
    )
    async def version_stats(name: str, version: str) -> Response:
        check_name(name)
        task = task_number(version)
        exports.resolve_task(task)  # 404 for a version that does not exist
        return json_response(stats.report(name, [task]))

    async def infer(request: Request, name: str, version: str | None) -> Response:
        check_name(name)
        sampler = sampler_of(version)
        # The whole body first, within its time allowance: a slow client
        # holds nothing that others need while it sends.
        body = await read_body(request, admission, max_body)
        started = time.perf_counter()
        header = request.headers.get(HEADER_LENGTH)
        json_bytes = len(body)
        if header is not None and header.strip().isdigit():
            json_bytes = min(json_bytes, int(header.strip()))
        lease = await service.budget.acquire(len(body) + json_bytes * _PARSE_FACTOR)
        seconds: dict[str, float] = {}
        ok = False
        try:
            try:
                if len(body) > _INLINE_BYTES:
                    inputs = await run_in_threadpool(
                        _decode_sync, body, header, sampler, service.max_samples
                    )
                else:
                    inputs = _decode_sync(body, header, sampler, service.max_samples)
                del body  # what the lease accounted for goes with it
            finally:
                lease.release()
            decoded = time.perf_counter()
            seconds["compute_input"] = decoded - started
            response = await _generate(sampler, inputs, name, seconds)
            # What is left after decoding, queueing and the generator.
            waited = seconds.get("queue", 0) + seconds.get("compute_infer", 0)
            seconds["compute_output"] = time.perf_counter() - decoded - waited
            ok = True
            return response
        finally:
            seconds["total"] = time.perf_counter() - started
            rows = len(inputs.z) if ok else 0
            stats.request(sampler.task, rows=rows, ok=ok, seconds=seconds)

    async def _generate(sampler: Sampler, inputs, name: str, seconds: dict) -> Response:
        pixels = math.prod(sampler.image_shape)
        values = len(inputs.z) * pixels
        held = (
            values * 4
            if inputs.binary
            else json_held(values, pixels, "float32", flat=True)
        )
        lease = await service.budget.acquire(values * 4 + held)
        try:
            images = await service.generate(sampler, inputs.z, inputs.labels, seconds)
            head = response_head(name, sampler.task, inputs.request_id, images)
            if inputs.binary:
                body_out, json_length = binary_response(head, images)
                payload = Payload(
                    body_out,
                    "application/octet-stream",
                    lease,
                    {"Inference-Header-Content-Length": str(json_length)},
                )
                return payload_response(payload)
            text = json.dumps(head)
            prefix = text[: -len("}]}")] + ', "data": ['
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
        summary="Generate images with the newest ready version",
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


def _decode_sync(body: bytes, header: str | None, sampler: Sampler, max_samples: int):
    payload, binary = split_body(body, header)
    return read_request(
        payload,
        binary,
        sampler.latent_dim,
        np.asarray(sampler.seen_classes),
        sampler.task,
        max_samples,
    )
