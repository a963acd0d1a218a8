import keras
import numpy as np
from keras import ops

from keras_mergan.backend import training_backend
from keras_mergan.methods.losses import (
    auxiliary_classifier_loss,
    gradient_penalty,
    interpolate,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)


def _linear_critic(w):
    return lambda x: ops.sum(ops.reshape(x, (ops.shape(x)[0], -1)) * w, axis=1)


def test_gradient_penalty_of_linear_critic_is_analytic():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3 * 4 * 2,)).astype("float32")
    x = rng.normal(size=(5, 3, 4, 2)).astype("float32")
    gradients = training_backend().input_gradient(
        _linear_critic(ops.convert_to_tensor(w)), ops.convert_to_tensor(x)
    )
    expected = (np.linalg.norm(w) - 1.0) ** 2
    np.testing.assert_allclose(
        ops.convert_to_numpy(gradient_penalty(gradients)), expected, rtol=1e-5
    )


def test_gradient_penalty_is_differentiable_in_the_critic_weights():
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: needs the double backprop.
    w0 = np.array([3.0, 4.0], "float32")
    w = keras.Variable(w0)
    x = ops.convert_to_tensor(np.ones((2, 2), "float32"))
    optimizer = keras.optimizers.SGD(learning_rate=1.0)
    optimizer.build([w])
    backend = training_backend()

    def loss_fn():
        gradients = backend.input_gradient(_linear_critic(w.value), x)
        return gradient_penalty(gradients), {}

    backend.minimize(loss_fn, [w], optimizer)
    expected = w0 - 2 * (5.0 - 1.0) * w0 / 5.0
    np.testing.assert_allclose(ops.convert_to_numpy(w), expected, rtol=1e-5)


def test_wasserstein_losses():
    real = ops.convert_to_tensor(np.array([[1.0], [3.0]], "float32"))
    fake = ops.convert_to_tensor(np.array([[0.0], [-2.0]], "float32"))
    assert float(wasserstein_critic_loss(real, fake)) == -1.0 - 2.0
    assert float(wasserstein_generator_loss(fake)) == 1.0


def test_interpolate_uses_one_alpha_per_sample():
    real = np.ones((2, 2, 2, 1), "float32")
    fake = np.zeros((2, 2, 2, 1), "float32")
    mixed = ops.convert_to_numpy(
        interpolate(real, fake, np.array([0.25, 1.0], "float32"))
    )
    np.testing.assert_allclose(mixed[0], 0.25)
    np.testing.assert_allclose(mixed[1], 1.0)


def test_auxiliary_classifier_loss_is_mean_cross_entropy():
    logits = np.array([[2.0, 0.0], [0.0, 1.0]], "float32")
    labels = np.array([0, 0])
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -log_softmax[[0, 1], labels].mean()
    np.testing.assert_allclose(
        float(auxiliary_classifier_loss(labels, logits)), expected, rtol=1e-5
    )
