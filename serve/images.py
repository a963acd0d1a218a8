"""PNG bytes of image arrays, and image files (numpy + Pillow).

`to_uint8` and `make_grid` are the package's one grid layout
(`keras_mergan.image_grid`, Keras-free), shared with training's grids.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from keras_mergan.image_grid import make_grid, to_uint8

__all__ = ["image_format", "make_grid", "png_bytes", "save_image", "to_uint8"]


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 ``[H, W, C]`` array (C = 1, 3 or 4) as PNG."""
    buffer = io.BytesIO()
    _pillow_image(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def image_format(path: str | os.PathLike) -> str:
    """Pillow's name of the format that `path`'s suffix names.

    Raises:
        ValueError: no format Pillow writes has that suffix.

    Example:

    >>> image_format("grid.jpg"), image_format("grid.PNG")
    ('JPEG', 'PNG')
    """
    suffix = Path(path).suffix.lower()
    format = Image.registered_extensions().get(suffix)
    if format is None or format not in Image.SAVE:
        raise ValueError(
            f"no image format is named by {suffix or 'a name without a suffix'}: "
            "end it with .png, .jpg, .webp, ..."
        )
    return format


def save_image(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 ``[H, W, C]`` array in the format `path`'s suffix names
    (`image_format`).

    Example:

    >>> # save_image(make_grid(images), "grid.jpg")  # a JPEG
    """
    _pillow_image(image).save(path, format=image_format(path))
    return Path(path)


def _pillow_image(image: np.ndarray) -> Image.Image:
    image = np.asarray(image, np.uint8)
    channels = image.shape[-1]
    if image.ndim != 3 or channels not in (1, 3, 4):
        raise ValueError(f"cannot encode an array of shape {image.shape}")
    # Pillow infers L / RGB / RGBA from the uint8 array's shape.
    return Image.fromarray(
        np.ascontiguousarray(image[..., 0] if channels == 1 else image)
    )
