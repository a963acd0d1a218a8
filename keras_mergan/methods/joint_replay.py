"""MeRGAN-JTR: joint training with replayed old classes."""

from dataclasses import dataclass

import keras
from keras import ops

from keras_mergan.methods import paper
from keras_mergan.methods.losses import wasserstein_critic_loss
from keras_mergan.methods.replay import MemoryReplayGAN

REPLAY_SCALINGS = ("reference", "mean")


@dataclass(frozen=True)
class JointReplayTerms:
    """JTR's losses on a replayed batch, for any `MemoryReplayGAN`.

    For old class `i`, with the same z for both generators, the critic adds
    `mean D(G(z, i)) - mean D(G_old(z, i)) + lambda_cls CE(aux(G_old(z, i)), i)`
    and the generator adds `-mean D(G(z, i)) + lambda_cls CE(aux(G(z, i)), i)`,
    weighted by `weight` (see `JointTrainingWithReplay`).

    Example:

    >>> JointReplayTerms("mean").names
    ('replay_critic_loss', 'replay_critic_cls', 'replay_generator_loss')
    """

    scaling: str = paper.REPLAY_SCALING
    critic_names = ("replay_critic_loss", "replay_critic_cls")
    generator_names = ("replay_generator_loss",)

    def __post_init__(self):
        if self.scaling not in REPLAY_SCALINGS:
            raise ValueError(
                f"replay_scaling must be one of {REPLAY_SCALINGS}, got {self.scaling!r}"
            )

    @property
    def names(self) -> tuple[str, ...]:
        return self.critic_names + self.generator_names

    def config(self) -> dict:
        return {"replay_scaling": self.scaling}

    def weight(self, gan: MemoryReplayGAN):
        """`k` old classes summed (`"reference"`), or 1 averaged (`"mean"`);
        0 without old classes."""
        if self.scaling == "reference":
            return gan.old_class_count()
        return gan.has_replay()

    def critic_terms(self, gan: MemoryReplayGAN) -> dict:
        z = gan.sample_replay_latent()
        current = ops.stop_gradient(gan.current_images_by_class(z))
        remembered = gan.remembered_images(z)
        # One critic call for both halves: the critic has no batch statistics.
        scores, logits = gan.critic(
            ops.concatenate([current, remembered], axis=0), training=True
        )
        n = gan.replay_batch
        weight = self.weight(gan)
        return {
            "replay_critic_loss": weight
            * wasserstein_critic_loss(scores[n:], scores[:n]),
            "replay_critic_cls": weight
            * gan.class_loss(gan.replay_label_tensor(), logits[n:]),
        }

    def generator_terms(self, gan: MemoryReplayGAN) -> dict:
        scores, logits = gan.critic(
            gan.current_images_by_class(gan.sample_replay_latent()), training=True
        )
        return {
            "replay_generator_loss": self.weight(gan)
            * gan.generator_objective(gan.replay_label_tensor(), scores, logits)
        }


@keras.saving.register_keras_serializable(package="keras_mergan")
class JointTrainingWithReplay(MemoryReplayGAN):
    """MeRGAN-JTR: the replay generator's old classes count as real data.

    Every critic and generator update also sees a replayed batch
    (`replay_batch` samples shared evenly over the `k` old classes), with the
    losses of `JointReplayTerms`. With `replay_scaling="reference"`, as in
    the MeRGAN reference code, the per-class terms are summed, not averaged:
    every old class weighs as much as the current task, and old classes
    together `k` times as much. With `replay_scaling="mean"` they are
    averaged: old classes together weigh as much as the current task, which
    leaves the new task more of each Adam step when the budget per task is
    short. Replays are made on the fly, never stored.

    The gradient penalty stays on the current task's real and generated
    images: the reference code does not interpolate replays, and the
    penalty's double backprop is the costliest part of a critic update.

    Logged terms: `replay_critic_loss` (the Wasserstein part),
    `replay_critic_cls` and `replay_generator_loss`, 0 in the first task.

    Args:
        generator: `(z, label) -> image` model.
        critic: `image -> (score, logits)` model.
        replay_scaling: `"reference"` or `"mean"`, see above.
        **kwargs: `MemoryReplayGAN` arguments (`replay_batch`, ...).

    Example:

    >>> from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    >>> gan = JointTrainingWithReplay(
    ...     build_dcgan_generator(10), build_dcgan_critic(10), replay_batch=64
    ... )
    >>> gan.compile()
    """

    def __init__(
        self,
        generator: keras.Model,
        critic: keras.Model,
        replay_scaling: str = paper.REPLAY_SCALING,
        **kwargs,
    ):
        self.terms = (JointReplayTerms(replay_scaling),)
        super().__init__(generator, critic, **kwargs)
