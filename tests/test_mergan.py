import numpy as np
from helpers import fit_random_tasks, tiny_gan

from keras_mergan.methods import MeRGAN


def test_joint_replay_and_alignment_train_together():
    gan = tiny_gan(MeRGAN, lambda_ra=1.0, replay_batch=8, n_critic=1)
    history = fit_random_tasks(gan, [[0], [1]], steps=2)
    for name in (
        "replay_critic_loss",
        "replay_critic_cls",
        "replay_generator_loss",
        "replay_alignment",
    ):
        first, second = history.history[name]
        assert first == 0.0 and np.isfinite(second) and second != 0.0, name
    assert gan.get_config()["lambda_ra"] == 1.0
    assert gan.get_config()["replay_batch"] == 8
