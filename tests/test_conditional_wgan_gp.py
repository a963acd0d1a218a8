import keras
import numpy as np
import pytest
from helpers import fit_random_tasks, numpy_copies, tiny_gan
from keras import ops


def _iterations(gan):
    return [
        int(ops.convert_to_numpy(o.iterations))
        for o in (gan.generator_optimizer, gan.critic_optimizer)
    ]


def test_one_step_updates_both_networks_and_both_optimizers():
    gan = tiny_gan()
    generator_before = numpy_copies(gan.generator.trainable_variables)
    critic_before = numpy_copies(gan.critic.trainable_variables)
    replay_before = numpy_copies(gan.replay_generator.variables)
    history = fit_random_tasks(gan, [[0, 1]], steps=1)

    def changed(before, variables):
        return [
            not np.allclose(b, a)
            for b, a in zip(before, numpy_copies(variables), strict=True)
        ]

    # Every weight that reaches the loss moves: all of the critic's but the
    # score bias (E[D(fake)] - E[D(real)] cancels it), and all of the
    # generator's except the CBN gamma/beta rows of the absent class 2.
    critic_moved = changed(critic_before, gan.critic.trainable_variables)
    paths = [v.path for v in gan.critic.trainable_variables]
    assert [p for p, moved in zip(paths, critic_moved, strict=True) if not moved] == [
        "critic_wgan_head/bias"
    ]
    assert (
        sum(changed(generator_before, gan.generator.trainable_variables))
        >= len(generator_before) - 3
    )
    assert not any(changed(replay_before, gan.replay_generator.variables))
    assert _iterations(gan) == [1, gan.n_critic]
    for name in ("critic_loss", "generator_loss", "gradient_penalty", "critic_cls"):
        assert np.isfinite(history.history[name][0])


def test_task_boundary_snapshots_the_generator_and_resets_adam():
    gan = tiny_gan()
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(
                (gan.task_classes, gan.seen_classes, gan.old_classes, _iterations(gan))
            )
            np.testing.assert_allclose(
                ops.convert_to_numpy(gan.generator.weights[0]),
                ops.convert_to_numpy(gan.replay_generator.weights[0]),
            )

    fit_random_tasks(gan, [[0], [1], [2]], steps=2, callbacks=[Spy()])
    assert seen == [
        ([0], [0], [], [0, 0]),
        ([1], [0, 1], [0], [0, 0]),
        ([2], [0, 1, 2], [0, 1], [0, 0]),
    ]
    assert _iterations(gan) == [2, 2 * gan.n_critic]


def test_generation_does_not_depend_on_the_batch():
    gan = tiny_gan()
    fit_random_tasks(gan, [[0, 1, 2]], steps=2)
    z = np.random.default_rng(1).normal(size=(5, gan.latent_dim)).astype("float32")
    labels = np.array([2, 0, 1, 1, 0])
    batch = gan.generate(z, labels)
    for i in range(5):
        np.testing.assert_allclose(
            batch[i : i + 1], gan.generate(z[i : i + 1], labels[i : i + 1]), atol=1e-5
        )


def test_generate_takes_python_lists_and_tensors():
    gan = tiny_gan()
    z = keras.random.normal((3, gan.latent_dim), seed=1)
    from_list = gan.generate(z, [0, 1, 2])
    from_array = gan.generate(keras.ops.convert_to_numpy(z), np.array([0, 1, 2]))
    np.testing.assert_array_equal(from_list, from_array)
    with pytest.raises(ValueError, match="3 latent vectors but 2 labels"):
        gan.generate(z, [0, 1])
