"""GAN losses written once in `keras.ops`, as pure functions of their inputs."""

from keras import ops


def wasserstein_critic_loss(real_scores, fake_scores):
    """Critic side of the WGAN objective: E[D(fake)] - E[D(real)]."""
    return ops.mean(fake_scores) - ops.mean(real_scores)


def wasserstein_generator_loss(fake_scores):
    """Generator side of the WGAN objective: -E[D(fake)]."""
    return -ops.mean(fake_scores)


def gradient_penalty(input_gradients):
    """WGAN-GP penalty E[(||grad_x D(x_hat)||_2 - 1)^2], without lambda.

    `input_gradients` are the critic's gradients with respect to the
    interpolates x_hat = alpha * real + (1 - alpha) * fake, one per sample.
    """
    flat = ops.reshape(input_gradients, (ops.shape(input_gradients)[0], -1))
    norms = ops.sqrt(ops.sum(ops.square(flat), axis=1) + 1e-12)
    return ops.mean(ops.square(norms - 1.0))


def interpolate(real, fake, alpha):
    """Random points on lines between real and fake samples, alpha ~ U(0, 1)."""
    alpha = ops.reshape(alpha, (-1,) + (1,) * (len(real.shape) - 1))
    return alpha * real + (1.0 - alpha) * fake


def auxiliary_classifier_loss(labels, logits):
    """AC-GAN term: mean sparse softmax cross-entropy of the critic's class head."""
    return ops.mean(
        ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    )
