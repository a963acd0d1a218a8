"""Grids of generated images, with a label per row (numpy and Pillow only).

The one grid layout of the package: training's `task_XX/grid.png`, the
plots, `keras-mergan sample` and the server's `/api/grid` all draw with
`make_grid`. It imports no ML framework, so `keras_mergan.serve` uses it
too.

Cells are separated by lines of a mid gray (`SEPARATOR`): generated digits
are white on black, and black cells side by side would otherwise merge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["SEPARATOR", "make_grid", "to_uint8"]

#: Gray level of the lines between cells and of the label margin.
SEPARATOR = 96
_LABEL_COLOR = 255


def to_uint8(
    images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)
) -> np.ndarray:
    """Map ``value_range`` linearly onto 0..255, rounding and clipping.

    Example:

    >>> to_uint8(np.array([-1.0, 0.0, 1.0])).tolist()
    [0, 128, 255]
    """
    low, high = value_range
    scaled = (np.asarray(images, np.float32) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def make_grid(
    images: np.ndarray,
    columns: int | None = None,
    padding: int = 2,
    scale: int = 1,
    background: int = SEPARATOR,
    row_labels: Sequence[str] | str | None = None,
) -> np.ndarray:
    """Tile uint8 images ``[n, H, W, C]`` into one ``[H', W', C]`` array.

    Each image is enlarged ``scale`` times (nearest neighbour, so pixels stay
    sharp) and separated by ``padding`` pixels of ``background``. The
    default is a near-square layout. With ``row_labels`` (one per row, or
    one text for every row) a margin on the left names each row.

    Example:

    >>> images = np.zeros((6, 8, 8, 1), np.uint8)
    >>> make_grid(images, columns=3).shape
    (20, 32, 1)
    >>> make_grid(images, columns=3, row_labels=["0", "1"]).shape[1] > 32
    True
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
    if isinstance(row_labels, str):
        row_labels = [row_labels] * rows
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
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
    if row_labels is None:
        return grid
    return _label_rows(grid, row_labels, height, padding, background)


def _label_rows(
    grid: np.ndarray,
    labels: Sequence[str],
    height: int,
    padding: int,
    background: int,
) -> np.ndarray:
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    boxes = [measure.textbbox((0, 0), str(label), font=font) for label in labels]
    margin = max(box[2] - box[0] for box in boxes) + 2 * padding + 2
    channels = grid.shape[2]
    mode = "L" if channels == 1 else "RGB"
    fill = background if channels == 1 else (background,) * 3
    canvas = Image.new(mode, (margin + grid.shape[1], grid.shape[0]), fill)
    canvas.paste(
        Image.fromarray(grid[..., 0] if channels == 1 else grid[..., :3]), (margin, 0)
    )
    draw = ImageDraw.Draw(canvas)
    color = _LABEL_COLOR if channels == 1 else (_LABEL_COLOR,) * 3
    for row, (label, box) in enumerate(zip(labels, boxes, strict=True)):
        middle = padding + row * (height + padding) + height / 2
        top = middle - (box[3] + box[1]) / 2
        draw.text((padding, top), str(label), fill=color, font=font)
    labelled = np.asarray(canvas)
    if channels == 1:
        return labelled[..., None]
    if channels == 4:
        alpha = np.full(labelled.shape[:2] + (1,), 255, np.uint8)
        alpha[:, margin:, 0] = grid[..., 3]
        return np.concatenate([labelled, alpha], axis=-1)
    return labelled
