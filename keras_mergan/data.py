"""Image datasets for class-conditional GANs: loading, resizing, category lookup.

Every source ends up as an :class:`ImageDataset`: float32 images
``[N, S, S, C]`` scaled to ``[-1, 1]``, int32 labels, and class names.

Sources understood by :func:`load_dataset`:

- ``"digits"``: the built-in default, shipped inside the package
  (``keras_mergan/datasets/digits.npz``, made by ``tools/make_builtin_digits.py``).
  It is a class-balanced subset of MNIST (Yann LeCun, Corinna Cortes,
  Christopher J.C. Burges; licence CC BY-SA 3.0): 600 training and 100 test
  images per digit, 28x28 grayscale. Works offline.
- ``"mnist"``: full MNIST through ``keras.datasets.mnist.load_data()``
  (downloaded once and cached by Keras).
- a path to an ``.npz`` file in the Keras MNIST layout: ``x_train``,
  ``y_train``, ``x_test``, ``y_test``; images uint8 ``[N, H, W]`` or
  ``[N, H, W, C]``; an optional ``class_names`` string array.
- SVHN's cropped digits: the path of ``train_32x32.mat`` (``test_32x32.mat``
  is read from the same folder), or of the folder holding both. ``X`` is
  uint8 ``[32, 32, 3, N]`` and ``y`` ``[N, 1]`` with label 10 meaning digit
  0, as in the official files; read with SciPy.
- a path to a directory with one subfolder per category (category name =
  subfolder name, sorted), holding images in any format Pillow reads
  (subfolders are searched recursively; files whose extension Pillow does not
  know are ignored). A fraction of each category becomes the test split.
- several of the above joined with ``+`` (or a list of them): each whole
  dataset becomes one category, named after it, so that each task can be a
  dataset (as in Lifelong Twin GANs: MNIST, then SVHN, then Fashion-MNIST).

Images are center-cropped to a square and resized with bilinear filtering
(Pillow semantics, antialiased when shrinking) to ``image_size``. The module
uses only numpy and Pillow, so it works under every Keras backend.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DatasetError",
    "ImageDataset",
    "ImageFiles",
    "load_dataset",
    "resolve_categories",
    "BUILTIN_SOURCES",
]

BUILTIN_SOURCES = ("digits", "mnist")
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
# Folders with more images than this are decoded batch by batch, not up front.
STREAM_ABOVE = 50_000
_GRAYSCALE_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class DatasetError(ValueError):
    """A dataset could not be loaded or a category could not be resolved.

    The message names the offending source, file or folder and says what was
    expected.
    """


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images and labels of a labelled dataset, train and test splits.

    Attributes:
        name: short name of the source (``"digits"``, ``"mnist"``, file stem
            or folder name).
        x_train: float32 ``[N, S, S, C]`` in ``[-1, 1]``: an array, or an
            :class:`ImageFiles` that decodes the images it is indexed with.
        y_train: int32 ``[N]`` in ``[0, num_classes)``.
        x_test: float32 ``[M, S, S, C]`` in ``[-1, 1]`` (``M`` may be 0),
            like ``x_train``.
        y_test: int32 ``[M]``.
        class_names: one name per class index.

    Example:
        >>> ds = load_dataset("digits")
        >>> ds.image_shape, ds.num_classes
        ((32, 32, 1), 10)
        >>> float(ds.x_train.min()), float(ds.x_train.max())
        (-1.0, 1.0)
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if x.ndim != 4:
                raise DatasetError(
                    f"{self.name}: x_{split} must be [N, S, S, C], got shape {x.shape}"
                )
            if len(x) != len(y):
                raise DatasetError(
                    f"{self.name}: {len(x)} images but {len(y)} labels in the "
                    f"{split} split"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DatasetError(
                f"{self.name}: train images {self.x_train.shape[1:]} and test images "
                f"{self.x_test.shape[1:]} differ in shape"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(S, S, C)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        """1 (grayscale) or 3 (RGB)."""
        return int(self.x_train.shape[-1])

    def fingerprint(self) -> str:
        """A hex digest of the name, shapes, class names and pixel/label data.

        Streamed images (:class:`ImageFiles`) count by their files' names,
        sizes and modification times rather than by decoding all of them.
        """
        h = hashlib.sha256()
        h.update(self.name.encode())
        h.update(repr(self.class_names).encode())
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            if isinstance(a, ImageFiles):
                h.update(a.signature().encode())
                continue
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
        return h.hexdigest()

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, train={len(self.x_train)}, "
            f"test={len(self.x_test)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes})"
        )


# --------------------------------------------------------------------------- #
# Public entry points
# --------------------------------------------------------------------------- #


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
                return _load_npz(path, "digits", image_size, channels)
        return _load_keras_mnist(image_size, channels)

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
    if path.suffix.lower() == ".mat" or (path / _SVHN_FILES[0]).is_file():
        return _load_svhn(path, image_size, channels)
    if path.is_dir():
        return _load_folder(
            path, image_size, channels, float(test_fraction), seed, stream
        )
    if path.suffix.lower() == ".npz":
        return _load_npz(path, path.stem, image_size, channels)
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
        xs = [_convert_channels(getattr(p, f"x_{split}"), channels) for p in parts]
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
            raise DatasetError(f"category {cat!r} ({names[index]!r}) given twice")
        result.append(index)
    return result


# --------------------------------------------------------------------------- #
# Array sources (npz, keras mnist)
# --------------------------------------------------------------------------- #


def _load_keras_mnist(image_size: int, channels: int | None) -> ImageDataset:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as e:  # network errors, corrupt cache, ...
        raise DatasetError(
            f"could not load MNIST through keras.datasets.mnist.load_data(): {e}. "
            "Offline? Use the built-in 'digits' subset or a path to mnist.npz."
        ) from e
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return _from_arrays(
        "mnist", "MNIST", arrays, [str(i) for i in range(10)], image_size, channels
    )


def _load_npz(
    path: Path, name: str, image_size: int, channels: int | None
) -> ImageDataset:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _NPZ_KEYS if k not in data.files]
            if missing:
                raise DatasetError(
                    f"{path}: missing key(s) {', '.join(missing)}; an .npz dataset "
                    f"needs {', '.join(_NPZ_KEYS)} (found: {', '.join(data.files)})"
                )
            arrays = {k: np.asarray(data[k]) for k in _NPZ_KEYS}
            class_names = (
                [str(n) for n in data["class_names"].tolist()]
                if "class_names" in data.files
                else None
            )
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"cannot read {path} as an .npz file: {e}") from e
    return _from_arrays(name, str(path), arrays, class_names, image_size, channels)


def _load_svhn(path: Path, image_size: int, channels: int | None) -> ImageDataset:
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise DatasetError(
            "reading SVHN .mat files needs SciPy: pip install scipy"
        ) from e
    train = path / _SVHN_FILES[0] if path.is_dir() else path
    test = train.with_name(train.name.replace("train", "test"))
    if test == train or not test.is_file():
        raise DatasetError(
            f"{train}: expected SVHN's {_SVHN_FILES[1]} beside it, as {test}"
        )
    arrays = {}
    for split, file in (("train", train), ("test", test)):
        try:
            mat = loadmat(file, variable_names=("X", "y"))
        except Exception as e:
            raise DatasetError(f"cannot read {file} as a MATLAB file: {e}") from e
        if "X" not in mat or "y" not in mat:
            raise DatasetError(f"{file}: an SVHN file needs variables X and y")
        x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
        if x.ndim != 4 or x.shape[2] != 3:
            raise DatasetError(f"{file}: X must be [32, 32, 3, N], got {x.shape}")
        arrays[f"x_{split}"] = np.moveaxis(x, -1, 0)
        arrays[f"y_{split}"] = np.where(y == 10, 0, y).astype(np.int64)
    names = [str(i) for i in range(10)]
    return _from_arrays("svhn", str(train), arrays, names, image_size, channels)


def _from_arrays(
    name: str,
    where: str,
    arrays: dict[str, np.ndarray],
    class_names: list[str] | None,
    image_size: int,
    channels: int | None,
) -> ImageDataset:
    xs, ys = {}, {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
            raise DatasetError(
                f"{where}: x_{split} must have shape [N, H, W] or [N, H, W, C] with "
                f"C in 1, 3, 4; got {x.shape}"
            )
        if not (np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
            raise DatasetError(
                f"{where}: x_{split} must hold uint8 pixels in [0, 255], got dtype "
                f"{x.dtype}"
            )
        if x.dtype != np.uint8 and x.size and (x.min() < 0 or x.max() > 255):
            raise DatasetError(f"{where}: x_{split} values must lie in [0, 255]")
        y = np.asarray(y).reshape(-1) if np.ndim(y) == 2 and np.shape(y)[-1] == 1 else y
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(
                f"{where}: y_{split} must be a 1-D integer label array, got shape "
                f"{y.shape} dtype {y.dtype}"
            )
        if len(y) != len(x):
            raise DatasetError(
                f"{where}: label count mismatch in the {split} split: {len(x)} "
                f"images but {len(y)} labels"
            )
        if y.size and y.min() < 0:
            raise DatasetError(f"{where}: y_{split} has negative labels")
        if x.shape[-1] == 4:
            x = x[..., :3]
        xs[split], ys[split] = x, y.astype(np.int32)
    if len(xs["train"]) == 0:
        raise DatasetError(f"{where}: the training split is empty")
    if xs["train"].shape[-1] != xs["test"].shape[-1]:
        raise DatasetError(f"{where}: train and test images have different channels")

    max_label = max(int(ys[s].max()) if ys[s].size else -1 for s in ys)
    if class_names is None:
        class_names = [str(i) for i in range(max_label + 1)]
    elif max_label >= len(class_names):
        raise DatasetError(
            f"{where}: label {max_label} but only {len(class_names)} class_names"
        )
    out = {
        split: _to_float(_convert_channels(_resize_batch(x, image_size), channels))
        for split, x in xs.items()
    }
    return ImageDataset(
        name=name,
        x_train=out["train"],
        y_train=ys["train"],
        x_test=out["test"],
        y_test=ys["test"],
        class_names=tuple(class_names),
    )


def _bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's BILINEAR resampling as an ``[out_size, in_size]`` matrix.

    Triangle filter, widened by the scale factor when shrinking (antialias),
    sample centres at ``(i + 0.5) * in / out``, weights normalised per output.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = filterscale  # bilinear support is 1.0
    w = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        j = np.arange(lo, hi)
        k = np.maximum(0.0, 1.0 - np.abs((j - center + 0.5) / filterscale))
        w[i, lo:hi] = k / k.sum()
    return w.astype(np.float32)


def _center_crop_box(h: int, w: int) -> tuple[int, int, int]:
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def _resize_batch(x: np.ndarray, size: int, chunk: int = 8192) -> np.ndarray:
    """Center-crop ``[N, H, W, C]`` uint8 to square and bilinear-resize: float32."""
    n, h, w, c = x.shape
    top, left, side = _center_crop_box(h, w)
    x = x[:, top : top + side, left : left + side, :]
    if side == size:
        return x.astype(np.float32)
    wm = _bilinear_weights(side, size)
    out = np.empty((n, size, size, c), np.float32)
    for s in range(0, n, chunk):
        part = np.moveaxis(x[s : s + chunk], -1, 1).astype(np.float32)  # N C H W
        m = len(part)
        # two large GEMMs: along W, then along H
        part = (part.reshape(-1, side) @ wm.T).reshape(m, c, side, size)
        part = part.transpose(0, 1, 3, 2).reshape(-1, side) @ wm.T  # N C W' H'
        out[s : s + chunk] = part.reshape(m, c, size, size).transpose(0, 3, 2, 1)
    return out


def _convert_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    c = x.shape[-1]
    if channels is None or channels == c:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    # RGB -> luminance, ITU-R 601-2 (as Pillow's convert("L"))
    lum = np.asarray([0.299, 0.587, 0.114], np.float32)
    return (x @ lum)[..., None].astype(np.float32)


def _to_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    x /= 127.5
    x -= 1.0
    np.clip(x, -1.0, 1.0, out=x)
    return x


# --------------------------------------------------------------------------- #
# Image folders
# --------------------------------------------------------------------------- #


def _image_files(folder: Path) -> list[Path]:
    extensions = {e.lower() for e in Image.registered_extensions()}
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if not n.startswith(".") and os.path.splitext(n)[1].lower() in extensions:
                files.append(Path(root) / n)
    return files


def _load_folder(
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
            _decoding_threads().map(
                lambda i: _read_resized(self.paths[i], self.image_size, mode),
                np.atleast_1d(rows).tolist(),
            )
        )
        images = _to_float(
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


@functools.cache
def _decoding_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="decode")


def _read_resized(path: Path, size: int, mode: str) -> np.ndarray:
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
            top, left, side = _center_crop_box(h, w)
            box = (left, top, left + side, top + side)
            # crop first: resize(box=...) would let the filter reach outside the box
            img = img.crop(box)
            if side != size:
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            a = np.asarray(img, np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"cannot read image file {path}: {e}") from e
    return a[..., None] if a.ndim == 2 else a
