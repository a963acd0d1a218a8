"""MeRGAN with both of its losses: joint training with replay and alignment."""

import keras

from keras_mergan.methods import paper
from keras_mergan.methods.joint_replay import JointReplayTerms
from keras_mergan.methods.replay import MemoryReplayGAN
from keras_mergan.methods.replay_alignment import ReplayAlignmentTerm


@keras.saving.register_keras_serializable(package="keras_mergan")
class MeRGAN(MemoryReplayGAN):
    """MeRGAN-JTR+RA: replays join the adversarial game and are aligned.

    The critic takes the terms of `JointReplayTerms`; the generator takes
    `ReplayAlignmentTerm` and then `JointReplayTerms`' term, each drawing its
    own replayed batch.

    Args:
        generator: `(z, label) -> image` model.
        critic: `image -> (score, logits)` model.
        replay_scaling: as for `JointTrainingWithReplay`.
        lambda_ra: as for `ReplayAlignment`.
        ra_scaling: as for `ReplayAlignment`.
        **kwargs: `MemoryReplayGAN` arguments (`replay_batch`, ...).

    Example:

    >>> from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    >>> gan = MeRGAN(build_dcgan_generator(10), build_dcgan_critic(10))
    >>> gan.compile()
    """

    def __init__(
        self,
        generator: keras.Model,
        critic: keras.Model,
        replay_scaling: str = paper.REPLAY_SCALING,
        lambda_ra: float = paper.LAMBDA_RA,
        ra_scaling: str = paper.RA_SCALING,
        **kwargs,
    ):
        # Alignment first: the order in which the two draw their replays.
        self.terms = (
            ReplayAlignmentTerm(float(lambda_ra), ra_scaling),
            JointReplayTerms(replay_scaling),
        )
        super().__init__(generator, critic, **kwargs)
