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

from .dataset import ImageDataset
from .errors import DatasetError
from .files import ImageFiles
from .sources import (
    BUILTIN_SOURCES,
    align_categories,
    load_dataset,
    resolve_categories,
)

__all__ = [
    "DatasetError",
    "ImageDataset",
    "ImageFiles",
    "align_categories",
    "load_dataset",
    "resolve_categories",
    "BUILTIN_SOURCES",
]
