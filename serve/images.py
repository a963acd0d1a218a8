"""PNG bytes of image arrays (numpy + Pillow).

`to_uint8` and `make_grid` are the package's one grid layout
(`keras_mergan.image_grid`, Keras-free), shared with training's grids.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from keras_mergan.image_grid import make_grid, to_uint8

__all__ = ["make_grid", "png_bytes", "to_uint8"]


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
