"""The Open Inference Protocol over gRPC (KServe v2's ``GRPCInferenceService``).

``--grpc-port`` serves it beside HTTP, on the same event loop, batcher and
memory budget. The protocol is the shipped ``grpc_predict_v2.proto``
(package ``inference``; the protocol's names, field numbers and types), which
protoc, from ``grpcio-tools``, compiles when this module is imported. The
message classes come from that compiled descriptor, in a descriptor pool of
their own: another copy of the protocol in the same process (tritonclient's,
KServe's) does not clash with it. The service's methods are the ones the
``.proto`` declares, registered with gRPC's generic handlers, so clients
generated from the published ``.proto`` (``tritonclient.grpc`` among them)
talk to it.

Methods: ``ServerLive``, ``ServerReady``, ``ModelReady``, ``ServerMetadata``,
``ModelMetadata``, ``ModelInfer``. Inputs may come as typed ``contents`` or
as ``raw_input_contents`` (little-endian bytes); the image goes back in
``raw_output_contents``. Errors map to gRPC status codes: a bad request
``INVALID_ARGUMENT``, an unknown model or version ``NOT_FOUND``, a model
that is not ready ``FAILED_PRECONDITION``, too large ``RESOURCE_EXHAUSTED``.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from google.protobuf.message_factory import GetMessageClass

from . import __version__
from .errors import InvalidParameterError, ModelNotReadyError, ServeError
from .oip import EXTENSIONS, ModelVersions, model_metadata
from .service import GeneratorService
from .tensors import read_request

PROTO = Path(__file__).with_name("grpc_predict_v2.proto")
# The typed-contents field of each input datatype the model takes.
_CONTENTS = {
    "FP32": "fp32_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
}


def compile_proto(proto: Path = PROTO) -> descriptor.FileDescriptor:
    """``proto`` compiled by protoc, in a descriptor pool of its own.

    protoc (``grpc_tools.protoc``) runs in a child process: it links its own
    copy of the protobuf C++ library, which crashes a process that has
    TensorFlow's loaded (one that trained or exported a model before serving).

    Example:

    >>> compile_proto().services_by_name["GRPCInferenceService"].full_name
    'inference.GRPCInferenceService'
    """
    with tempfile.TemporaryDirectory() as folder:
        compiled = Path(folder) / "descriptor.pb"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"--proto_path={proto.parent}",
                f"--descriptor_set_out={compiled}",
                proto.name,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"protoc could not compile {proto.name}: {result.stderr.strip()}"
            )
        (declared,) = descriptor_pb2.FileDescriptorSet.FromString(
            compiled.read_bytes()
        ).file
    pool = descriptor_pool.DescriptorPool()
    return pool.AddSerializedFile(declared.SerializeToString())


PROTOCOL = compile_proto()
SERVICE = PROTOCOL.services_by_name["GRPCInferenceService"]
MESSAGES: dict[str, type] = {
    name: GetMessageClass(message)
    for name, message in PROTOCOL.message_types_by_name.items()
}


def _status(error: ServeError) -> grpc.StatusCode:
    if isinstance(error, ModelNotReadyError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return {
        404: grpc.StatusCode.NOT_FOUND,
        413: grpc.StatusCode.RESOURCE_EXHAUSTED,
        503: grpc.StatusCode.UNAVAILABLE,
    }.get(error.status, grpc.StatusCode.INVALID_ARGUMENT)


def _as_payload(request: Any) -> tuple[dict, bytes]:
    """The request as the JSON form's payload and binary tail (one validation)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidParameterError(
            "give raw_input_contents for every input, or for none"
        )
    inputs = []
    for index, tensor in enumerate(request.inputs):
        spec: dict[str, Any] = {
            "name": tensor.name,
            "shape": list(tensor.shape),
            "datatype": tensor.datatype,
        }
        if raw:
            spec["parameters"] = {"binary_data_size": len(raw[index])}
        else:
            field = _CONTENTS.get(tensor.datatype)
            spec["data"] = list(getattr(tensor.contents, field)) if field else None
        inputs.append(spec)
    payload: dict[str, Any] = {"inputs": inputs}
    if request.id:
        payload["id"] = request.id
    if request.outputs:
        payload["outputs"] = [{"name": output.name} for output in request.outputs]
    return payload, b"".join(raw)


class InferenceService:
    """The gRPC methods, on the service and model the HTTP routes serve.

    One method of this class answers each RPC that ``grpc_predict_v2.proto``
    declares.

    Example:

    >>> # server.add_generic_rpc_handlers([InferenceService(...).handler()])
    """

    def __init__(self, service: GeneratorService, versions: ModelVersions) -> None:
        self.service = service
        self.versions = versions

    def handler(self) -> grpc.GenericRpcHandler:
        """Every RPC the ``.proto`` declares, with its message classes."""
        handlers = {
            method.name: grpc.unary_unary_rpc_method_handler(
                self._guarded(getattr(self, method.name)),
                request_deserializer=GetMessageClass(method.input_type).FromString,
                response_serializer=GetMessageClass(
                    method.output_type
                ).SerializeToString,
            )
            for method in SERVICE.methods
        }
        return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)

    def _guarded(self, method: Callable) -> Callable:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await method(request)
            except ServeError as error:
                await context.abort(_status(error), error.message)

        return call

    async def ServerLive(self, request: Any) -> Any:  # noqa: N802 (the protocol's)
        return MESSAGES["ServerLiveResponse"](live=True)

    async def ServerReady(self, request: Any) -> Any:  # noqa: N802
        ready = self.service.health()["status"] == "ok"
        return MESSAGES["ServerReadyResponse"](ready=ready)

    async def ModelReady(self, request: Any) -> Any:  # noqa: N802
        self.versions.check_name(request.name)
        try:
            self.versions.sampler(request.version or None)
        except ModelNotReadyError:
            return MESSAGES["ModelReadyResponse"](ready=False)
        return MESSAGES["ModelReadyResponse"](ready=not self.service.draining)

    async def ServerMetadata(self, request: Any) -> Any:  # noqa: N802
        return MESSAGES["ServerMetadataResponse"](
            name="keras-mergan", version=__version__, extensions=EXTENSIONS
        )

    async def ModelMetadata(self, request: Any) -> Any:  # noqa: N802
        self.versions.check_name(request.name)
        sampler = self.versions.sampler(request.version or None)
        versions = [sampler.task] if request.version else self.versions.loadable()
        metadata = model_metadata(request.name, sampler, versions)
        # The tensors are dicts of TensorMetadata's fields.
        return MESSAGES["ModelMetadataResponse"](
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=metadata["inputs"],
            outputs=metadata["outputs"],
        )

    async def ModelInfer(self, request: Any) -> Any:  # noqa: N802
        self.versions.check_name(request.model_name)
        sampler = self.versions.sampler(request.model_version or None)
        payload, binary = _as_payload(request)
        inputs = read_request(
            payload,
            binary,
            sampler.latent_dim,
            np.asarray(sampler.seen_classes),
            sampler.task,
            self.service.max_samples,
        )
        values = len(inputs.z) * math.prod(sampler.image_shape)
        lease = await self.service.budget.acquire(values * 4 * 2)
        try:
            images = await self.service.generate(sampler, inputs.z, inputs.labels)
            return MESSAGES["ModelInferResponse"](
                model_name=request.model_name,
                model_version=str(sampler.task),
                id=inputs.request_id or "",
                outputs=[{"name": "image", "datatype": "FP32", "shape": images.shape}],
                raw_output_contents=[np.asarray(images, "<f4").tobytes()],
            )
        finally:
            lease.release()


async def start_grpc(
    service: GeneratorService,
    versions: ModelVersions,
    address: str,
    max_message: int,
) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC service on ``address`` (``host:port``); ``(server, port)``."""
    options = [
        ("grpc.max_receive_message_length", max_message),
        ("grpc.max_send_message_length", -1),
    ]
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers([InferenceService(service, versions).handler()])
    port = server.add_insecure_port(address)
    await server.start()
    return server, port
