"""One compiled step for every task: per-task values are variables, not constants."""

import keras
import pytest
from helpers import fit_random_tasks, tiny_gan

from keras_mergan.methods import (
    ConditionalWGANGP,
    DeepGenerativeReplay,
    ElasticWeightConsolidationGAN,
    JointTrainingWithReplay,
    LifelongTwinGAN,
    MeRGAN,
    ReplayAlignment,
)

TASKS = [[0], [1], [2]]
# Traced programs under JAX compile for tens of seconds each on a CPU: the
# replay method with the most per-task state stands for the others there.
COMPILED_BACKEND_METHODS = (
    [JointTrainingWithReplay]
    if keras.config.backend() == "jax"
    else [
        ConditionalWGANGP,
        JointTrainingWithReplay,
        ReplayAlignment,
        MeRGAN,
        ElasticWeightConsolidationGAN,
        DeepGenerativeReplay,
    ]
)


class _Calls:
    """Counts calls of a method, per task of the fit."""

    def __init__(self, gan, name):
        self.count = 0
        self.per_task = []
        method = getattr(gan, name)

        def counted(*args, **kwargs):
            self.count += 1
            return method(*args, **kwargs)

        setattr(gan, name, counted)

    def callback(self):
        return keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: self.per_task.append(self.count)
        )


@pytest.mark.skipif(
    keras.config.backend() == "torch", reason="torch runs the step eagerly: no trace"
)
@pytest.mark.parametrize("model_class", COMPILED_BACKEND_METHODS)
def test_step_is_traced_once_across_three_tasks(model_class):
    gan = (
        tiny_gan(model_class, replay_batch=4)
        if issubclass(model_class, JointTrainingWithReplay | ReplayAlignment | MeRGAN)
        else tiny_gan(model_class)
    )
    # The step's Python body runs once per trace of the compiled step.
    traces = _Calls(gan, "adversarial_updates")
    fit_random_tasks(gan, TASKS, steps=2, callbacks=[traces.callback()])
    first_task = traces.per_task[0]
    assert first_task >= 1
    assert traces.per_task == [first_task] * len(TASKS)


@pytest.mark.parametrize(
    ("model_class", "rebuilds"), [(JointTrainingWithReplay, 0), (LifelongTwinGAN, 1)]
)
def test_train_function_is_rebuilt_only_when_the_step_changes(model_class, rebuilds):
    gan = tiny_gan(model_class)
    forced = []
    make = gan.make_train_function

    def spy(force=False):
        forced.append(force)
        return make(force=force)

    gan.make_train_function = spy
    fit_random_tasks(gan, TASKS, steps=1)
    # Made once for the first task; LT-GANs train the Teacher in the first
    # task only: one new step after it.
    assert forced.count(True) == 1 + rebuilds
