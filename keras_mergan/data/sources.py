"""Loading a dataset from any source, and looking up its categories."""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .arrays import SVHN_FILES, load_keras_mnist, load_npz, load_svhn
from .dataset import ImageDataset
from .errors import DatasetError
from .folders import load_folder
from .resize import convert_channels

BUILTIN_SOURCES = ("digits", "mnist")


def load_dataset(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    image_size: int = 32,
    channels: int | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    stream: bool | None = None,
) -> ImageDataset:
    """Load a labelled image dataset, resized to ``image_size`` and in [-1, 1].

    Args:
        source: ``"digits"`` (built in), ``"mnist"`` (Keras download), a path to
            an ``.npz`` file in the Keras MNIST layout, or a path to a folder
            with one subfolder of images per category; or several of them
            (a list, or joined with ``+``), each whole dataset one category.
        image_size: side of the square output images.
        channels: 1 (grayscale) or 3 (RGB). ``None`` keeps the source's
            channels; for a folder: 1 if every image is grayscale, else 3;
            for several sources: 3 if any of them is RGB.
        test_fraction: for folders, the fraction of each category held out as
            the test split (``0 <= test_fraction < 1``). Ignored for sources
            that come with their own test split.
        seed: seed of the folder train/test split.
        stream: for folders, keep the images on disk as :class:`ImageFiles`
            that decode each batch when it is drawn (in parallel threads),
            instead of decoding every image into memory up front. ``None``:
            stream folders of more than ``STREAM_ABOVE`` images (LSUN's
            categories hold millions). Several sources are always decoded
            into memory.

    Returns:
        An :class:`ImageDataset`.

    Raises:
        DatasetError: unknown source, missing path, unreadable or corrupt
            file, missing ``.npz`` keys, empty category, label mismatch.

    Example:
        >>> ds = load_dataset("digits", image_size=32)
        >>> ds.x_train.shape, ds.x_train.dtype
        ((6000, 32, 32, 1), dtype('float32'))
        >>> ds.class_names[:3]
        ('0', '1', '2')
    """
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise DatasetError(f"image_size must be an int, got {image_size!r}")
    image_size = int(image_size)
    if image_size < 1:
        raise DatasetError(f"image_size must be >= 1, got {image_size}")
    if channels not in (None, 1, 3):
        raise DatasetError(f"channels must be None, 1 or 3, got {channels!r}")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise DatasetError(f"test_fraction must be in [0, 1), got {test_fraction!r}")

    if isinstance(source, str) and "+" in source and not Path(source).exists():
        source = source.split("+")
    if isinstance(source, (list, tuple)):
        if stream:
            raise DatasetError("streaming reads one folder, not several sources")
        parts = [
            load_dataset(s, image_size, channels, test_fraction, seed, stream=False)
            for s in source
        ]
        return _datasets_as_categories(parts, channels)

    if isinstance(source, str) and source in BUILTIN_SOURCES:
        if source == "digits":
            ref = importlib.resources.files("keras_mergan") / "datasets" / "digits.npz"
            with importlib.resources.as_file(ref) as path:
                return load_npz(path, "digits", image_size, channels)
        return load_keras_mnist(image_size, channels)

    path = Path(os.fspath(source)).expanduser()
    if not path.exists():
        if isinstance(source, str) and os.sep not in source and "." not in source:
            raise DatasetError(
                f"unknown dataset {source!r}: not a built-in dataset "
                f"({', '.join(map(repr, BUILTIN_SOURCES))}) and no file or folder "
                f"{path.resolve()} exists; give a path to an .npz file or to a "
                "folder with one subfolder per category"
            )
        raise DatasetError(f"dataset path does not exist: {path}")
    if path.suffix.lower() == ".mat" or (path / SVHN_FILES[0]).is_file():
        return load_svhn(path, image_size, channels)
    if path.is_dir():
        return load_folder(
            path, image_size, channels, float(test_fraction), seed, stream
        )
    if path.suffix.lower() == ".npz":
        return load_npz(path, path.stem, image_size, channels)
    raise DatasetError(
        f"cannot load {path}: expected an .npz file or a folder with one subfolder "
        "per category"
    )


def _datasets_as_categories(
    parts: Sequence[ImageDataset], channels: int | None
) -> ImageDataset:
    """One dataset whose category `i` is the whole of `parts[i]`."""
    if len(parts) < 2:
        raise DatasetError(f"joining datasets needs two or more, got {len(parts)}")
    names = [part.name for part in parts]
    if len(set(names)) < len(names):
        raise DatasetError(f"each joined dataset must have its own name, got {names}")
    channels = channels or max(part.channels for part in parts)

    def joined(split: str) -> tuple[np.ndarray, np.ndarray]:
        xs = [convert_channels(getattr(p, f"x_{split}"), channels) for p in parts]
        ys = [np.full(len(x), i, np.int32) for i, x in enumerate(xs)]
        return np.concatenate(xs), np.concatenate(ys)

    (x_train, y_train), (x_test, y_test) = joined("train"), joined("test")
    return ImageDataset(
        name="+".join(names),
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=tuple(names),
    )


def resolve_categories(
    dataset: ImageDataset, categories: Sequence[str | int]
) -> list[int]:
    """Map category names or indices to class indices.

    A string is first matched against ``dataset.class_names`` (exactly, then
    case-insensitively); a string that is an integer (``"3"``) and matches no
    name is taken as an index. Integers are indices.

    Raises:
        DatasetError: unknown name, index out of range or repeated category;
            the message lists the valid names.

    Example:
        >>> ds = load_dataset("digits")
        >>> resolve_categories(ds, ["3", 7, "0"])
        [3, 7, 0]
    """
    if isinstance(categories, (str, bytes, int, np.integer)):
        categories = [categories]  # type: ignore[list-item]
    names = list(dataset.class_names)
    lowered: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        lowered.setdefault(n.lower(), []).append(i)
    valid = ", ".join(repr(n) for n in names)

    result: list[int] = []
    for cat in categories:
        index: int | None = None
        if isinstance(cat, (bool, np.bool_)):
            index = None
        elif isinstance(cat, (int, np.integer)):
            if 0 <= int(cat) < len(names):
                index = int(cat)
            else:
                raise DatasetError(
                    f"category index {int(cat)} out of range for {dataset.name!r} "
                    f"({len(names)} classes: {valid})"
                )
        elif isinstance(cat, str):
            if cat in names:
                index = names.index(cat)
            elif len(lowered.get(cat.lower(), [])) == 1:
                index = lowered[cat.lower()][0]
            else:
                try:
                    as_int = int(cat.strip())
                except ValueError:
                    as_int = None
                if as_int is not None and 0 <= as_int < len(names):
                    index = as_int
        if index is None:
            raise DatasetError(
                f"unknown category {cat!r} for dataset {dataset.name!r}; "
                f"valid categories: {valid} (or an index 0..{len(names) - 1})"
            )
        if index in result:
            raise DatasetError(f"category {names[index]} is listed twice")
        result.append(index)
    return result


def align_categories(dataset: ImageDataset, class_names: Sequence[str]) -> ImageDataset:
    """`dataset` relabelled into a run's label space, matched by category name.

    Categories of `dataset` named in `class_names` take that index; the others
    are appended after them, in `dataset`'s order, so that a run can grow by
    new categories. Categories of the run that `dataset` lacks simply have no
    images (data for one new category is enough to extend a run).

    Example:
        >>> ds = load_dataset("digits")
        >>> aligned = align_categories(ds, ["3", "bird"])
        >>> aligned.class_names[:4]
        ('3', 'bird', '0', '1')
        >>> bool((ds.y_train == 3).sum() == (aligned.y_train == 0).sum())
        True
    """
    names = list(class_names)
    for name in dataset.class_names:
        if name not in names:
            names.append(name)
    mapping = np.array([names.index(n) for n in dataset.class_names], "int32")
    if list(dataset.class_names) == names:
        return dataset
    return ImageDataset(
        dataset.name,
        dataset.x_train,
        mapping[dataset.y_train],
        dataset.x_test,
        mapping[dataset.y_test],
        tuple(names),
    )
