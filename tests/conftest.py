import numpy as np
import pytest

from keras_mergan.methods import ConditionalWGANGP
from keras_mergan.models import build_dcgan_critic, build_dcgan_generator


def tiny_gan(model_class=ConditionalWGANGP, num_classes=3, channels=1, **kwargs):
    """A DCGAN-32 of width 8 and 16-dim z: the real architecture, small and fast."""
    kwargs.setdefault("latent_dim", 16)
    kwargs.setdefault("seed", 0)
    gan = model_class(
        build_dcgan_generator(num_classes, channels, kwargs["latent_dim"], width=8),
        build_dcgan_critic(num_classes, channels, width=8),
        **kwargs,
    )
    gan.compile()
    return gan


def random_images(n, channels=1, seed=0):
    return (
        np.random.default_rng(seed)
        .uniform(-1, 1, (n, 32, 32, channels))
        .astype("float32")
    )


@pytest.fixture
def make_tiny_gan():
    return tiny_gan
