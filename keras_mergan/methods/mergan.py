"""MeRGAN with both of its losses: joint training with replay and alignment."""

import keras

from keras_mergan.methods.joint_replay import JointTrainingWithReplay
from keras_mergan.methods.replay_alignment import ReplayAlignment


@keras.saving.register_keras_serializable(package="keras_mergan")
class MeRGAN(JointTrainingWithReplay, ReplayAlignment):
    """MeRGAN-JTR+RA: replays join the adversarial game and are aligned.

    The losses of `JointTrainingWithReplay` and `ReplayAlignment` together;
    each draws its own replayed batch.

    Args:
        generator: `(z, label) -> image` model.
        critic: `image -> (score, logits)` model.
        **kwargs: `ReplayAlignment` and `MemoryReplayGAN` arguments
            (`lambda_ra`, `ra_scaling`, `replay_batch`, ...).

    Example:

    >>> from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    >>> gan = MeRGAN(build_dcgan_generator(10), build_dcgan_critic(10))
    >>> gan.compile()
    """
