import keras
import numpy as np
from conftest import random_images, tiny_gan
from keras import ops

from keras_mergan.tasks import TaskSequence, TaskStream


def _numpy(variables):
    return [ops.convert_to_numpy(v).copy() for v in variables]


def _iterations(gan):
    return [
        int(ops.convert_to_numpy(o.iterations))
        for o in (gan.generator_optimizer, gan.critic_optimizer)
    ]


def _fit(gan, tasks, steps, batch_size=4, **kwargs):
    labels = np.arange(60) % gan.num_classes
    stream = TaskStream(
        random_images(60), labels, tasks, steps, batch_size, gan.n_critic
    )
    return gan.fit(
        stream,
        epochs=len(tasks),
        steps_per_epoch=steps,
        callbacks=[TaskSequence(stream), *kwargs.pop("callbacks", [])],
        verbose=0,
        **kwargs,
    )


def test_one_step_updates_both_networks_and_both_optimizers():
    gan = tiny_gan()
    generator_before = _numpy(gan.generator.trainable_variables)
    critic_before = _numpy(gan.critic.trainable_variables)
    replay_before = _numpy(gan.replay_generator.variables)
    history = _fit(gan, [[0, 1]], steps=1)

    def changed(before, variables):
        return [
            not np.allclose(b, a)
            for b, a in zip(before, _numpy(variables), strict=True)
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

    _fit(gan, [[0], [1], [2]], steps=2, callbacks=[Spy()])
    assert seen == [
        ([0], [0], [], [0, 0]),
        ([1], [0, 1], [0], [0, 0]),
        ([2], [0, 1, 2], [0, 1], [0, 0]),
    ]
    assert _iterations(gan) == [2, 2 * gan.n_critic]


def test_save_and_load_give_identical_samples_and_optimizer_state(tmp_path):
    gan = tiny_gan()
    _fit(gan, [[0], [1]], steps=2)
    gan.save(tmp_path / "gan.keras")
    loaded = keras.saving.load_model(tmp_path / "gan.keras")
    z = np.random.default_rng(0).normal(size=(6, gan.latent_dim)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(gan.generate(z, labels), loaded.generate(z, labels))
    for saved, restored in zip(
        _numpy(gan.replay_generator.weights),
        _numpy(loaded.replay_generator.weights),
        strict=True,
    ):
        np.testing.assert_array_equal(saved, restored)
    assert _iterations(loaded) == _iterations(gan)
    assert loaded.get_config()["lambda_gp"] == gan.lambda_gp


def test_generation_does_not_depend_on_the_batch():
    gan = tiny_gan()
    _fit(gan, [[0, 1, 2]], steps=2)
    z = np.random.default_rng(1).normal(size=(5, gan.latent_dim)).astype("float32")
    labels = np.array([2, 0, 1, 1, 0])
    batch = gan.generate(z, labels)
    for i in range(5):
        np.testing.assert_allclose(
            batch[i : i + 1], gan.generate(z[i : i + 1], labels[i : i + 1]), atol=1e-5
        )
