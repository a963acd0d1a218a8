"""The Open Inference Protocol over gRPC (KServe v2's ``GRPCInferenceService``).

``--grpc-port`` serves it beside HTTP, on the same event loop, batcher and
memory budget. The messages are declared here, field by field, as KServe's
``grpc_predict_v2.proto`` publishes them (package ``inference``, same
names, numbers and types), and built at start-up with protobuf's descriptor
API; the service is registered with gRPC's generic handlers. So neither
``protoc`` nor generated code is needed, and clients generated from the
published ``.proto`` (``tritonclient.grpc`` among them) talk to it.

Methods: ``ServerLive``, ``ServerReady``, ``ModelReady``, ``ServerMetadata``,
``ModelMetadata``, ``ModelInfer``. Inputs may come as typed ``contents`` or
as ``raw_input_contents`` (little-endian bytes); the image goes back in
``raw_output_contents``. Errors map to gRPC status codes: a bad request
``INVALID_ARGUMENT``, an unknown model or version ``NOT_FOUND``, a model
that is not ready ``FAILED_PRECONDITION``, too large ``RESOURCE_EXHAUSTED``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from . import __version__
from .errors import InvalidParameterError, ModelNotReadyError, ServeError
from .oip import EXTENSIONS, ModelVersions, model_metadata
from .service import GeneratorService
from .tensors import read_request

SERVICE = "inference.GRPCInferenceService"
_F = descriptor_pb2.FieldDescriptorProto
_STRING, _BOOL, _INT64 = _F.TYPE_STRING, _F.TYPE_BOOL, _F.TYPE_INT64
_ONE, _MANY = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
# Our FP32 and integer inputs, as typed contents: (field, numpy type).
_CONTENTS = {
    "FP32": "fp32_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
}

# (message, [(field, number, type, label, message type or None)]), from the
# protocol's grpc_predict_v2.proto.
_MESSAGES: list[tuple[str, list[tuple]]] = [
    ("ServerLiveRequest", []),
    ("ServerLiveResponse", [("live", 1, _BOOL, _ONE, None)]),
    ("ServerReadyRequest", []),
    ("ServerReadyResponse", [("ready", 1, _BOOL, _ONE, None)]),
    (
        "ModelReadyRequest",
        [("name", 1, _STRING, _ONE, None), ("version", 2, _STRING, _ONE, None)],
    ),
    ("ModelReadyResponse", [("ready", 1, _BOOL, _ONE, None)]),
    ("ServerMetadataRequest", []),
    (
        "ServerMetadataResponse",
        [
            ("name", 1, _STRING, _ONE, None),
            ("version", 2, _STRING, _ONE, None),
            ("extensions", 3, _STRING, _MANY, None),
        ],
    ),
    (
        "ModelMetadataRequest",
        [("name", 1, _STRING, _ONE, None), ("version", 2, _STRING, _ONE, None)],
    ),
    (
        "TensorMetadata",
        [
            ("name", 1, _STRING, _ONE, None),
            ("datatype", 2, _STRING, _ONE, None),
            ("shape", 3, _INT64, _MANY, None),
        ],
    ),
    (
        "ModelMetadataResponse",
        [
            ("name", 1, _STRING, _ONE, None),
            ("versions", 2, _STRING, _MANY, None),
            ("platform", 3, _STRING, _ONE, None),
            ("inputs", 4, _F.TYPE_MESSAGE, _MANY, "TensorMetadata"),
            ("outputs", 5, _F.TYPE_MESSAGE, _MANY, "TensorMetadata"),
        ],
    ),
    (
        "InferTensorContents",
        [
            ("bool_contents", 1, _BOOL, _MANY, None),
            ("int_contents", 2, _F.TYPE_INT32, _MANY, None),
            ("int64_contents", 3, _INT64, _MANY, None),
            ("uint_contents", 4, _F.TYPE_UINT32, _MANY, None),
            ("uint64_contents", 5, _F.TYPE_UINT64, _MANY, None),
            ("fp32_contents", 6, _F.TYPE_FLOAT, _MANY, None),
            ("fp64_contents", 7, _F.TYPE_DOUBLE, _MANY, None),
            ("bytes_contents", 8, _F.TYPE_BYTES, _MANY, None),
        ],
    ),
    (
        "InferInputTensor",
        [
            ("name", 1, _STRING, _ONE, None),
            ("datatype", 2, _STRING, _ONE, None),
            ("shape", 3, _INT64, _MANY, None),
            ("parameters", 4, "map", _MANY, None),
            ("contents", 5, _F.TYPE_MESSAGE, _ONE, "InferTensorContents"),
        ],
    ),
    (
        "InferRequestedOutputTensor",
        [("name", 1, _STRING, _ONE, None), ("parameters", 2, "map", _MANY, None)],
    ),
    (
        "ModelInferRequest",
        [
            ("model_name", 1, _STRING, _ONE, None),
            ("model_version", 2, _STRING, _ONE, None),
            ("id", 3, _STRING, _ONE, None),
            ("parameters", 4, "map", _MANY, None),
            ("inputs", 5, _F.TYPE_MESSAGE, _MANY, "InferInputTensor"),
            ("outputs", 6, _F.TYPE_MESSAGE, _MANY, "InferRequestedOutputTensor"),
            ("raw_input_contents", 7, _F.TYPE_BYTES, _MANY, None),
        ],
    ),
    (
        "InferOutputTensor",
        [
            ("name", 1, _STRING, _ONE, None),
            ("datatype", 2, _STRING, _ONE, None),
            ("shape", 3, _INT64, _MANY, None),
            ("parameters", 4, "map", _MANY, None),
            ("contents", 5, _F.TYPE_MESSAGE, _ONE, "InferTensorContents"),
        ],
    ),
    (
        "ModelInferResponse",
        [
            ("model_name", 1, _STRING, _ONE, None),
            ("model_version", 2, _STRING, _ONE, None),
            ("id", 3, _STRING, _ONE, None),
            ("parameters", 4, "map", _MANY, None),
            ("outputs", 5, _F.TYPE_MESSAGE, _MANY, "InferOutputTensor"),
            ("raw_output_contents", 6, _F.TYPE_BYTES, _MANY, None),
        ],
    ),
]
_PARAMETER = [  # InferParameter's oneof parameter_choice
    ("bool_param", 1, _BOOL),
    ("int64_param", 2, _INT64),
    ("string_param", 3, _STRING),
    ("double_param", 4, _F.TYPE_DOUBLE),
    ("uint64_param", 5, _F.TYPE_UINT64),
]
_METHODS = {
    "ServerLive": ("ServerLiveRequest", "ServerLiveResponse"),
    "ServerReady": ("ServerReadyRequest", "ServerReadyResponse"),
    "ModelReady": ("ModelReadyRequest", "ModelReadyResponse"),
    "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse"),
    "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse"),
    "ModelInfer": ("ModelInferRequest", "ModelInferResponse"),
}


def messages() -> dict[str, type]:
    """The protocol's message classes, built from the declarations above."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="keras_mergan/grpc_predict_v2.proto", package="inference", syntax="proto3"
    )
    parameter = proto.message_type.add(name="InferParameter")
    parameter.oneof_decl.add(name="parameter_choice")
    for name, number, kind in _PARAMETER:
        parameter.field.add(
            name=name, number=number, type=kind, label=_ONE, oneof_index=0
        )
    for message, fields in _MESSAGES:
        declared = proto.message_type.add(name=message)
        for name, number, kind, label, type_name in fields:
            if kind == "map":  # map<string, InferParameter>: a nested entry
                entry = declared.nested_type.add(name="ParametersEntry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=_STRING, label=_ONE)
                entry.field.add(
                    name="value",
                    number=2,
                    type=_F.TYPE_MESSAGE,
                    label=_ONE,
                    type_name=".inference.InferParameter",
                )
                declared.field.add(
                    name=name,
                    number=number,
                    type=_F.TYPE_MESSAGE,
                    label=_MANY,
                    type_name=f".inference.{message}.ParametersEntry",
                )
                continue
            field = declared.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".inference.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    names = ["InferParameter", *(message for message, _ in _MESSAGES)]
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"inference.{name}")
        )
        for name in names
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

    Example:

    >>> # server.add_generic_rpc_handlers([InferenceService(...).handler()])
    """

    def __init__(self, service: GeneratorService, versions: ModelVersions) -> None:
        self.service = service
        self.versions = versions
        self.types = messages()

    def handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        for method, (request, response) in _METHODS.items():
            handlers[method] = grpc.unary_unary_rpc_method_handler(
                self._guarded(getattr(self, method)),
                request_deserializer=self.types[request].FromString,
                response_serializer=self.types[response].SerializeToString,
            )
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _guarded(self, method: Callable) -> Callable:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await method(request)
            except ServeError as error:
                await context.abort(_status(error), error.message)

        return call

    async def ServerLive(self, request: Any) -> Any:  # noqa: N802 (the protocol's)
        return self.types["ServerLiveResponse"](live=True)

    async def ServerReady(self, request: Any) -> Any:  # noqa: N802
        ready = self.service.health()["status"] == "ok"
        return self.types["ServerReadyResponse"](ready=ready)

    async def ModelReady(self, request: Any) -> Any:  # noqa: N802
        self.versions.check_name(request.name)
        try:
            self.versions.sampler(request.version or None)
        except ModelNotReadyError:
            return self.types["ModelReadyResponse"](ready=False)
        return self.types["ModelReadyResponse"](ready=not self.service.draining)

    async def ServerMetadata(self, request: Any) -> Any:  # noqa: N802
        return self.types["ServerMetadataResponse"](
            name="keras-mergan", version=__version__, extensions=EXTENSIONS
        )

    async def ModelMetadata(self, request: Any) -> Any:  # noqa: N802
        self.versions.check_name(request.name)
        sampler = self.versions.sampler(request.version or None)
        versions = [sampler.task] if request.version else self.versions.loadable()
        metadata = model_metadata(request.name, sampler, versions)
        tensor = self.types["TensorMetadata"]
        return self.types["ModelMetadataResponse"](
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=[tensor(**spec) for spec in metadata["inputs"]],
            outputs=[tensor(**spec) for spec in metadata["outputs"]],
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
            output = self.types["InferOutputTensor"](
                name="image", datatype="FP32", shape=list(images.shape)
            )
            return self.types["ModelInferResponse"](
                model_name=request.model_name,
                model_version=str(sampler.task),
                id=inputs.request_id or "",
                outputs=[output],
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
