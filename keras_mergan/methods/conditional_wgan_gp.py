"""AC-GAN + WGAN-GP conditional GAN: the base every conditional method extends."""

import keras
import numpy as np

from keras_mergan.inference import predict
from keras_mergan.methods.losses import auxiliary_classifier_loss
from keras_mergan.methods.wasserstein_gan import WassersteinGAN


@keras.saving.register_keras_serializable(package="keras_mergan")
class ConditionalWGANGP(WassersteinGAN):
    """Conditional WGAN-GP with an AC-GAN classifier head on the critic.

    `WassersteinGAN` plus the AC-GAN terms: the critic learns to classify
    real images (`lambda_cls * CE(aux(x), y)`, logged weighted as `critic_cls`) and
    the generator to draw images it classifies as their label. Alone, the
    model is sequential fine-tuning (SFT); trained on cumulative tasks it is
    joint training (JT). Continual methods subclass it and add losses through
    `critic_penalties` and `generator_penalties`.

    Args:
        generator: `(z, label) -> image` model.
        critic: `image -> (score, logits)` model.
        lambda_cls: weight of the AC-GAN classification terms.
        **kwargs: `WassersteinGAN` arguments (`latent_dim`, `n_critic`,
            `lambda_gp`, `seed`).

    Example:

    >>> from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    >>> gan = ConditionalWGANGP(build_dcgan_generator(10), build_dcgan_critic(10))
    >>> gan.compile()
    """

    def __init__(
        self,
        generator: keras.Model,
        critic: keras.Model,
        lambda_cls: float = 1.0,
        **kwargs,
    ):
        super().__init__(generator, critic, **kwargs)
        self.lambda_cls = float(lambda_cls)

    def loss_names(self) -> list[str]:
        return super().loss_names() + ["critic_cls"]

    def class_loss(self, labels, logits):
        return self.lambda_cls * auxiliary_classifier_loss(labels, logits)

    def generate(self, z, labels, batch_size: int = 256):
        """Images for (z, labels) with per-class statistics, as exported.

        `z` and `labels` may be arrays, backend tensors or Python lists.
        """
        z = np.asarray(keras.ops.convert_to_numpy(z), "float32")
        labels = np.asarray(labels, "int32").reshape(-1)
        if len(labels) != len(z):
            raise ValueError(f"{len(z)} latent vectors but {len(labels)} labels")
        return predict(self.generator, [z, labels], batch_size)

    def get_config(self):
        config = super().get_config()
        config.update(lambda_cls=self.lambda_cls)
        return config
