"""Training precision: float32, or bfloat16 compute with float32 variables.

`bfloat16` is Keras' `mixed_bfloat16` dtype policy: variables, optimizer
state and gradients stay float32, convolutions and matmuls run in bfloat16.
bfloat16 has float32's exponent range, so no loss scaling is needed. The
networks keep their numerically delicate parts in float32 whatever the
policy: the critic's score and class heads (so the WGAN losses and the AC-GAN
cross-entropy are float32), the generator's final tanh (so replay alignment
and everything downstream see float32 images), conditional batch norm's
statistics and normalisation, and the VAE student's heads. Losses built on
those outputs, the gradient penalty's norm and EWC's Fisher are therefore
float32 too.

`auto` picks bfloat16 where the training backend gains from it: a GPU or TPU
with bfloat16 units, or a CPU with AMX-BF16 or AVX512-BF16 under TensorFlow or
PyTorch (whose oneDNN kernels use them). XLA's CPU backend (JAX on a CPU)
gains nothing from bfloat16, so there `auto` stays in float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# Keras is imported where it is used: `RunConfig` (and `keras-mergan --help`)
# read `PRECISIONS` without starting a backend.
PRECISIONS = ("auto", "float32", "bfloat16")
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def resolve_precision(precision: str) -> str:
    """`"float32"` or `"bfloat16"`: `precision` itself, or what `"auto"` picks.

    Example:

    >>> resolve_precision("float32")
    'float32'
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    from keras_mergan.backend import training_backend

    return "bfloat16" if training_backend().bfloat16_is_faster() else "float32"


@contextlib.contextmanager
def precision_scope(precision: str) -> Iterator[str]:
    """Models built inside compute in `precision` (`"auto"` resolved first).

    Sets Keras' global dtype policy while the block runs and restores the
    previous one after it, so that other models (an evaluator, say) keep
    theirs. Layers remember their policy: a saved model loads back with it.
    Yields the resolved precision.

    Example:

    >>> from keras_mergan.models import build_dcgan_generator
    >>> with precision_scope("bfloat16"):
    ...     generator = build_dcgan_generator(10)
    >>> generator.get_layer("generator_dense").compute_dtype
    'bfloat16'
    """
    import keras

    resolved = resolve_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[resolved])
    try:
        yield resolved
    finally:
        keras.config.set_dtype_policy(previous)


def model_precision(model) -> str:
    """The precision `model` was built in: that of its first layer with weights.

    Example:

    >>> from keras_mergan.models import build_dcgan_generator
    >>> model_precision(build_dcgan_generator(10))
    'float32'
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return model_precision(layer)
        if layer.weights:
            return "bfloat16" if layer.compute_dtype == "bfloat16" else "float32"
    return "float32"
