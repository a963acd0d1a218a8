"""The matmul convolutions equal Keras' own layers: values, gradients, weights.

Run once per backend: `KERAS_BACKEND=<tensorflow|jax|torch> pytest -q` on
this file. Gradients are taken with the backend's autodiff directly, first
order (input and weight gradients) and second order (the gradient penalty's
double backprop: weight gradients of the squared input-gradient norm).
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_mergan.layers import (
    PenaltyLeakyReLU,
    SpaceToDepthConv2D,
    SubPixelConv2DTranspose,
)
from keras_mergan.models import build_dcgan_critic, build_dcgan_generator

BACKEND = keras.config.backend()

# (input HxW, in channels, filters, kernel, strides, padding); the first three
# transposed cases are the DCGAN-32 generator's deconvolutions.
TRANSPOSE_CASES = [
    ((4, 4), 128, 64, 5, 2, "same"),
    ((8, 8), 64, 32, 5, 2, "same"),
    ((16, 16), 32, 1, 5, 2, "same"),
    ((5, 7), 3, 4, 5, 2, "same"),
    ((5, 7), 3, 4, 5, 2, "valid"),
    ((6, 6), 2, 3, 4, 2, "same"),
    ((4, 5), 2, 3, 3, 3, "same"),
    ((4, 5), 2, 3, 3, (2, 3), "valid"),
    ((3, 3), 2, 3, 1, 2, "valid"),
    ((6, 5), 3, 2, 3, 1, "same"),
]
# The first three are the DCGAN-32 critic's convolutions.
CONV_CASES = [
    ((32, 32), 1, 32, 5, 2, "same"),
    ((16, 16), 32, 64, 5, 2, "same"),
    ((8, 8), 64, 128, 5, 2, "same"),
    ((7, 9), 3, 4, 5, 2, "same"),
    ((9, 9), 3, 4, 5, 2, "valid"),
    ((8, 7), 2, 3, 4, 3, "same"),
    ((8, 7), 2, 3, 3, (2, 3), "valid"),
    ((6, 6), 3, 2, 3, 1, "same"),
]


def _grad(fn, args):
    """Gradients of the scalar `fn(*args)` w.r.t. every tensor in `args`.

    The result is itself differentiable, so `_grad` can be nested.
    """
    if BACKEND == "jax":
        import jax

        # One compiled program instead of hundreds of eagerly compiled ops.
        return list(jax.jit(jax.grad(fn, argnums=tuple(range(len(args)))))(*args))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(args)
            value = fn(*args)
        return tape.gradient(value, args)
    import torch

    # Unused inputs (the bias in the penalty) get None, as in TF.
    return list(
        torch.autograd.grad(fn(*args), args, create_graph=True, allow_unused=True)
    )


def _tensors(*arrays):
    tensors = [ops.convert_to_tensor(a) for a in arrays]
    if BACKEND == "torch":
        tensors = [t.detach().requires_grad_(True) for t in tensors]
    return tensors


def _numpy(x):
    if BACKEND == "torch":
        x = x.detach()
    return ops.convert_to_numpy(x)


def _assert_close(actual, expected, what):
    actual, expected = _numpy(actual), _numpy(expected)
    assert actual.shape == expected.shape, what
    # The forms only reorder float32 sums: relative to the tensor's scale.
    scale = max(float(np.abs(expected).max()), 1e-3)
    np.testing.assert_allclose(
        actual, expected, rtol=0, atol=2e-5 * scale, err_msg=what
    )


def _layer_pair(fast_cls, native_cls, case, seed):
    size, in_channels, filters, kernel, strides, padding = case
    rng = np.random.default_rng(seed)
    kwargs = dict(filters=filters, kernel_size=kernel, strides=strides, padding=padding)
    native = native_cls(**kwargs)
    fast = fast_cls(implementation="matmul", **kwargs)
    x = rng.normal(size=(3, *size, in_channels)).astype("float32")
    native.build(x.shape)
    fast.build(x.shape)
    # Random bias too, so that its placement is checked.
    native.set_weights(
        [rng.normal(size=w.shape).astype("float32") * 0.3 for w in native.get_weights()]
    )
    fast.set_weights(native.get_weights())  # same variables, same layout
    y = native(x)
    cotangent = rng.normal(size=tuple(y.shape)).astype("float32")
    return native, fast, x, cotangent


def _check_layers(fast_cls, native_cls, case):
    native, fast, x, cotangent = _layer_pair(
        fast_cls, native_cls, case, seed=len(str(case))
    )
    assert [w.shape for w in fast.weights] == [w.shape for w in native.weights]
    kernel, bias, x_t, r = _tensors(*native.get_weights(), x, cotangent)

    def loss(layer):
        def fn(kernel, bias, x):
            y, _ = layer.stateless_call([kernel, bias], [], x)
            return ops.sum(y * r)

        return fn

    def penalty(layer):
        def fn(kernel, bias, x):
            input_grad = _grad(loss(layer), [kernel, bias, x])[2]
            return ops.sum(ops.square(input_grad))

        return fn

    _assert_close(fast(x), native(x), "forward")
    names = ("kernel gradient", "bias gradient", "input gradient")
    for fast_g, native_g, name in zip(
        _grad(loss(fast), [kernel, bias, x_t]),
        _grad(loss(native), [kernel, bias, x_t]),
        names,
        strict=True,
    ):
        _assert_close(fast_g, native_g, name)
    # The gradient penalty differentiates the input gradient once more; of
    # a linear layer's input gradient only the kernel is a variable.
    _assert_close(
        _grad(penalty(fast), [kernel, bias, x_t])[0],
        _grad(penalty(native), [kernel, bias, x_t])[0],
        "second-order kernel gradient",
    )


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=str)
def test_sub_pixel_matches_conv2d_transpose(case):
    _check_layers(SubPixelConv2DTranspose, keras.layers.Conv2DTranspose, case)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_space_to_depth_matches_conv2d(case):
    _check_layers(SpaceToDepthConv2D, keras.layers.Conv2D, case)


def test_activation_and_no_bias():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 4, 8)).astype("float32")
    kwargs = dict(filters=3, kernel_size=5, strides=2, padding="same", use_bias=False)
    native = keras.layers.Conv2DTranspose(activation="tanh", **kwargs)
    fast = SubPixelConv2DTranspose(activation="tanh", implementation="matmul", **kwargs)
    native.build(x.shape)
    fast.build(x.shape)
    fast.set_weights(native.get_weights())
    _assert_close(fast(x), native(x), "transpose, tanh, no bias")
    native = keras.layers.Conv2D(activation="relu", **kwargs)
    fast = SpaceToDepthConv2D(activation="relu", implementation="matmul", **kwargs)
    native.build(x.shape)
    fast.build(x.shape)
    fast.set_weights(native.get_weights())
    _assert_close(fast(x), native(x), "conv, relu, no bias")


@pytest.mark.parametrize("cls", [SubPixelConv2DTranspose, SpaceToDepthConv2D])
def test_config_round_trip_and_bad_implementation(cls):
    layer = cls(4, 5, strides=2, padding="same", implementation="matmul", name="x")
    config = layer.get_config()
    assert config["implementation"] == "matmul"
    clone = cls.from_config(config)
    assert clone.implementation == "matmul" and clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is cls
    with pytest.raises(ValueError, match="implementation"):
        cls(4, 5, implementation="fft")


def test_unsupported_configurations_fall_back_to_native():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    cases = [
        (SubPixelConv2DTranspose, keras.layers.Conv2DTranspose, {"output_padding": 1}),
        (SpaceToDepthConv2D, keras.layers.Conv2D, {"dilation_rate": 2, "strides": 1}),
    ]
    for fast_cls, native_cls, extra in cases:
        kwargs = dict(filters=2, kernel_size=3, padding="same")
        kwargs.setdefault("strides", 2)
        kwargs.update(extra)
        native = native_cls(**kwargs)
        fast = fast_cls(implementation="matmul", **kwargs)
        native.build(x.shape)
        fast.build(x.shape)
        fast.set_weights(native.get_weights())
        _assert_close(fast(x), native(x), f"fallback {extra}")


def test_dcgan_weights_interchange_across_implementations(tmp_path):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(4, 128)).astype("float32")
    labels = np.array([0, 3, 3, 9], dtype="int32")
    images = rng.uniform(-1, 1, size=(4, 32, 32, 1)).astype("float32")
    native_g = build_dcgan_generator(10, conv_implementation="native")
    fast_g = build_dcgan_generator(10, conv_implementation="matmul")
    fast_g.set_weights(native_g.get_weights())
    for training in (False, True):
        _assert_close(
            fast_g([z, labels], training=training),
            native_g([z, labels], training=training),
            f"generator, training={training}",
        )
    native_c = build_dcgan_critic(10, conv_implementation="native")
    fast_c = build_dcgan_critic(10, conv_implementation="matmul")
    path = tmp_path / "critic.weights.h5"
    native_c.save_weights(path)
    fast_c.load_weights(path)
    for fast_out, native_out in zip(fast_c(images), native_c(images), strict=True):
        _assert_close(fast_out, native_out, "critic")
    # A saved model keeps its layer classes and implementation.
    model_path = tmp_path / "generator.keras"
    fast_g.save(model_path)
    loaded = keras.saving.load_model(model_path)
    assert loaded.get_layer("generator_deconv0").implementation == "matmul"
    _assert_close(loaded([z, labels]), fast_g([z, labels]), "reloaded generator")


def _reference_critic():
    """The DCGAN-32 critic from stock Keras layers, as before the fast layers."""
    image = keras.Input((32, 32, 1))
    x = image
    for i, filters in enumerate((32, 64, 128)):
        x = keras.layers.Conv2D(
            filters, 5, strides=2, padding="same", name=f"critic_conv{i}"
        )(x)
        x = keras.layers.LeakyReLU(0.2, name=f"critic_lrelu{i}")(x)
    x = keras.layers.Flatten()(x)
    score = keras.layers.Dense(1, name="critic_wgan_head")(x)
    logits = keras.layers.Dense(10, name="critic_acgan_head")(x)
    return keras.Model(image, [score, logits])


@pytest.mark.parametrize("implementation", ["auto", "matmul"])
def test_critic_gradient_penalty_matches_stock_layers(implementation):
    """Loss, input gradient and penalty weight gradients of the whole critic."""
    rng = np.random.default_rng(3)
    reference = _reference_critic()
    critic = build_dcgan_critic(10, conv_implementation=implementation)
    critic.set_weights(reference.get_weights())
    x = _tensors(rng.uniform(-1, 1, size=(4, 32, 32, 1)).astype("float32"))[0]
    weights = _tensors(*reference.get_weights())

    def penalty(model):
        def score_sum(*args):
            (score, _), _ = model.stateless_call(list(args[:-1]), [], args[-1])
            return ops.sum(score)

        def fn(*args):
            input_grad = _grad(score_sum, list(args))[-1]
            norms = ops.sqrt(ops.sum(ops.square(input_grad), axis=(1, 2, 3)))
            return ops.mean(ops.square(norms - 1.0))

        return fn

    fast = _grad(penalty(critic), [*weights, x])
    slow = _grad(penalty(reference), [*weights, x])
    for i, variable in enumerate(reference.trainable_variables):
        # The biases and the class head do not enter the input gradient: a
        # backend may return None or zeros for them (TF's LeakyReLU: zeros).
        if slow[i] is None or not np.any(_numpy(slow[i])):
            assert fast[i] is None or not np.any(_numpy(fast[i])), variable.path
            continue
        _assert_close(fast[i], slow[i], f"penalty gradient of {variable.path}")


def test_penalty_leaky_relu_matches_leaky_relu():
    rng = np.random.default_rng(4)
    x_np = rng.normal(size=(5, 7)).astype("float32")
    layer, reference = PenaltyLeakyReLU(0.2), keras.layers.LeakyReLU(0.2)
    x = _tensors(x_np)[0]
    np.testing.assert_array_equal(_numpy(layer(x)), _numpy(reference(x)))
    (grad,) = _grad(lambda v: ops.sum(layer(v) * v), [x])
    (expected,) = _grad(lambda v: ops.sum(reference(v) * v), [x])
    _assert_close(grad, expected, "gradient")
    config = layer.get_config()
    assert config["negative_slope"] == 0.2
    assert PenaltyLeakyReLU.from_config(config).get_config() == config
