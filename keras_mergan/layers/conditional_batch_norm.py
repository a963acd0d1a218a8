"""Batch normalisation whose scale and offset are chosen by a class label."""

import keras
from keras import ops

from keras_mergan.backend import training_backend


@keras.saving.register_keras_serializable(package="keras_mergan")
class ConditionalBatchNormalization(keras.layers.Layer):
    """Batch normalisation with one (gamma, beta) pair per class.

    While training, inputs are normalised with the statistics of the whole
    batch, as in the MeRGAN reference code. Each class present in the batch
    moves its own running mean and variance towards those statistics. At
    inference every sample is normalised with its own class's running
    statistics, so a generated image does not depend on the other rows of
    its batch (a batch of one gives the same image as a batch of 64).

    Statistics and normalisation are computed in float32 whatever the dtype
    policy (a mixed-precision policy's bfloat16 sums lose the small
    variances); the output is in the layer's compute dtype.

    Args:
        num_classes: number of categories the label can take.
        momentum: momentum of the per-class running statistics.
        epsilon: added to the variance before the square root.

    Example:

    >>> layer = ConditionalBatchNormalization(num_classes=10)
    >>> x = keras.random.normal((8, 4, 4, 16))
    >>> labels = keras.ops.arange(8) % 10
    >>> layer(x, labels, training=True).shape
    (8, 4, 4, 16)
    """

    def __init__(
        self,
        num_classes: int,
        momentum: float = 0.99,
        epsilon: float = 1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, inputs_shape, labels_shape=None):
        channels = inputs_shape[-1]
        table = (self.num_classes, channels)
        # autocast=False: read as float32 under a mixed-precision policy too.
        self.gamma = self.add_weight(
            shape=table, initializer="ones", autocast=False, name="gamma"
        )
        self.beta = self.add_weight(
            shape=table, initializer="zeros", autocast=False, name="beta"
        )
        self.moving_mean = self.add_weight(
            shape=table,
            initializer="zeros",
            trainable=False,
            autocast=False,
            name="moving_mean",
        )
        self.moving_variance = self.add_weight(
            shape=table,
            initializer="ones",
            trainable=False,
            autocast=False,
            name="moving_variance",
        )

    def _per_sample(self, table, labels, rank):
        rows = ops.take(table, labels, axis=0)
        return ops.reshape(rows, (-1,) + (1,) * (rank - 2) + (rows.shape[-1],))

    def call(self, inputs, labels, training=False):
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        inputs = ops.cast(inputs, "float32")
        rank = len(inputs.shape)
        if training:
            # keepdims keeps the torch ONNX exporter away from multi-axis squeezes.
            mean, variance = _batch_moments(inputs, axes=list(range(rank - 1)))
            self._update_moving_statistics(
                ops.reshape(mean, (1, -1)), ops.reshape(variance, (1, -1)), labels
            )
        else:
            mean = self._per_sample(self.moving_mean, labels, rank)
            variance = self._per_sample(self.moving_variance, labels, rank)
        gamma = self._per_sample(self.gamma, labels, rank)
        beta = self._per_sample(self.beta, labels, rank)
        outputs = (inputs - mean) * ops.rsqrt(variance + self.epsilon) * gamma + beta
        return ops.cast(outputs, self.compute_dtype)

    def _update_moving_statistics(self, mean, variance, labels):
        present = ops.max(ops.one_hot(labels, self.num_classes), axis=0)
        # A class present in any replica's share is present in the batch.
        present = ops.cast(training_backend().replica_mean(present) > 0, "float32")
        step = ops.expand_dims(present, -1) * (1.0 - self.momentum)
        mean = ops.stop_gradient(mean)
        variance = ops.stop_gradient(variance)
        self.moving_mean.assign(self.moving_mean + step * (mean - self.moving_mean))
        self.moving_variance.assign(
            self.moving_variance + step * (variance - self.moving_variance)
        )

    def compute_output_shape(self, inputs_shape, labels_shape=None):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes, momentum=self.momentum, epsilon=self.epsilon
        )
        return config


def _batch_moments(inputs, axes):
    """Mean and variance over the whole batch, all replicas' shares included."""
    backend = training_backend()
    if backend.replica()[1] == 1:
        return ops.moments(inputs, axes=axes, keepdims=True)
    mean = backend.replica_mean(ops.mean(inputs, axis=axes, keepdims=True))
    square = backend.replica_mean(
        ops.mean(ops.square(inputs), axis=axes, keepdims=True)
    )
    return mean, square - ops.square(mean)
