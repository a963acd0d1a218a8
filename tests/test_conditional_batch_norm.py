import keras
import numpy as np
from keras import ops

from keras_mergan.layers import (
    ConditionalBatchNormalization,
    per_label_batch_statistics,
)


def _layer(num_classes=3, channels=2):
    layer = ConditionalBatchNormalization(num_classes, momentum=0.5)
    layer.build((None, 4, 4, channels), (None,))
    gamma = np.arange(1, num_classes * channels + 1, dtype="float32").reshape(
        num_classes, channels
    )
    layer.gamma.assign(gamma)
    layer.beta.assign(-gamma)
    return layer, gamma


def test_training_uses_batch_statistics_and_the_labels_gamma_beta():
    layer, gamma = _layer()
    x = np.random.default_rng(0).normal(2.0, 3.0, (6, 4, 4, 2)).astype("float32")
    labels = np.array([0, 1, 2, 2, 1, 0])
    out = ops.convert_to_numpy(layer(x, labels, training=True))
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))
    normalised = (x - mean) / np.sqrt(var + layer.epsilon)
    expected = normalised * gamma[labels][:, None, None] - gamma[labels][:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_per_label_statistics_equal_one_call_per_label():
    grouped, _ = _layer()
    separate, _ = _layer()
    x = np.random.default_rng(1).normal(2.0, 3.0, (7, 4, 4, 2)).astype("float32")
    labels = np.array([0, 0, 0, 2, 2, 2, 2])
    with per_label_batch_statistics():
        out = ops.convert_to_numpy(grouped(x, labels, training=True))
    expected = np.concatenate(
        [
            ops.convert_to_numpy(
                separate(x[labels == c], labels[labels == c], training=True)
            )
            for c in (0, 2)
        ]
    )
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(
            ops.convert_to_numpy(getattr(grouped, name)),
            ops.convert_to_numpy(getattr(separate, name)),
            rtol=1e-5,
            atol=1e-5,
        )
    # Class 1 was absent: its running statistics did not move.
    assert ops.convert_to_numpy(grouped.moving_variance)[1].tolist() == [1.0, 1.0]


def test_only_present_classes_move_their_statistics():
    layer, _ = _layer()
    x = np.full((4, 4, 4, 2), 3.0, "float32")
    layer(x, np.array([1, 1, 1, 1]), training=True)
    mean = ops.convert_to_numpy(layer.moving_mean)
    variance = ops.convert_to_numpy(layer.moving_variance)
    np.testing.assert_allclose(mean[1], [1.5, 1.5])  # momentum 0.5 towards 3.0
    np.testing.assert_allclose(variance[1], [0.5, 0.5])  # towards 0.0
    np.testing.assert_allclose(mean[[0, 2]], 0.0)
    np.testing.assert_allclose(variance[[0, 2]], 1.0)


def test_inference_is_batch_independent_and_per_class():
    layer, gamma = _layer()
    layer.moving_mean.assign(np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], "float32"))
    layer.moving_variance.assign(np.full((3, 2), 4.0, "float32"))
    x = np.random.default_rng(1).normal(size=(5, 4, 4, 2)).astype("float32")
    labels = np.array([2, 0, 1, 2, 0])
    batch = ops.convert_to_numpy(layer(x, labels, training=False))
    for i in range(5):
        alone = ops.convert_to_numpy(layer(x[i : i + 1], labels[i : i + 1]))
        np.testing.assert_allclose(batch[i : i + 1], alone, rtol=1e-6, atol=1e-6)
    mean = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])[labels][:, None, None]
    expected = (x - mean) / np.sqrt(4.0 + layer.epsilon) * gamma[labels][:, None, None]
    np.testing.assert_allclose(
        batch, expected - gamma[labels][:, None, None], rtol=1e-5, atol=1e-5
    )


def test_config_round_trip_and_dense_inputs():
    layer = ConditionalBatchNormalization(7, momentum=0.9, epsilon=1e-3)
    clone = ConditionalBatchNormalization.from_config(layer.get_config())
    assert (clone.num_classes, clone.momentum, clone.epsilon) == (7, 0.9, 1e-3)
    out = clone(np.ones((3, 5), "float32"), np.array([0, 6, 3]), training=True)
    assert tuple(out.shape) == (3, 5)


def test_functional_model_serialises(tmp_path):
    z = keras.Input((4,))
    label = keras.Input((), dtype="int32")
    out = ConditionalBatchNormalization(3)(z, label)
    model = keras.Model([z, label], out)
    model.layers[-1].moving_mean.assign(np.ones((3, 4), "float32"))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    args = [np.ones((2, 4), "float32"), np.array([0, 2])]
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(args)), ops.convert_to_numpy(loaded(args))
    )
