import numpy as np
import pytest
from helpers import fit_random_tasks, tiny_gan
from keras import ops

from keras_mergan.methods import ReplayAlignment
from keras_mergan.methods.losses import replay_alignment_loss


def test_reference_scaling_is_half_the_summed_square_per_old_class():
    current = np.full((6, 2, 2, 1), 0.5, "float32")
    replayed = np.zeros_like(current)
    # Three old classes of two images: l2_loss per class 2 * 4 * 0.25 / 2 = 1,
    # summed over the classes and divided by their number.
    loss = replay_alignment_loss(current, replayed, 3, "reference")
    np.testing.assert_allclose(ops.convert_to_numpy(loss), 1.0)
    loss = replay_alignment_loss(current, replayed, 3, "mean")
    np.testing.assert_allclose(ops.convert_to_numpy(loss), 0.25)


def test_alignment_is_zero_at_the_snapshot_and_grows_with_training():
    gan = tiny_gan(ReplayAlignment, lambda_ra=1.0, replay_batch=8, n_critic=1)
    history = fit_random_tasks(gan, [[0], [1]], steps=2)
    first, second = history.history["replay_alignment"]
    assert first == 0.0 and np.isfinite(second) and second > 0.0
    assert float(ops.convert_to_numpy(gan.terms[0](gan))) > 0.0
    gan.begin_task(2, [2], [0, 1, 2])
    assert float(ops.convert_to_numpy(gan.terms[0](gan))) == 0.0


def test_mean_scaling_weighs_every_old_class_equally_across_tasks():
    gan = tiny_gan(ReplayAlignment, ra_scaling="mean", lambda_ra=2.0)
    gan.begin_task(2, [2], [0, 1, 2])
    gan.generator.weights[0].assign(gan.generator.weights[0] * 1.5)
    z = np.random.default_rng(0).normal(size=(64, gan.latent_dim)).astype("float32")
    labels = gan.replay_labels()
    difference = gan.generator([z, labels]) - gan.replay_generator([z, labels])
    expected = 2.0 * np.mean(np.square(ops.convert_to_numpy(difference)))
    gan.sample_replay_latent = lambda: ops.convert_to_tensor(z)
    np.testing.assert_allclose(
        ops.convert_to_numpy(gan.terms[0](gan)), expected, rtol=1e-4
    )


def test_unknown_scaling_is_refused():
    with pytest.raises(ValueError, match="ra_scaling"):
        tiny_gan(ReplayAlignment, ra_scaling="sum")
