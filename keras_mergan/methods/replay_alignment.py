"""MeRGAN-RA: replay alignment of the generator with its frozen snapshot."""

from dataclasses import dataclass

import keras
from keras import ops

from keras_mergan.methods import paper
from keras_mergan.methods.losses import replay_alignment_loss
from keras_mergan.methods.replay import MemoryReplayGAN

RA_SCALINGS = ("reference", "mean")


@dataclass(frozen=True)
class ReplayAlignmentTerm:
    """RA's loss, `lambda_ra * L_RA`, for any `MemoryReplayGAN`.

    Example:

    >>> ReplayAlignmentTerm(1e-3, "mean").name
    'replay_alignment'
    """

    lambda_ra: float = paper.LAMBDA_RA
    scaling: str = paper.RA_SCALING
    name = "replay_alignment"
    names = (name,)

    def __post_init__(self):
        if self.scaling not in RA_SCALINGS:
            raise ValueError(
                f"ra_scaling must be one of {RA_SCALINGS}, got {self.scaling!r}"
            )

    def __call__(self, gan: MemoryReplayGAN):
        """`lambda_ra * L_RA` on a fresh replayed batch; 0 without old classes."""
        z = gan.sample_replay_latent()
        current = gan.generator([z, gan.replay_label_tensor()], training=False)
        loss = replay_alignment_loss(
            current,
            gan.remembered_images(z),
            ops.maximum(gan.old_class_count(), 1.0),
            self.scaling,
        )
        return self.lambda_ra * gan.has_replay() * loss

    def critic_terms(self, gan: MemoryReplayGAN) -> dict:
        return {}

    def generator_terms(self, gan: MemoryReplayGAN) -> dict:
        return {self.name: self(gan)}

    def config(self) -> dict:
        return {"lambda_ra": self.lambda_ra, "ra_scaling": self.scaling}


@keras.saving.register_keras_serializable(package="keras_mergan")
class ReplayAlignment(MemoryReplayGAN):
    """MeRGAN-RA: the generator keeps drawing what its snapshot drew.

    Every generator update adds `lambda_ra * L_RA` (`ReplayAlignmentTerm`),
    the pixel-wise L2 between the generator's and the replay generator's
    images for the same (z, c) of a replayed batch, c over the old classes
    only (the paper's c ~ U{1, t-1}; the current class has no memory to
    align with). The critic is unchanged.

    Both generators run with per-class statistics, the mode in which images
    are generated for evaluation and export: the aligned images are the ones
    that count, and the loss is exactly 0 right after the snapshot.

    `ra_scaling="reference"` with `lambda_ra=1e-3` is the MeRGAN reference
    code on MNIST (1e-2 on SVHN): per class, half the summed squared error of
    its replayed images, summed and divided by `k`
    (`keras_mergan.methods.losses.replay_alignment_loss`). Its weight on the mean
    squared error falls as 1/k with the number k of old classes.
    `ra_scaling="mean"` makes `lambda_ra` the weight of the per-pixel mean
    squared error, the same for every task.

    Logged term: `replay_alignment` (weighted), 0 in the first task.

    Args:
        generator: `(z, label) -> image` model.
        critic: `image -> (score, logits)` model.
        lambda_ra: weight of the alignment loss.
        ra_scaling: `"reference"` or `"mean"`, see above.
        **kwargs: `MemoryReplayGAN` arguments (`replay_batch`, ...).

    Example:

    >>> from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    >>> gan = ReplayAlignment(
    ...     build_dcgan_generator(10), build_dcgan_critic(10), lambda_ra=1e-3
    ... )
    >>> gan.compile()
    """

    def __init__(
        self,
        generator: keras.Model,
        critic: keras.Model,
        lambda_ra: float = paper.LAMBDA_RA,
        ra_scaling: str = paper.RA_SCALING,
        **kwargs,
    ):
        self.terms = (ReplayAlignmentTerm(float(lambda_ra), ra_scaling),)
        super().__init__(generator, critic, **kwargs)
