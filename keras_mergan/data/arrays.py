"""Array sources: the built-in digits, MNIST, ``.npz`` files and SVHN."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import ImageDataset
from .errors import DatasetError
from .resize import convert_channels, resize_batch, to_float

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")


def load_keras_mnist(image_size: int, channels: int | None) -> ImageDataset:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as e:  # network errors, corrupt cache, ...
        raise DatasetError(
            f"could not load MNIST through keras.datasets.mnist.load_data(): {e}. "
            "Offline? Use the built-in 'digits' subset or a path to mnist.npz."
        ) from e
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return from_arrays(
        "mnist", "MNIST", arrays, [str(i) for i in range(10)], image_size, channels
    )


def load_npz(
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
    return from_arrays(name, str(path), arrays, class_names, image_size, channels)


def load_svhn(path: Path, image_size: int, channels: int | None) -> ImageDataset:
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise DatasetError(
            "reading SVHN .mat files needs SciPy: pip install scipy"
        ) from e
    train = path / SVHN_FILES[0] if path.is_dir() else path
    test = train.with_name(train.name.replace("train", "test"))
    if test == train or not test.is_file():
        raise DatasetError(
            f"{train}: expected SVHN's {SVHN_FILES[1]} beside it, as {test}"
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
    return from_arrays("svhn", str(train), arrays, names, image_size, channels)


def from_arrays(
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
        split: to_float(convert_channels(resize_batch(x, image_size), channels))
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
