"""A convolutional variational autoencoder: LT-GANs' inference (Student) model."""

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops

from keras_mergan.layers import PenaltyLeakyReLU
from keras_mergan.models.vae_losses import (
    bernoulli_reconstruction_loss,
    gaussian_kl_divergence,
    negative_elbo,
    reparameterize,
)


def build_vae_encoder(
    image_shape: Sequence[int],
    latent_dim: int = 32,
    width: int = 32,
    name: str = "student_encoder",
) -> keras.Model:
    """image -> (mean, log_variance) of q(z | x).

    Conv5x5(w, s2) -> LReLU(0.2) -> Conv5x5(2w, s2) -> LReLU -> Conv5x5(4w, s2)
    -> LReLU -> Dense(latent_dim) twice: the DCGAN critic's body.

    Example:

    >>> encoder = build_vae_encoder((32, 32, 1), latent_dim=4, width=8)
    >>> [tuple(t.shape) for t in encoder(keras.random.normal((2, 32, 32, 1)))]
    [(2, 4), (2, 4)]
    """
    image = keras.Input(tuple(int(d) for d in image_shape), name="image")
    x = image
    for i, filters in enumerate((width, 2 * width, 4 * width)):
        x = layers.Conv2D(
            filters, 5, strides=2, padding="same", name=f"{name}_conv{i}"
        )(x)
        x = PenaltyLeakyReLU(0.2, name=f"{name}_lrelu{i}")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    # float32 whatever the dtype policy: the KL term's inputs.
    mean = layers.Dense(latent_dim, dtype="float32", name=f"{name}_mean")(x)
    log_variance = layers.Dense(
        latent_dim, dtype="float32", name=f"{name}_log_variance"
    )(x)
    return keras.Model(image, [mean, log_variance], name=name)


def build_vae_decoder(
    image_shape: Sequence[int],
    latent_dim: int = 32,
    width: int = 32,
    name: str = "student_decoder",
) -> keras.Model:
    """z -> pixel logits of p(x | z) (Bernoulli on (x + 1) / 2).

    Dense(s/8 * s/8 * 4w) -> ReLU -> Deconv5x5(2w, s2) -> ReLU ->
    Deconv5x5(w, s2) -> ReLU -> Deconv5x5(channels, s2): the DCGAN generator's
    body without batch normalisation, for images of side s (a multiple of 8).

    Example:

    >>> decoder = build_vae_decoder((32, 32, 1), latent_dim=4, width=8)
    >>> tuple(decoder(keras.random.normal((2, 4))).shape)
    (2, 32, 32, 1)
    """
    size, _, channels = (int(d) for d in image_shape)
    if size % 8:
        raise ValueError(f"image side must be a multiple of 8, got {size}")
    z = keras.Input((latent_dim,), name="z")
    x = layers.Dense(
        (size // 8) ** 2 * 4 * width, activation="relu", name=f"{name}_dense"
    )(z)
    x = layers.Reshape((size // 8, size // 8, 4 * width), name=f"{name}_reshape")(x)
    for i, filters in enumerate((2 * width, width)):
        x = layers.Conv2DTranspose(
            filters, 5, strides=2, padding="same", name=f"{name}_deconv{i}"
        )(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    # float32 whatever the dtype policy: the reconstruction loss's input.
    logits = layers.Conv2DTranspose(
        channels, 5, strides=2, padding="same", dtype="float32", name=f"{name}_deconv2"
    )(x)
    return keras.Model(z, logits, name=name)


@keras.saving.register_keras_serializable(package="keras_mergan")
class VariationalAutoencoder(keras.Model):
    """A (beta-)VAE over images in [-1, 1]: encoder, decoder and their loss.

    Not trained on its own: a method owning it (e.g. `LifelongTwinGAN`)
    minimises `loss_terms` inside its train step.

    Args:
        image_shape: (side, side, channels), side a multiple of 8.
        latent_dim: size of z.
        width: channels of the first encoder / last decoder convolution.
        beta: weight of the KL term (1: the ELBO; 4: LT-GANs' disentangling).
        name: prefix of every layer name (for an optimizer map).

    Example:

    >>> vae = VariationalAutoencoder((32, 32, 1), latent_dim=4, width=8)
    >>> images = keras.random.uniform((2, 32, 32, 1), -1, 1)
    >>> sorted(vae.loss_terms(images, keras.random.normal((2, 4))))
    ['kl_divergence', 'loss', 'reconstruction']
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_dim: int = 32,
        width: int = 32,
        beta: float = 1.0,
        name: str = "student",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.image_shape = tuple(int(d) for d in image_shape)
        self.latent_dim = int(latent_dim)
        self.width = int(width)
        self.beta = float(beta)
        self.encoder = build_vae_encoder(
            self.image_shape, self.latent_dim, self.width, f"{name}_encoder"
        )
        self.decoder = build_vae_decoder(
            self.image_shape, self.latent_dim, self.width, f"{name}_decoder"
        )
        self.built = True

    def loss_terms(self, images, noise, training: bool = True) -> dict:
        """`loss` (reconstruction + beta * KL), `reconstruction`, `kl_divergence`.

        `noise` ~ N(0, I) of shape [N, latent_dim] draws z from q(z | x).
        """
        mean, log_variance = self.encoder(images, training=training)
        logits = self.decoder(
            reparameterize(mean, log_variance, noise), training=training
        )
        reconstruction = bernoulli_reconstruction_loss(images, logits)
        kl_divergence = gaussian_kl_divergence(mean, log_variance)
        return {
            "loss": negative_elbo(reconstruction, kl_divergence, self.beta),
            "reconstruction": reconstruction,
            "kl_divergence": kl_divergence,
        }

    def negative_log_likelihood(
        self, images, batch_size: int = 256, seed: int = 0
    ) -> float:
        """NLL estimate in nats per image: reconstruction + KL (the -ELBO at beta 1).

        One z per image from q(z | x), with noise from `seed`: the same images
        and seed give the same number.
        """
        images = np.asarray(images, "float32")
        rng = np.random.default_rng(seed)
        total = 0.0
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            noise = rng.standard_normal((len(batch), self.latent_dim)).astype("float32")
            terms = self.loss_terms(
                ops.convert_to_tensor(batch),
                ops.convert_to_tensor(noise),
                training=False,
            )
            nll = terms["reconstruction"] + terms["kl_divergence"]
            total += float(ops.convert_to_numpy(nll)) * len(batch)
        return total / len(images)

    def call(self, images, training=False):
        """Reconstructions in [-1, 1] from the posterior means."""
        mean, _ = self.encoder(images, training=training)
        return 2.0 * ops.sigmoid(self.decoder(mean, training=training)) - 1.0

    def get_config(self):
        config = super().get_config()
        config.update(
            image_shape=list(self.image_shape),
            latent_dim=self.latent_dim,
            width=self.width,
            beta=self.beta,
        )
        return config
