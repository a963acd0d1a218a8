"""Image files decoded on demand: the streamed form of an image folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DatasetError
from .resize import center_crop_box, decoding_threads, to_float


class ImageFiles:
    """Image files read as a float32 array ``[N, S, S, C]`` in ``[-1, 1]``.

    Nothing is decoded until the object is indexed; then the selected files
    are decoded, center-cropped and resized (as :func:`load_dataset` does)
    in a pool of threads, one per CPU, since Pillow releases the GIL while it
    decodes and resizes. Indexing takes what NumPy's first axis takes: an
    int, a slice, an int array or a boolean mask. Handed to `TaskStream`
    with ``workers > 1``, batches are decoded ahead of the training step.

    Args:
        paths: the image files, one per row.
        image_size: side of the square images.
        channels: 1 (grayscale) or 3 (RGB).

    Example:
        >>> files = ImageFiles(["a.png", "b.jpg"], image_size=64, channels=3)
        >>> files.shape
        (2, 64, 64, 3)
        >>> # files[[1]] decodes b.jpg: float32 [1, 64, 64, 3]
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(
        self, paths: Sequence[str | os.PathLike], image_size: int, channels: int
    ):
        if channels not in (1, 3):
            raise DatasetError(f"channels must be 1 or 3, got {channels!r}")
        self.paths = [Path(p) for p in paths]
        self.image_size = int(image_size)
        self.channels = int(channels)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.image_size, self.image_size, self.channels)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key) -> np.ndarray:
        rows = np.arange(len(self.paths))[key]
        mode = "L" if self.channels == 1 else "RGB"
        decoded = list(
            decoding_threads().map(
                lambda i: read_resized(self.paths[i], self.image_size, mode),
                np.atleast_1d(rows).tolist(),
            )
        )
        images = to_float(
            np.stack(decoded) if decoded else np.zeros((0, *self.shape[1:]), np.uint8)
        )
        return images[0] if np.ndim(rows) == 0 else images

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        images = self[:]
        return images if dtype is None else images.astype(dtype)

    def signature(self) -> str:
        """The files' names, sizes and modification times, and the output shape."""
        h = hashlib.sha256(repr(self.shape).encode())
        for path in self.paths:
            stat = path.stat()
            h.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files, shape={self.shape})"


def read_resized(path: Path, size: int, mode: str) -> np.ndarray:
    """Decode one image file, center-crop, resize and convert to ``mode``."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                a = np.asarray(img, np.float64)
                top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
                a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
                img = Image.fromarray(a)
            if img.mode in ("RGBA", "LA", "PA") or (
                img.mode == "P" and "transparency" in img.info
            ):
                # transparent pixels become black (deterministic conversion)
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(
                    Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba
                )
            img = img.convert(mode)
            w, h = img.size
            top, left, side = center_crop_box(h, w)
            box = (left, top, left + side, top + side)
            # crop first: resize(box=...) would let the filter reach outside the box
            img = img.crop(box)
            if side != size:
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            a = np.asarray(img, np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"cannot read image file {path}: {e}") from e
    return a[..., None] if a.ndim == 2 else a
