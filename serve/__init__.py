"""Serve exported generators with onnxruntime, numpy and Pillow only.

Nothing here imports Keras, TensorFlow, JAX or torch, so a serving machine
needs none of them.

Python::

    from serve import Sampler
    sampler = Sampler("runs/digits_ra/export")          # latest task
    images = sampler.sample("7", n=16, seed=0)           # uint8 [16, 32, 32, 1]

Command line::

    python -m serve.cli EXPORT_DIR --category 7 --n 64 --seed 0 --out grid.png
    python -m serve EXPORT_DIR --port 8000               # HTTP + gallery at /
"""

from serve.errors import (
    CategoryNotLearnedError,
    ExportIntegrityError,
    InvalidParameterError,
    ServeError,
    UnknownCategoryError,
    UnknownTaskError,
)
from serve.images import make_grid, png_bytes, to_uint8
from serve.sampler import ExportDirectory, Sampler

__all__ = [
    "CategoryNotLearnedError",
    "ExportDirectory",
    "ExportIntegrityError",
    "InvalidParameterError",
    "Sampler",
    "ServeError",
    "UnknownCategoryError",
    "UnknownTaskError",
    "make_grid",
    "png_bytes",
    "to_uint8",
]
