"""Inference-time folding of conditional batch norm into per-class affine tables.

At inference a :class:`~keras_mergan.layers.ConditionalBatchNormalization`
computes ``(x - mean[c]) * rsqrt(var[c] + eps) * gamma[c] + beta[c]`` with
four table look-ups and four passes over the activation. All four tables
depend only on the class, so they fold into ``x * scale[c] + shift[c]``:
two look-ups and two passes, which is what the exported graph runs.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_mergan.layers import ConditionalBatchNormalization


@keras.saving.register_keras_serializable(package="keras_mergan_export")
class FoldedConditionalBatchNorm(keras.layers.Layer):
    """Per-class affine map ``x * scale[label] + shift[label]`` (inference only).

    Args:
        scale: array [num_classes, channels].
        shift: array [num_classes, channels].

    Example:

    >>> layer = FoldedConditionalBatchNorm(np.ones((10, 4)), np.zeros((10, 4)))
    >>> layer(np.ones((2, 3, 3, 4), "float32"), np.array([0, 1])).shape
    (2, 3, 3, 4)
    """

    def __init__(self, scale, shift, **kwargs):
        super().__init__(**kwargs)
        self._scale_init = np.asarray(scale, "float32")
        self._shift_init = np.asarray(shift, "float32")

    def build(self, inputs_shape, labels_shape=None):
        self.scale = self.add_weight(
            shape=self._scale_init.shape,
            initializer=keras.initializers.Constant(self._scale_init),
            trainable=False,
            name="scale",
        )
        self.shift = self.add_weight(
            shape=self._shift_init.shape,
            initializer=keras.initializers.Constant(self._shift_init),
            trainable=False,
            name="shift",
        )

    def call(self, inputs, labels):
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        rank = len(inputs.shape)
        shape = (-1,) + (1,) * (rank - 2) + (self._scale_init.shape[-1],)
        scale = ops.reshape(ops.take(self.scale, labels, axis=0), shape)
        shift = ops.reshape(ops.take(self.shift, labels, axis=0), shape)
        return inputs * scale + shift

    def compute_output_shape(self, inputs_shape, labels_shape=None):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(scale=self._scale_init.tolist(), shift=self._shift_init.tolist())
        return config


def folded_tables(
    layer: ConditionalBatchNormalization,
) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) tables equal to ``layer`` at inference (computed in float64)."""
    gamma = np.asarray(ops.convert_to_numpy(layer.gamma), np.float64)
    beta = np.asarray(ops.convert_to_numpy(layer.beta), np.float64)
    mean = np.asarray(ops.convert_to_numpy(layer.moving_mean), np.float64)
    variance = np.asarray(ops.convert_to_numpy(layer.moving_variance), np.float64)
    scale = gamma / np.sqrt(variance + layer.epsilon)
    shift = beta - mean * scale
    return scale.astype(np.float32), shift.astype(np.float32)


def fold_generator(generator: keras.Model) -> tuple[keras.Model, int]:
    """A float32 copy of ``generator`` for inference, conditional BN layers folded.

    Every other float32 layer is shared with ``generator`` (same weights, no
    copy), whatever its type, so the fold does not depend on how the
    upsampling is implemented. A layer trained under a mixed-precision policy
    (float32 variables, bfloat16 compute) is rebuilt in float32 with the same
    weights: exports always compute in float32. Returns the new model and the
    number of folded layers.

    Example:

    >>> # inference, count = fold_generator(gan.generator)
    """
    return _float32_copy(generator, fold=True)


def float32_generator(generator: keras.Model) -> keras.Model:
    """``generator`` computing in float32 with the same weights, nothing folded.

    What an export of a mixed-precision generator computes, before the fold:
    the reference its exports are checked against.

    Example:

    >>> # reference = float32_generator(gan.generator)
    """
    return _float32_copy(generator, fold=False)[0]


def _float32_copy(generator: keras.Model, fold: bool) -> tuple[keras.Model, int]:
    folded = 0
    rebuilt = []

    def clone(layer):
        nonlocal folded
        if fold and isinstance(layer, ConditionalBatchNormalization):
            folded += 1
            scale, shift = folded_tables(layer)
            return FoldedConditionalBatchNorm(scale, shift, name=layer.name)
        if layer.compute_dtype != "float32":
            config = {**layer.get_config(), "dtype": "float32"}
            rebuilt.append((layer, type(layer).from_config(config)))
            return rebuilt[-1][1]
        return layer

    model = keras.models.clone_model(generator, clone_function=clone, recursive=True)
    for trained, float32_copy in rebuilt:
        float32_copy.set_weights(trained.get_weights())
    return model, folded
