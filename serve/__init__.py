"""Serve exported generators with onnxruntime, numpy and Pillow.

Nothing here imports Keras, TensorFlow, JAX or torch, so a serving machine
needs none of them; the HTTP server adds FastAPI and uvicorn.

Python::

    from . import Sampler
    sampler = Sampler("runs/digits_ra/export")          # latest task
    images = sampler.sample("7", n=16, seed=0)           # uint8 [16, 32, 32, 1]

Command line::

    keras-mergan sample EXPORT_DIR --category 7 --n 64 --seed 0 --out grid.png
    keras-mergan serve EXPORT_DIR --port 8000          # HTTP + gallery at /

The HTTP server (:mod:`.app`, FastAPI on uvicorn) also speaks the Open
Inference Protocol v2 (:mod:`.oip`, JSON or Triton's binary tensors) and
exports Prometheus metrics (:mod:`.observe`). With ``--grpc-port`` it serves
the protocol over gRPC too (:mod:`.grpc_service`), as declared by the
shipped ``grpc_predict_v2.proto``, which protoc (``grpcio-tools``) compiles
when that service starts. Importing this package imports neither the HTTP
stack nor gRPC, and HTTP alone never imports gRPC.
"""

from importlib.metadata import PackageNotFoundError, version

from .errors import (
    CategoryNotLearnedError,
    ExportIntegrityError,
    InvalidParameterError,
    PayloadTooLargeError,
    ServeError,
    UnknownCategoryError,
    UnknownModelError,
    UnknownTaskError,
)
from .images import make_grid, png_bytes, to_uint8
from .sampler import ExportDirectory, Sampler

try:
    __version__ = version("keras-mergan")
except PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "CategoryNotLearnedError",
    "ExportDirectory",
    "ExportIntegrityError",
    "InvalidParameterError",
    "PayloadTooLargeError",
    "Sampler",
    "ServeError",
    "UnknownCategoryError",
    "UnknownModelError",
    "UnknownTaskError",
    "make_grid",
    "png_bytes",
    "to_uint8",
]
