"""Catastrophic forgetting on real digits, and the methods that prevent it.

One model learns digit 0 on the built-in digits, then each method learns
digit 1 from it, with a budget chosen so that the cost stays around a minute
per method and backend while the outcome is clear-cut: a width-16 DCGAN
learns a recognisable 0 in 150 iterations at a raised learning rate, and 150
iterations of fine-tuning on 1 erase it (evaluator accuracy on 0 from ~98% to
~0% with TensorFlow).
"""

import functools

import keras
import pytest

from keras_mergan.data import load_dataset
from keras_mergan.data.tasks import TaskSequence, TaskStream, cumulative_tasks
from keras_mergan.evaluation.accuracy import generated_accuracy
from keras_mergan.evaluation.evaluator import Evaluator
from keras_mergan.methods import METHODS
from keras_mergan.methods.optimizers import wgan_adam
from keras_mergan.models import build_dcgan_critic, build_dcgan_generator

# What a method achieves is backend-independent: its loss terms are written
# once in keras.ops, and each backend's differentiate-and-apply is covered by
# the per-backend training tests (test_conditional_wgan_gp, test_mergan,
# test_task_switch, test_resume). Run once, these cost about 5 minutes less
# per extra backend pass.
pytestmark = pytest.mark.backend_independent

TASKS = [[0], [1]]
ITERATIONS = 150
BATCH_SIZE = 32
LEARNING_RATE = 5e-4
SAMPLES = 200


@functools.cache
def digits():
    return load_dataset("digits")


@functools.cache
def evaluator():
    return Evaluator.for_dataset(digits(), verbose=0)  # the one the package ships


def _compiled_gan(method_name: str):
    method = METHODS[method_name]
    keras.utils.set_random_seed(0)
    gan = method.model_class(
        build_dcgan_generator(10, 1, latent_dim=32, width=16),
        build_dcgan_critic(10, 1, width=16),
        latent_dim=32,
        seed=0,
    )
    gan.compile(
        wgan_adam("generator_adam", LEARNING_RATE),
        wgan_adam("critic_adam", LEARNING_RATE),
    )
    return gan


def _stream(gan, method_name: str) -> TaskStream:
    dataset = digits()
    tasks = cumulative_tasks(TASKS) if METHODS[method_name].cumulative else TASKS
    return TaskStream(
        dataset.x_train, dataset.y_train, tasks, ITERATIONS, BATCH_SIZE, gan.n_critic
    )


def _class_zero_accuracy(gan) -> float:
    return generated_accuracy(gan, evaluator(), [0], SAMPLES)[0]


@functools.cache
def first_task() -> tuple[list, list, float]:
    """Generator and critic weights after task 1, and their accuracy on 0.

    Task 1 has nothing to remember, so every method learns it as fine-tuning
    does ("the network learned after the first task is the same in all
    methods", MeRGAN Fig. 5); the methods start task 2 from this one model.
    """
    gan = _compiled_gan("sft")
    stream = _stream(gan, "sft")
    gan.fit(
        stream,
        epochs=1,
        steps_per_epoch=ITERATIONS,
        callbacks=[TaskSequence(stream)],
        verbose=0,
    )
    weights = gan.generator.get_weights(), gan.critic.get_weights()
    return *weights, _class_zero_accuracy(gan)


@functools.cache
def class_zero_accuracy(method_name: str) -> tuple[float, float]:
    """Evaluator accuracy on generated 0s after task 1 and after task 2."""
    generator_weights, critic_weights, after_first = first_task()
    gan = _compiled_gan(method_name)
    gan.generator.set_weights(generator_weights)
    gan.critic.set_weights(critic_weights)
    stream = _stream(gan, method_name).starting_at(1)
    gan.fit(
        stream,
        initial_epoch=1,
        epochs=2,
        steps_per_epoch=ITERATIONS,
        callbacks=[TaskSequence(stream)],
        verbose=0,
    )
    return after_first, _class_zero_accuracy(gan)


def test_sequential_fine_tuning_forgets_class_zero():
    after_first, after_second = class_zero_accuracy("sft")
    assert after_first >= 0.8, "the budget must be enough to learn digit 0"
    assert after_second <= 0.3


@pytest.mark.parametrize("method_name", ["jt", "jtr", "ra"])
def test_method_keeps_class_zero_where_fine_tuning_forgets(method_name):
    _, sft_after_second = class_zero_accuracy("sft")
    after_first, after_second = class_zero_accuracy(method_name)
    assert after_first >= 0.8
    assert after_second >= 0.7
    assert after_second - sft_after_second >= 0.4
