"""The dataset every source loads into: images, labels and class names."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .errors import DatasetError
from .files import ImageFiles


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
        >>> from keras_mergan.data import load_dataset
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
            if a.size:  # an empty split (a small folder's test) has no bytes
                h.update(memoryview(a).cast("B"))
        return h.hexdigest()

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, train={len(self.x_train)}, "
            f"test={len(self.x_test)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes})"
        )
