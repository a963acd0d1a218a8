"""MeRGAN-JTR: joint training with replayed old classes."""

import keras
from keras import ops

from keras_mergan.losses import (
    auxiliary_classifier_loss,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from keras_mergan.methods.replay import MemoryReplayGAN

_CRITIC_TERMS = ("replay_critic_loss", "replay_critic_cls")
_GENERATOR_TERMS = ("replay_generator_loss",)
REPLAY_SCALINGS = ("reference", "mean")


@keras.saving.register_keras_serializable(package="keras_mergan")
class JointTrainingWithReplay(MemoryReplayGAN):
    """MeRGAN-JTR: the replay generator's old classes count as real data.

    Every critic and generator update also sees a replayed batch
    (`replay_batch // k` samples of each of the `k` old classes). For old
    class `i`, with the same z for both generators, the critic adds
    `mean D(G(z, i)) - mean D(G_old(z, i)) + lambda_cls CE(aux(G_old(z, i)), i)`
    and the generator adds `-mean D(G(z, i)) + lambda_cls CE(aux(G(z, i)), i)`.
    With `replay_scaling="reference"`, as in the MeRGAN reference code, the
    per-class terms are summed, not averaged: every old class weighs as much
    as the current task, and old classes together `k` times as much. With
    `replay_scaling="mean"` they are averaged: old classes together weigh as
    much as the current task, which leaves the new task more of each Adam
    step when the budget per task is short. Replays are made on the fly,
    never stored.

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
        replay_scaling: str = "reference",
        **kwargs,
    ):
        if replay_scaling not in REPLAY_SCALINGS:
            raise ValueError(
                f"replay_scaling must be one of {REPLAY_SCALINGS}, "
                f"got {replay_scaling!r}"
            )
        super().__init__(generator, critic, **kwargs)
        self.replay_scaling = replay_scaling

    def replay_weight(self) -> int:
        """Weight of the replay terms: `k` old classes summed, or 1 averaged."""
        return len(self.old_classes) if self.replay_scaling == "reference" else 1

    def loss_names(self) -> list[str]:
        return super().loss_names() + list(_CRITIC_TERMS + _GENERATOR_TERMS)

    def critic_penalties(self, real_images, labels) -> dict:
        terms = super().critic_penalties(real_images, labels)
        if not self.old_classes:
            return {**terms, **dict.fromkeys(_CRITIC_TERMS, ops.zeros(()))}
        z = self.sample_replay_latent()
        current = ops.stop_gradient(self.current_images_by_class(z))
        remembered = self.remembered_images(z)
        # One critic call for both halves: the critic has no batch statistics.
        scores, logits = self.critic(
            ops.concatenate([current, remembered], axis=0), training=True
        )
        n = len(self.replay_labels())
        weight = self.replay_weight()
        terms["replay_critic_loss"] = weight * wasserstein_critic_loss(
            scores[n:], scores[:n]
        )
        terms["replay_critic_cls"] = (
            weight
            * self.lambda_cls
            * auxiliary_classifier_loss(self.replay_label_tensor(), logits[n:])
        )
        return terms

    def generator_penalties(self, z, labels) -> dict:
        terms = super().generator_penalties(z, labels)
        if not self.old_classes:
            return {**terms, **dict.fromkeys(_GENERATOR_TERMS, ops.zeros(()))}
        scores, logits = self.critic(
            self.current_images_by_class(self.sample_replay_latent()), training=True
        )
        terms["replay_generator_loss"] = self.replay_weight() * (
            wasserstein_generator_loss(scores)
            + self.lambda_cls
            * auxiliary_classifier_loss(self.replay_label_tensor(), logits)
        )
        return terms

    def get_config(self):
        config = super().get_config()
        config.update(replay_scaling=self.replay_scaling)
        return config
