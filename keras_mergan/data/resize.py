"""Image resizing, channel conversion and scaling shared by every source.

Images are center-cropped to a square and resized with Pillow's bilinear
filter (antialiased when shrinking). Array sources are resized in float
mode ("F"), so their pixels are not rounded back to bytes before scaling.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image


@functools.cache
def decoding_threads() -> ThreadPoolExecutor:
    """Threads for Pillow work: it releases the GIL while it decodes and resizes."""
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="decode")


def center_crop_box(h: int, w: int) -> tuple[int, int, int]:
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def resize_batch(x: np.ndarray, size: int) -> np.ndarray:
    """Center-crop ``[N, H, W, C]`` uint8 to square and bilinear-resize: float32."""
    n, h, w, c = x.shape
    top, left, side = center_crop_box(h, w)
    x = x[:, top : top + side, left : left + side, :]
    if side == size:
        return x.astype(np.float32)
    out = np.empty((n, size, size, c), np.float32)

    def resize(i: int) -> None:
        for k in range(c):
            image = Image.fromarray(x[i, :, :, k].astype(np.float32), "F")
            resized = image.resize((size, size), Image.Resampling.BILINEAR)
            out[i, :, :, k] = np.asarray(resized)

    for _ in decoding_threads().map(resize, range(n)):
        pass
    return out


def convert_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    c = x.shape[-1]
    if channels is None or channels == c:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    # RGB -> luminance, ITU-R 601-2 (as Pillow's convert("L"))
    lum = np.asarray([0.299, 0.587, 0.114], np.float32)
    return (x @ lum)[..., None].astype(np.float32)


def to_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    x /= 127.5
    x -= 1.0
    np.clip(x, -1.0, 1.0, out=x)
    return x
