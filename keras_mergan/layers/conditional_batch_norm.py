"""Batch normalisation whose scale and offset are chosen by a class label."""

import contextlib
import contextvars

import keras
from keras import ops

from keras_mergan.backend import training_backend

_per_label_statistics = contextvars.ContextVar(
    "keras_mergan_per_label_statistics", default=False
)


@contextlib.contextmanager
def per_label_batch_statistics():
    """Training-mode calls inside normalise each label's rows by their own statistics.

    One call on a batch grouped by label then computes what one call per
    label computes (each label's batch statistics, each label's running
    statistics moved by its own), with shapes that do not depend on how many
    labels the batch holds: the replay methods' step stays one compiled
    program whatever the number of old categories. Read when the call is
    traced.

    Example:

    >>> layer = ConditionalBatchNormalization(num_classes=3)
    >>> x = keras.random.normal((6, 4, 4, 8))
    >>> with per_label_batch_statistics():
    ...     y = layer(x, keras.ops.array([0, 0, 0, 2, 2, 2]), training=True)
    >>> tuple(y.shape)
    (6, 4, 4, 8)
    """
    token = _per_label_statistics.set(True)
    try:
        yield
    finally:
        _per_label_statistics.reset(token)


@keras.saving.register_keras_serializable(package="keras_mergan")
class ConditionalBatchNormalization(keras.layers.Layer):
    """Batch normalisation with one (gamma, beta) pair per class.

    While training, inputs are normalised with the statistics of the whole
    batch, as in the MeRGAN reference code. Each class present in the batch
    moves its own running mean and variance towards those statistics. Inside
    `per_label_batch_statistics()` each class's rows use, and move, their
    own class's batch statistics instead. At
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
        if training and _per_label_statistics.get():
            mean, variance = self._per_label_moments(inputs, labels)
        elif training:
            # keepdims keeps the torch ONNX exporter away from multi-axis squeezes.
            mean, variance = _batch_moments(inputs, axes=list(range(rank - 1)))
            present = ops.max(ops.one_hot(labels, self.num_classes), axis=0)
            self._update_moving_statistics(
                ops.reshape(mean, (1, -1)), ops.reshape(variance, (1, -1)), present
            )
        else:
            mean = self._per_sample(self.moving_mean, labels, rank)
            variance = self._per_sample(self.moving_variance, labels, rank)
        gamma = self._per_sample(self.gamma, labels, rank)
        beta = self._per_sample(self.beta, labels, rank)
        outputs = (inputs - mean) * ops.rsqrt(variance + self.epsilon) * gamma + beta
        return ops.cast(outputs, self.compute_dtype)

    def _per_label_moments(self, inputs, labels):
        """Each row's class's batch mean and variance, and the running update."""
        backend = training_backend()
        rank = len(inputs.shape)
        spatial = list(range(1, rank - 1))
        membership = ops.one_hot(labels, self.num_classes, dtype="float32")
        # Summed over replicas like the whole-batch moments; the ratios are
        # unchanged by replica_mean's division.
        counts = backend.replica_mean(ops.sum(membership, axis=0))
        rows = ops.maximum(counts, 1.0)[:, None]

        def class_means(per_row):
            return backend.replica_mean(ops.matmul(ops.transpose(membership), per_row))

        class_mean = class_means(ops.mean(inputs, axis=spatial)) / rows
        mean = self._per_sample(class_mean, labels, rank)
        # Two passes: squared deviations, not E[x^2] - E[x]^2, which cancels.
        deviation = ops.mean(ops.square(inputs - mean), axis=spatial)
        class_variance = class_means(deviation) / rows
        self._update_moving_statistics(class_mean, class_variance, counts)
        return mean, self._per_sample(class_variance, labels, rank)

    def _update_moving_statistics(self, mean, variance, presence):
        """Moves each class with `presence > 0` (in any replica) towards its row of
        `mean` / `variance` (one row each, or one per class)."""
        present = ops.cast(training_backend().replica_mean(presence) > 0, "float32")
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
