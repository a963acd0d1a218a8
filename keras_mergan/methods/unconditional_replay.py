"""Unconditional WGAN-GP whose critic sees real data mixed with replays."""

import keras
import numpy as np
from keras import ops

from keras_mergan.backend import training_backend
from keras_mergan.inference import predict
from keras_mergan.methods.mixing import BALANCED, checked_mixing_ratio
from keras_mergan.methods.wasserstein_gan import WassersteinGAN


@keras.saving.register_keras_serializable(package="keras_mergan")
class UnconditionalReplayGAN(WassersteinGAN):
    """Base of DGR and LT-GANs: an unconditional generator learns a data mix.

    The generator is the (conditional) generator given to the constructor,
    always called with label 0: its class-0 batch-norm row acts as a plain
    batch norm. The critic's class head is not trained.

    In every critic batch of `B` images, the first `round(r * B)` stay real
    and the rest are replaced by images of the frozen `replay_generator`,
    with `r = real_fraction()` fixed per task (1 in the first task). The
    critic treats the whole mix as real data, so the generator learns the
    mixture of the current task and of what the replay generator remembers.
    Subclasses train further networks on the same mix (`extra_updates`,
    with their `default_extra_optimizers`) and label replays
    (`replay_targets`).

    Args:
        generator: `(z, label) -> image` model.
        critic: `image -> (score, logits)` model.
        mixing_ratio: r from the second task on: a number in (0, 1], or
            `"balanced"` for `1 / (tasks seen)`, which gives the new task
            and every earlier one (through the replays) the same share.
        **kwargs: `WassersteinGAN` arguments.

    Example:

    >>> from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    >>> gan = UnconditionalReplayGAN(build_dcgan_generator(1), build_dcgan_critic(1))
    >>> gan.compile()
    >>> gan.begin_task(3, [3], [0, 1, 2, 3])
    >>> gan.real_fraction()
    0.25
    """

    def __init__(
        self,
        generator: keras.Model,
        critic: keras.Model,
        mixing_ratio: float | str = BALANCED,
        **kwargs,
    ):
        ratio = checked_mixing_ratio(mixing_ratio)
        super().__init__(generator, critic, **kwargs)
        self.mixing_ratio = ratio
        self.task_state.add("real_fraction")

    def begin_task(self, task_index, task_classes, seen_classes) -> None:
        """The base's snapshot, then this task's real fraction."""
        super().begin_task(task_index, task_classes, seen_classes)
        self.task_state.set(real_fraction=self.real_fraction())

    def real_fraction(self) -> float:
        """Fraction r of each critic batch that is real data in this task."""
        if self.task_index < 1:
            return 1.0
        if self.mixing_ratio == BALANCED:
            return 1.0 / (self.task_index + 1)
        return self.mixing_ratio

    def replay_targets(self, replayed_images):
        """Labels of replayed images in the mix; 0 (no class) by default."""
        return ops.zeros((ops.shape(replayed_images)[0],), "int32")

    def mix_with_replay(self, images, labels):
        """The step's images and labels, each critic batch's tail replayed.

        Rows of every critic batch from position `round(r * B)` on are
        replaced by the replay generator's images and `replay_targets`. The
        mix is a row mask over a full batch of replays, which keeps every
        shape static on each backend. Under data parallelism each replica
        mixes its share exactly as one device mixes those rows.
        """
        labels = ops.cast(labels, "int32")
        n = ops.shape(images)[0]
        replayed = ops.stop_gradient(
            self.replay_generator(
                [self.sample_latent(n), ops.zeros((n,), "int32")], training=False
            )
        )
        # A replica holds a contiguous share of the global batch, whose
        # critic batches the base step cuts: positions count from its start.
        index, count = training_backend().replica()
        batch_size = n * count // self.n_critic
        position = (index * n + ops.arange(n)) % batch_size
        real_count = ops.round(
            self.task_state.value("real_fraction") * ops.cast(batch_size, "float32")
        )
        is_real = ops.cast(position, "float32") < real_count
        mask = ops.reshape(is_real, (-1,) + (1,) * (len(images.shape) - 1))
        mixed_images = ops.where(mask, images, replayed)
        mixed_labels = ops.where(is_real, labels, self.replay_targets(replayed))
        return mixed_images, mixed_labels

    def extra_updates(self, images, labels) -> dict:
        """Updates of further networks on the step's mix; values by name."""
        return {}

    def _gan_step(self, data):
        images, labels = self.mix_with_replay(*data)
        values = self.adversarial_updates(images, ops.zeros_like(labels))
        values.update(self.extra_updates(images, labels))
        return self.log_values(values)

    def minimize_extra(self, loss_fn, network: keras.Model, prefix: str):
        """`training_backend().minimize` of `loss_fn` over `network`'s variables."""
        return training_backend().minimize(
            loss_fn, network.trainable_variables, self.extra_optimizer(prefix)
        )

    def get_config(self):
        return {**super().get_config(), "mixing_ratio": self.mixing_ratio}

    def generate_unconditional(self, z, batch_size: int = 256):
        """The generator's images for `z` (label 0, its running statistics)."""
        labels = np.zeros((len(z),), "int32")
        return predict(self.generator, [z, labels], batch_size)
