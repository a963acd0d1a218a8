"""DCGAN-32 conditional generator and AC-GAN critic (MeRGAN, MNIST/SVHN)."""

import keras
from keras import layers

from keras_mergan.layers import (
    ConditionalBatchNormalization,
    PenaltyLeakyReLU,
    SpaceToDepthConv2D,
    SubPixelConv2DTranspose,
)


def build_dcgan_generator(
    num_classes: int,
    channels: int = 1,
    latent_dim: int = 128,
    width: int = 32,
    name: str = "generator",
    conv_implementation: str = "auto",
) -> keras.Model:
    """Conditional DCGAN generator: (z, label) -> image in [-1, 1], 32x32.

    Dense(4*4*4w) -> CBN -> ReLU -> Deconv5x5(2w, s2) -> CBN -> ReLU ->
    Deconv5x5(w, s2) -> CBN -> ReLU -> Deconv5x5(channels, s2) -> tanh,
    where w is `width` (32 in the MeRGAN reference code).

    The deconvolutions are `SubPixelConv2DTranspose` layers: the variables
    and outputs of `Conv2DTranspose`, computed as `conv_implementation` says
    (`"auto"`: a matmul on JAX/CPU, the backend's op elsewhere; `"matmul"`;
    `"native"`). Weights are interchangeable between the three.

    Example:

    >>> generator = build_dcgan_generator(num_classes=10)
    >>> images = generator([keras.random.normal((2, 128)), keras.ops.array([0, 1])])
    >>> images.shape
    (2, 32, 32, 1)
    """
    z = keras.Input((latent_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label")
    x = layers.Dense(4 * 4 * 4 * width, name=f"{name}_dense")(z)
    x = layers.Reshape((4, 4, 4 * width), name=f"{name}_reshape")(x)
    for i, filters in enumerate((2 * width, width)):
        x = ConditionalBatchNormalization(num_classes, name=f"{name}_cbn{i}")(x, label)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
        x = SubPixelConv2DTranspose(
            filters,
            5,
            strides=2,
            padding="same",
            implementation=conv_implementation,
            name=f"{name}_deconv{i}",
        )(x)
    x = ConditionalBatchNormalization(num_classes, name=f"{name}_cbn2")(x, label)
    x = layers.ReLU(name=f"{name}_relu2")(x)
    x = SubPixelConv2DTranspose(
        channels,
        5,
        strides=2,
        padding="same",
        implementation=conv_implementation,
        name=f"{name}_deconv2",
    )(x)
    # float32 whatever the dtype policy: the images every loss compares.
    image = layers.Activation("tanh", dtype="float32", name=f"{name}_tanh")(x)
    return keras.Model([z, label], image, name=name)


def build_dcgan_critic(
    num_classes: int,
    channels: int = 1,
    image_size: int = 32,
    width: int = 32,
    name: str = "critic",
    conv_implementation: str = "auto",
) -> keras.Model:
    """WGAN critic with an AC-GAN classifier head: image -> (score, logits).

    Conv5x5(w, s2) -> LReLU(0.2) -> Conv5x5(2w, s2) -> LReLU -> Conv5x5(4w, s2)
    -> LReLU -> Dense(1) (Wasserstein score) and Dense(num_classes) (logits).
    No normalisation: the gradient penalty is defined per sample. The
    activations are `PenaltyLeakyReLU` (a `LeakyReLU` that is cheaper to
    differentiate twice on TF).

    The convolutions are `SpaceToDepthConv2D` layers: the variables and
    outputs of `Conv2D`, computed as `conv_implementation` says (`"auto"`: a
    matmul on JAX/CPU, the backend's op elsewhere; `"matmul"`; `"native"`).
    Weights are interchangeable between the three.

    Example:

    >>> critic = build_dcgan_critic(num_classes=10)
    >>> score, logits = critic(keras.random.normal((2, 32, 32, 1)))
    >>> score.shape, logits.shape
    ((2, 1), (2, 10))
    """
    image = keras.Input((image_size, image_size, channels), name="image")
    x = image
    for i, filters in enumerate((width, 2 * width, 4 * width)):
        x = SpaceToDepthConv2D(
            filters,
            5,
            strides=2,
            padding="same",
            implementation=conv_implementation,
            name=f"{name}_conv{i}",
        )(x)
        x = PenaltyLeakyReLU(0.2, name=f"{name}_lrelu{i}")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    # float32 whatever the dtype policy: the WGAN and AC-GAN losses' inputs.
    score = layers.Dense(1, dtype="float32", name=f"{name}_wgan_head")(x)
    logits = layers.Dense(num_classes, dtype="float32", name=f"{name}_acgan_head")(x)
    return keras.Model(image, [score, logits], name=name)
