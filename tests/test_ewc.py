import numpy as np
from helpers import fit_random_tasks, numpy_copies, tiny_gan
from keras import ops

from keras_mergan.methods import ElasticWeightConsolidationGAN


def _ewc_gan(**kwargs):
    kwargs.setdefault("fisher_samples", 4)
    return tiny_gan(ElasticWeightConsolidationGAN, **kwargs)


def _penalty(gan):
    z = ops.zeros((2, gan.latent_dim))
    terms = gan.generator_penalties(z, ops.convert_to_tensor([1, 1]))
    return float(ops.convert_to_numpy(terms["ewc_penalty"]))


def test_fisher_covers_the_old_classes_only():
    gan = _ewc_gan()
    gan.begin_task(0, [0], [0])
    assert not any(f.any() for f in numpy_copies(gan.fisher))
    gan.begin_task(1, [1], [0, 1])
    fisher = dict(
        zip(
            [v.path for v in gan.generator.trainable_variables],
            numpy_copies(gan.fisher),
            strict=True,
        )
    )
    assert all(np.isfinite(f).all() and (f >= 0).all() for f in fisher.values())
    assert all(f.any() for path, f in fisher.items() if "cbn" not in path)
    # Only class 0 was generated: the CBN rows of classes 1 and 2 carry none.
    gamma = fisher["generator_cbn1/gamma"]
    assert gamma[0].any() and not gamma[1:].any()
    for anchor, weight in zip(
        numpy_copies(gan.anchors),
        numpy_copies(gan.generator.trainable_variables),
        strict=True,
    ):
        np.testing.assert_array_equal(anchor, weight)


def test_penalty_is_zero_at_the_anchor_and_grows_away_from_it():
    gan = _ewc_gan(lambda_ewc=2.0)
    gan.begin_task(1, [1], [0, 1])
    assert _penalty(gan) == 0.0
    kernel, anchor, fisher = (
        gan.generator.trainable_variables[0],
        gan.anchors[0],
        gan.fisher[0],
    )
    kernel.assign(kernel + 0.1)
    expected = np.sum(ops.convert_to_numpy(fisher)) * 0.01  # 2 / 2 * F * 0.1^2
    assert np.isclose(_penalty(gan), expected, rtol=1e-3)
    assert ops.convert_to_numpy(anchor).any()


def test_penalty_is_logged_from_the_second_task():
    gan = _ewc_gan(lambda_ewc=1e3, n_critic=1)
    history = fit_random_tasks(gan, [[0], [1]], steps=2)
    first, second = history.history["ewc_penalty"]
    assert first == 0.0 and np.isfinite(second) and second > 0.0
    assert np.isfinite(history.history["generator_loss"]).all()
