"""ResNet conditional generator and AC-GAN critic of WGAN-GP (LSUN, 64x64).

The architecture of WGAN-GP's 64x64 ResNet (Gulrajani et al., 2017), used by
MeRGAN for LSUN: residual blocks that upsample by nearest neighbour in the
generator and downsample by mean pooling in the critic, 3x3 convolutions, a
1x1 convolution on the shortcut. The generator is conditioned through
conditional batch norm, as the DCGAN-32 generator; the critic normalises with
layer norm over (H, W, C), which keeps the gradient penalty per sample.
"""

import math

import keras
from keras import layers

from keras_mergan.layers import ConditionalBatchNormalization


def _num_resolution_steps(image_size: int) -> int:
    steps = math.log2(image_size / 4) if image_size >= 8 else 0
    if steps != int(steps) or steps < 1:
        raise ValueError(
            f"image_size must be 4 * 2**k with k >= 1 (8, 16, 32, 64, 128, ...), "
            f"got {image_size}"
        )
    return int(steps)


def build_resnet_generator(
    num_classes: int,
    channels: int = 3,
    latent_dim: int = 128,
    image_size: int = 64,
    width: int = 64,
    name: str = "generator",
) -> keras.Model:
    """Conditional ResNet generator: (z, label) -> image in [-1, 1].

    Dense(4*4*8w) -> k up-blocks (8w -> 8w, 4w, 2w, w at 64x64) -> CBN ->
    ReLU -> Conv3x3(channels) -> tanh, with k = log2(image_size / 4). An
    up-block is CBN -> ReLU -> Upsample -> Conv3x3 -> CBN -> ReLU -> Conv3x3,
    plus Upsample -> Conv1x1 on the shortcut.

    Example:

    >>> generator = build_resnet_generator(num_classes=4, width=8)
    >>> images = generator([keras.random.normal((2, 128)), keras.ops.array([0, 3])])
    >>> images.shape
    (2, 64, 64, 3)
    """
    steps = _num_resolution_steps(image_size)
    z = keras.Input((latent_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label")
    x = layers.Dense(4 * 4 * 8 * width, name=f"{name}_dense")(z)
    x = layers.Reshape((4, 4, 8 * width), name=f"{name}_reshape")(x)
    for i in range(steps):
        filters = width * min(8, 2 ** (steps - 1 - i))
        prefix = f"{name}_block{i}"
        shortcut = layers.UpSampling2D(name=f"{prefix}_shortcut_up")(x)
        shortcut = layers.Conv2D(filters, 1, name=f"{prefix}_shortcut_conv")(shortcut)
        x = ConditionalBatchNormalization(num_classes, name=f"{prefix}_cbn0")(x, label)
        x = layers.ReLU(name=f"{prefix}_relu0")(x)
        x = layers.UpSampling2D(name=f"{prefix}_up")(x)
        x = layers.Conv2D(filters, 3, padding="same", name=f"{prefix}_conv0")(x)
        x = ConditionalBatchNormalization(num_classes, name=f"{prefix}_cbn1")(x, label)
        x = layers.ReLU(name=f"{prefix}_relu1")(x)
        x = layers.Conv2D(filters, 3, padding="same", name=f"{prefix}_conv1")(x)
        x = layers.Add(name=f"{prefix}_add")([shortcut, x])
    x = ConditionalBatchNormalization(num_classes, name=f"{name}_cbn_out")(x, label)
    x = layers.ReLU(name=f"{name}_relu_out")(x)
    x = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv_out")(x)
    # float32 whatever the dtype policy: the images every loss compares.
    image = layers.Activation("tanh", dtype="float32", name=f"{name}_tanh")(x)
    return keras.Model([z, label], image, name=name)


def build_resnet_critic(
    num_classes: int,
    channels: int = 3,
    image_size: int = 64,
    width: int = 64,
    name: str = "critic",
) -> keras.Model:
    """ResNet WGAN critic with an AC-GAN head: image -> (score, logits).

    Conv3x3(w) -> k down-blocks (w -> 2w, 4w, 8w, 8w at 64x64) -> Flatten ->
    Dense(1) (Wasserstein score) and Dense(num_classes) (logits). A
    down-block is LN -> ReLU -> Conv3x3 -> LN -> ReLU -> Conv3x3 -> MeanPool,
    plus MeanPool -> Conv1x1 on the shortcut.

    Example:

    >>> critic = build_resnet_critic(num_classes=4, width=8)
    >>> score, logits = critic(keras.random.normal((2, 64, 64, 3)))
    >>> score.shape, logits.shape
    ((2, 1), (2, 4))
    """
    steps = _num_resolution_steps(image_size)
    image = keras.Input((image_size, image_size, channels), name="image")
    x = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv_in")(image)
    for i in range(steps):
        in_filters, filters = x.shape[-1], width * min(8, 2 ** (i + 1))
        prefix = f"{name}_block{i}"
        shortcut = layers.AveragePooling2D(2, name=f"{prefix}_shortcut_pool")(x)
        shortcut = layers.Conv2D(filters, 1, name=f"{prefix}_shortcut_conv")(shortcut)
        x = layers.LayerNormalization(axis=(1, 2, 3), name=f"{prefix}_ln0")(x)
        x = layers.ReLU(name=f"{prefix}_relu0")(x)
        x = layers.Conv2D(in_filters, 3, padding="same", name=f"{prefix}_conv0")(x)
        x = layers.LayerNormalization(axis=(1, 2, 3), name=f"{prefix}_ln1")(x)
        x = layers.ReLU(name=f"{prefix}_relu1")(x)
        x = layers.Conv2D(filters, 3, padding="same", name=f"{prefix}_conv1")(x)
        x = layers.AveragePooling2D(2, name=f"{prefix}_pool")(x)
        x = layers.Add(name=f"{prefix}_add")([shortcut, x])
    x = layers.Flatten(name=f"{name}_flatten")(x)
    # float32 whatever the dtype policy: the WGAN and AC-GAN losses' inputs.
    score = layers.Dense(1, dtype="float32", name=f"{name}_wgan_head")(x)
    logits = layers.Dense(num_classes, dtype="float32", name=f"{name}_acgan_head")(x)
    return keras.Model(image, [score, logits], name=name)
