"""Sample grids: rows are categories, columns a fixed set of latent vectors."""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from keras_mergan.run_folder import atomic_open


def fixed_latents(n: int, latent_dim: int, seed: int = 0) -> np.ndarray:
    """The same z ~ N(0, I) for every task, so grids are comparable across tasks."""
    return (
        np.random.default_rng(seed).standard_normal((n, latent_dim)).astype("float32")
    )


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] floats to [0, 255] bytes."""
    return np.clip(np.round((np.asarray(images) + 1.0) * 127.5), 0, 255).astype("uint8")


def sample_grid(gan, classes: Sequence[int], z: np.ndarray) -> np.ndarray:
    """uint8 images [len(classes), len(z), H, W, C]: row c is class c for every z."""
    labels = np.repeat(np.asarray(classes, "int32"), len(z))
    latents = np.tile(z, (len(classes), 1))
    images = to_uint8(gan.generate(latents, labels))
    return images.reshape((len(classes), len(z)) + images.shape[1:])


def grid_image(grid: np.ndarray, padding: int = 2) -> Image.Image:
    """A [rows, cols, H, W, C] uint8 array tiled into one Pillow image."""
    rows, cols, height, width, channels = grid.shape
    canvas = np.zeros(
        (
            rows * (height + padding) + padding,
            cols * (width + padding) + padding,
            channels,
        ),
        "uint8",
    )
    for r in range(rows):
        for c in range(cols):
            top = padding + r * (height + padding)
            left = padding + c * (width + padding)
            canvas[top : top + height, left : left + width] = grid[r, c]
    return Image.fromarray(canvas[..., 0] if channels == 1 else canvas)


def save_grid(grid: np.ndarray, path: str | os.PathLike, padding: int = 2) -> Path:
    """Write a grid PNG atomically: a crash never leaves a half-written file."""
    with atomic_open(path, "wb") as f:
        grid_image(grid, padding).save(f, format="PNG")
    return Path(path)
