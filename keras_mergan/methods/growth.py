"""A method's model grown by new categories, the old ones left as they were.

Only the conditional parts of a model depend on the number of categories:
conditional batch norm's per-category scale, shift and statistics, the
critic's class head, DGR's solver head, and the method state kept per weight
(EWC's Fisher and anchors). `grow_categories` copies a trained model into one
built for more categories: every old row is copied unchanged, and each new
row starts as the mean of the old rows along the category axis, unless the
model asks for zeros (`WassersteinGAN.new_category_rows`).

Why the mean: a new category's conditional batch norm then starts at the
average scale and shift of the known ones, so its first samples are
plausible images of the domain rather than an untrained scale's noise, and
training moves its own rows from there. The critic's class head gives it the
average logit, so no old category's classification changes order. EWC's
Fisher starts at zero for a new category: nothing was learned there yet, so
nothing is held.

Old categories' outputs are unchanged by the growth itself: their rows are
copied bit for bit and every other weight is shared.
"""

import keras
import numpy as np


def grow_categories(source: keras.Model, target: keras.Model) -> None:
    """Copies `source`'s variables into `target`, built for more categories.

    Both are the same method and architecture; `target.num_classes` is at
    least `source.num_classes`. Variables are matched in order (the models
    are built the same way), and a variable whose shape differs must differ
    on one axis only, the category axis.

    Raises:
        ValueError: the models differ in anything but the category count.

    Example:

    >>> # grow_categories(keras.saving.load_model("task_02/gan.keras"), bigger)
    """
    old, new = source.num_classes, target.num_classes
    if new < old:
        raise ValueError(f"cannot shrink {old} categories to {new}")
    if len(source.variables) != len(target.variables):
        raise ValueError(
            f"the models differ: {len(source.variables)} variables against "
            f"{len(target.variables)}"
        )
    for saved, variable in zip(source.variables, target.variables, strict=True):
        value = np.asarray(keras.ops.convert_to_numpy(saved.value))
        if tuple(value.shape) != tuple(variable.shape):
            value = _grown(value, tuple(variable.shape), old, new, target, variable)
        variable.assign(value)


def _grown(value, shape, old: int, new: int, model, variable) -> np.ndarray:
    differing = [
        axis
        for axis in range(len(shape))
        if len(value.shape) == len(shape) and value.shape[axis] != shape[axis]
    ]
    grows_by_category = len(differing) == 1 and (
        value.shape[differing[0]],
        shape[differing[0]],
    ) == (old, new)
    if not grows_by_category:
        raise ValueError(
            f"{variable.path}: shape {tuple(value.shape)} cannot grow to {shape} "
            f"by categories ({old} -> {new})"
        )
    axis = differing[0]
    fill = model.new_category_rows(variable)
    if fill == "zeros":
        rows = np.zeros_like(np.take(value, [0], axis=axis))
    else:
        rows = value.mean(axis=axis, keepdims=True)
    extra = np.repeat(rows, new - old, axis=axis).astype(value.dtype)
    return np.concatenate([value, extra], axis=axis)
