import numpy as np
import pytest
from helpers import tiny_gan

from keras_mergan.methods.optimizers import wgan_adam


def test_warmup_rises_linearly_then_holds():
    optimizer = wgan_adam("adam", learning_rate=2e-4, warmup_steps=10)
    rates = []
    for step in (0, 5, 10, 500):
        optimizer.iterations.assign(step)
        rates.append(float(optimizer.learning_rate))
    np.testing.assert_allclose(rates, [0.0, 1e-4, 2e-4, 2e-4], rtol=1e-6)


def test_without_warmup_the_rate_is_the_papers():
    optimizer = wgan_adam("adam")
    assert float(optimizer.learning_rate) == pytest.approx(1e-4)
    assert (optimizer.beta_1, optimizer.beta_2) == (0.0, 0.9)


def test_every_task_restarts_the_warmup():
    gan = tiny_gan()
    gan.compile(
        generator_optimizer=wgan_adam("generator_adam", 1e-3, warmup_steps=4),
        critic_optimizer=wgan_adam("critic_adam", 1e-3, warmup_steps=20),
    )
    for optimizer in (gan.generator_optimizer, gan.critic_optimizer):
        optimizer.iterations.assign(3)
    assert float(gan.generator_optimizer.learning_rate) == pytest.approx(7.5e-4)
    gan.begin_task(1, [1], [0, 1])
    for optimizer in (gan.generator_optimizer, gan.critic_optimizer):
        assert int(optimizer.iterations) == 0
        assert float(optimizer.learning_rate) == 0.0


def test_beta_1_is_an_option():
    assert wgan_adam("adam", beta_1=0.5).beta_1 == 0.5


@pytest.mark.parametrize(
    "kwargs", [{"learning_rate": 0.0}, {"warmup_steps": -1}, {"beta_1": 1.0}]
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        wgan_adam("adam", **kwargs)
