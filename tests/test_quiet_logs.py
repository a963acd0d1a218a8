"""What the package's own work prints besides its messages: nothing.

TensorFlow warns when a tf.function traces for most of its recent calls:
with Keras' `predict`, scoring a run did, since each task's models trace a
graph of their own, and again for a second batch size. Keras warns of a
variable the loss does not reach: the critic's class head in the
unconditional methods.
"""

import logging
import warnings

import keras
import numpy as np
import pytest
from helpers import numpy_copies, random_images, tiny_gan

from keras_mergan.data.tasks import TaskSequence, TaskStream
from keras_mergan.evaluation.evaluator import Evaluator, build_classifier
from keras_mergan.methods import DeepGenerativeReplay

only_tensorflow = pytest.mark.skipif(
    keras.config.backend() != "tensorflow", reason="TensorFlow's tf.function"
)


class CountsCalls(keras.layers.Layer):
    """Identity that counts the Python calls of `call`: under TensorFlow,
    one per trace of the graph it runs in."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, inputs):
        self.calls += 1
        return inputs


@only_tensorflow
def test_scoring_traces_the_evaluators_models_once_whatever_the_sample_counts():
    counter = CountsCalls()
    inputs = keras.Input((32, 32, 1))
    features = keras.layers.Dense(4, name="features")(
        keras.layers.Flatten()(counter(inputs))
    )
    classifier = keras.Model(
        inputs, keras.layers.Dense(3, activation="softmax")(features)
    )
    evaluator = Evaluator(classifier, ["a", "b", "c"])
    counter.calls = 0  # building the model called it symbolically
    for n_per_class in (5, 16, 37, 1):
        evaluator.scores_per_class(
            lambda c, n: random_images(n), [0, 1, 2], n_per_class, batch_size=16
        )
    assert counter.calls == 1
    for n in (3, 40, 0):
        assert evaluator.features(random_images(n), batch_size=16).shape == (n, 4)
    assert counter.calls == 2  # the feature model's one graph


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@only_tensorflow
def test_scoring_a_run_task_by_task_warns_of_no_retracing(digits):
    # As `evaluate` does: each task's models are loaded afresh and score a
    # few sample counts each.
    records = _Records()
    tensorflow_logger = logging.getLogger("tensorflow")
    tensorflow_logger.addHandler(records)
    try:
        for task in range(4):
            scholar = tiny_gan(
                DeepGenerativeReplay, num_classes=10, solver_width=8, seed=task
            )
            evaluator = Evaluator(
                build_classifier(digits.image_shape, 10, seed=task), digits.class_names
            )
            for n in (3, 10 + task):
                z = np.random.default_rng(n).standard_normal((n, scholar.latent_dim))
                images = scholar.generate(z.astype("float32"), np.arange(n) % 2)
                evaluator.predict_proba(images)
                evaluator.features(images)
    finally:
        tensorflow_logger.removeHandler(records)
    assert [m for m in records.messages if "retracing" in m] == []


def test_dgr_trains_its_critic_without_a_gradients_do_not_exist_warning():
    # DGR's critic has no class loss: its class head gets zero gradients on
    # every backend, not Keras' warning.
    scholar = tiny_gan(DeepGenerativeReplay, num_classes=10, solver_width=8)
    stream = TaskStream(
        random_images(16), np.arange(16) % 2, [[0], [1]], 2, 4, scholar.n_critic
    )
    head = [v for v in scholar.trainable_variables if "acgan_head" in v.path]
    before = numpy_copies(head)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scholar.fit(
            stream,
            epochs=2,
            steps_per_epoch=stream.steps_per_task,
            callbacks=[TaskSequence(stream)],
            verbose=0,
        )
    assert [str(w.message) for w in caught if "Gradients" in str(w.message)] == []
    assert head and all(
        np.array_equal(a, b) for a, b in zip(numpy_copies(head), before, strict=True)
    )
