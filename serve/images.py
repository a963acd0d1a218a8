"""Turning generator output into uint8 images, grids and PNG bytes (numpy + Pillow)."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image


def to_uint8(
    images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)
) -> np.ndarray:
    """Map ``value_range`` linearly onto 0..255, rounding and clipping."""
    low, high = value_range
    scaled = (np.asarray(images, np.float32) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def make_grid(
    images: np.ndarray,
    columns: int | None = None,
    padding: int = 2,
    scale: int = 1,
    background: int = 0,
) -> np.ndarray:
    """Tile uint8 images ``[n, H, W, C]`` into one ``[rows*H', cols*W', C]`` array.

    Each image is enlarged ``scale`` times (nearest neighbour, so pixels stay
    sharp) and separated by ``padding`` pixels of ``background``. The
    default is a near-square layout.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(
            f"expected images [n, H, W, C] with n >= 1, got {images.shape}"
        )
    n, height, width, channels = images.shape
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
        height, width = height * scale, width * scale
    columns = max(1, min(n, columns or math.ceil(math.sqrt(n))))
    rows = math.ceil(n / columns)
    grid = np.full(
        (
            rows * height + (rows + 1) * padding,
            columns * width + (columns + 1) * padding,
            channels,
        ),
        background,
        np.uint8,
    )
    for i in range(n):
        row, column = divmod(i, columns)
        top = padding + row * (height + padding)
        left = padding + column * (width + padding)
        grid[top : top + height, left : left + width] = images[i]
    return grid


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 ``[H, W, C]`` array (C = 1, 3 or 4) as PNG."""
    image = np.asarray(image, np.uint8)
    channels = image.shape[-1]
    if image.ndim != 3 or channels not in (1, 3, 4):
        raise ValueError(f"cannot encode an array of shape {image.shape} as PNG")
    # Pillow infers L / RGB / RGBA from the uint8 array's shape.
    array = np.ascontiguousarray(image[..., 0] if channels == 1 else image)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
