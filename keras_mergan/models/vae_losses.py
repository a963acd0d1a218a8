"""VAE losses written once in `keras.ops`, as pure functions of their inputs."""

from keras import ops


def reparameterize(mean, log_variance, noise):
    """z = mean + sigma * noise, noise ~ N(0, I): differentiable in mean and sigma."""
    return mean + ops.exp(0.5 * log_variance) * noise


def bernoulli_reconstruction_loss(images, logits):
    """-log p(x | z) in nats per image, summed over pixels, mean over the batch.

    `images` in [-1, 1] are read as pixel intensities (x + 1) / 2 in [0, 1],
    the usual Bernoulli likelihood of binarised-MNIST NLL tables; `logits`
    are the decoder's outputs before the sigmoid.
    """
    targets = (images + 1.0) / 2.0
    # max(l, 0) - l t + log(1 + exp(-|l|)): the stable sigmoid cross-entropy.
    per_pixel = (
        ops.relu(logits) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))
    )
    return ops.mean(ops.sum(ops.reshape(per_pixel, (ops.shape(logits)[0], -1)), 1))


def gaussian_kl_divergence(mean, log_variance):
    """KL(N(mean, exp(log_variance)) || N(0, I)) summed over z, mean over the batch."""
    per_dim = 0.5 * (ops.exp(log_variance) + ops.square(mean) - 1.0 - log_variance)
    return ops.mean(ops.sum(per_dim, axis=-1))


def negative_elbo(reconstruction, kl_divergence, beta=1.0):
    """The (beta-)VAE loss: reconstruction + beta * KL.

    With `beta = 1` it is the negative evidence lower bound, an upper bound
    on -log p(x) (the NLL estimate of LT-GANs' Table 1); `beta > 1`
    (beta-VAE, 4 in LT-GANs) trades reconstruction for disentangled latents.
    """
    return reconstruction + beta * kl_divergence
