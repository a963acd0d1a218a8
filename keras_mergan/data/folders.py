"""Image folders: one subfolder of images per category."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .dataset import ImageDataset
from .errors import DatasetError
from .files import ImageFiles

# Folders with more images than this are decoded batch by batch, not up front.
STREAM_ABOVE = 50_000
_GRAYSCALE_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _image_files(folder: Path) -> list[Path]:
    extensions = {e.lower() for e in Image.registered_extensions()}
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if not n.startswith(".") and os.path.splitext(n)[1].lower() in extensions:
                files.append(Path(root) / n)
    return files


def load_folder(
    folder: Path,
    image_size: int,
    channels: int | None,
    test_fraction: float,
    seed: int,
    stream: bool | None,
) -> ImageDataset:
    class_dirs = sorted(
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not class_dirs:
        raise DatasetError(
            f"{folder} has no category subfolders: expected one subfolder of images "
            "per category (e.g. {folder}/cat/*.png, {folder}/dog/*.png)".replace(
                "{folder}", str(folder)
            )
        )
    files_per_class = []
    for d in class_dirs:
        files = _image_files(d)
        if not files:
            raise DatasetError(
                f"category folder {d} is empty: it holds no image files Pillow can read"
            )
        files_per_class.append(files)

    if channels is None:
        channels = 1
        for files in files_per_class:
            for f in files:
                try:
                    with Image.open(f) as img:
                        mode = img.mode
                except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
                    raise DatasetError(f"cannot read image file {f}: {e}") from e
                if mode not in _GRAYSCALE_MODES:
                    channels = 3
                    break
            if channels == 3:
                break

    rng = np.random.default_rng(seed)
    paths: dict[str, list[Path]] = {"train": [], "test": []}
    ys: dict[str, list[int]] = {"train": [], "test": []}
    for label, files in enumerate(files_per_class):
        n_test = min(int(round(len(files) * test_fraction)), len(files) - 1)
        perm = rng.permutation(len(files))
        test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        paths["train"] += [files[i] for i in train_idx]
        paths["test"] += [files[i] for i in test_idx]
        ys["train"] += [label] * len(train_idx)
        ys["test"] += [label] * len(test_idx)
    if stream is None:
        stream = sum(len(files) for files in files_per_class) > STREAM_ABOVE

    def images(split: str) -> np.ndarray | ImageFiles:
        files = ImageFiles(paths[split], image_size, channels)
        return files if stream else files[:]

    return ImageDataset(
        name=folder.resolve().name,
        x_train=images("train"),
        y_train=np.asarray(ys["train"], np.int32),
        x_test=images("test"),
        y_test=np.asarray(ys["test"], np.int32),
        class_names=tuple(d.name for d in class_dirs),
    )
