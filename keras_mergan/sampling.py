"""Sample grids: rows are categories, columns a fixed set of latent vectors.

A method that ignores the class it is asked for (LT-GANs) gets one block of
distinct latent vectors instead (`unconditional_grid`): no row is a class.
"""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from keras_mergan.image_grid import make_grid, to_uint8
from keras_mergan.run_folder import atomic_open

__all__ = [
    "draws_classes",
    "fixed_latents",
    "grid_image",
    "sample_grid",
    "save_grid",
    "to_uint8",
    "unconditional_grid",
]


def fixed_latents(n: int, latent_dim: int, seed: int = 0) -> np.ndarray:
    """The same z ~ N(0, I) for every task, so grids are comparable across tasks."""
    return (
        np.random.default_rng(seed).standard_normal((n, latent_dim)).astype("float32")
    )


def sample_grid(gan, classes: Sequence[int], z: np.ndarray) -> np.ndarray:
    """uint8 images [len(classes), len(z), H, W, C]: row c is class c for every z."""
    labels = np.repeat(np.asarray(classes, "int32"), len(z))
    latents = np.tile(z, (len(classes), 1))
    images = to_uint8(gan.generate(latents, labels))
    return images.reshape((len(classes), len(z)) + images.shape[1:])


def unconditional_grid(gan, z: np.ndarray, columns: int) -> np.ndarray:
    """uint8 images [len(z) // columns, columns, H, W, C], one per latent
    vector, of a generator that ignores labels: a block of samples whose
    rows are no class.

    Example:

    >>> # unconditional_grid(ltgan, fixed_latents(3 * 8, 128), 8).shape[:2]
    >>> # (3, 8)
    """
    images = to_uint8(gan.generate(z, np.zeros(len(z), "int32")))
    return images.reshape((len(z) // columns, columns) + images.shape[1:])


def draws_classes(method: str) -> bool:
    """Whether a run's method draws the class it is asked for (every
    method but LT-GANs; a method this package does not know is assumed to).

    Example:

    >>> draws_classes("ltgan"), draws_classes("dgr")
    (False, True)
    """
    from keras_mergan.methods import METHODS

    return method not in METHODS or METHODS[method].conditional


def grid_image(
    grid: np.ndarray, padding: int = 2, row_labels: Sequence[str] | None = None
) -> Image.Image:
    """A [rows, cols, H, W, C] uint8 array tiled into one Pillow image.

    Cells are separated by gray lines; `row_labels` name the rows in a left
    margin (`keras_mergan.image_grid.make_grid`).
    """
    rows, cols, height, width, channels = grid.shape
    canvas = make_grid(
        grid.reshape(rows * cols, height, width, channels),
        columns=cols,
        padding=padding,
        row_labels=row_labels,
    )
    return Image.fromarray(canvas[..., 0] if channels == 1 else canvas)


def save_grid(
    grid: np.ndarray,
    path: str | os.PathLike,
    padding: int = 2,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Write a grid PNG atomically: a crash never leaves a half-written file."""
    with atomic_open(path, "wb") as f:
        grid_image(grid, padding, row_labels).save(f, format="PNG")
    return Path(path)
