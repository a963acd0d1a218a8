from pathlib import Path

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


@pytest.fixture(scope="session")
def run_cache(request, tmp_path_factory) -> Path:
    """Where synthetic runs (`export.synthetic.cached_run`) are kept.

    Shared by the export and serving tests, so a run trained for one is
    reused by the other; kept across sessions in pytest's cache when it is on.
    """
    cache = getattr(request.config, "cache", None)
    if cache is None:  # -p no:cacheprovider
        return tmp_path_factory.mktemp("runs")
    return Path(cache.mkdir("keras_mergan_synthetic_runs"))
