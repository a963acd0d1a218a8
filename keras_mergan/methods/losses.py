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
    # float32 even when the critic computes in bfloat16: a sum of squares.
    flat = ops.cast(
        ops.reshape(input_gradients, (ops.shape(input_gradients)[0], -1)), "float32"
    )
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


def replay_alignment_loss(current_images, replayed_images, num_classes, scaling):
    """MeRGAN-RA's pixel-wise L2 between two generators' images, without lambda.

    `current_images` and `replayed_images` come from the same (z, c) pairs,
    `num_classes` old classes in equal shares.

    `scaling="reference"` is the MeRGAN reference code's loss: half the summed
    squared difference of each class's images (TensorFlow's `l2_loss`),
    summed over classes and divided by `num_classes`. It grows with the batch
    and image size: 64 replayed 32x32x1 images of one old class weigh
    32 * 1024 = 32768 times their mean squared error, nine old classes
    (7 images each) 3584 times. `scaling="mean"` is the mean squared error
    per pixel, whatever the batch, image size and number of classes.
    """
    squared = ops.square(current_images - replayed_images)
    if scaling == "reference":
        return ops.sum(squared) / (2.0 * num_classes)
    if scaling == "mean":
        return ops.mean(squared)
    raise ValueError(f"scaling must be 'reference' or 'mean', got {scaling!r}")


def elastic_weight_penalty(variables, anchors, fishers):
    """EWC's 1/2 sum_i F_i (theta_i - theta*_i)^2 over tensors, without lambda."""
    return 0.5 * sum(
        ops.sum(fisher * ops.square(variable - anchor))
        for variable, anchor, fisher in zip(variables, anchors, fishers, strict=True)
    )
