"""Per-task report of the unconditional replay methods."""

import numpy as np

from keras_mergan.evaluation.unconditional import class_distribution, task_report


class _FixedSamples:
    """An unconditional generator stand-in that always draws the same images."""

    latent_dim = 16

    def __init__(self, images):
        self.images = images

    def generate_unconditional(self, z):
        return self.images[: len(z)]


def test_report_scores_samples_against_the_seen_classes(digits, untrained_evaluator):
    seen = [0, 1]
    real = digits.x_test[np.isin(digits.y_test, seen)]
    noise = np.random.default_rng(0).uniform(-1, 1, real.shape).astype("float32")
    args = (seen, digits.x_test, digits.y_test, untrained_evaluator, len(real))

    faithful = task_report(_FixedSamples(real), *args)
    noisy = task_report(_FixedSamples(noise), *args)

    assert faithful["fid"] < 1e-6 < noisy["fid"]
    assert np.isclose(sum(faithful["generated_classes"].values()), 1.0)
    assert 0.0 <= noisy["seen_class_fraction"] <= 1.0
    # Neither a solver nor a student: no scores of theirs.
    assert not {"solver_accuracy", "student_nll"} & set(faithful)


def test_seen_classes_without_test_images_leave_those_scores_out(
    digits, untrained_evaluator
):
    classified = []

    class Scholar(_FixedSamples):
        def classify(self, images):
            classified.append(len(images))
            return np.zeros(len(images), "int64")

    others = digits.y_test != 0
    report = task_report(
        Scholar(digits.x_test[:10]),
        [0],
        digits.x_test[others],
        digits.y_test[others],
        untrained_evaluator,
        10,
    )
    assert 0.0 <= report["seen_class_fraction"] <= 1.0
    assert not {"fid", "solver_accuracy"} & set(report)
    # The solver labelled the 10 samples only, no test image.
    assert classified == [10]


class _FixedProbabilities:
    """An evaluator stand-in whose class probabilities are given."""

    num_classes = 10

    def __init__(self, probabilities):
        self.probabilities = np.asarray(probabilities, "float32")

    def predict_proba(self, images):
        return self.probabilities


def _one_hot(label, probability):
    row = np.full(10, (1 - probability) / 9)
    row[label] = probability
    return row


def test_solver_agreement_counts_only_recognised_samples_of_seen_classes():
    evaluator = _FixedProbabilities(
        [
            _one_hot(0, 0.99),  # recognised 0, the solver agrees
            _one_hot(1, 0.95),  # recognised 1, the solver says 0
            _one_hot(5, 0.99),  # an unseen class: not counted
            _one_hot(1, 0.5),  # unrecognisable: not counted
        ]
    )
    images = np.zeros((4, 32, 32, 1), "float32")
    report = class_distribution(
        evaluator, images, [0, 1], solver_labels=np.array([0, 0, 5, 1])
    )
    assert report["seen_class_fraction"] == 0.5
    assert report["solver_agreement"] == 0.5

    unrecognisable = _FixedProbabilities([_one_hot(1, 0.5)] * 4)
    report = class_distribution(
        unrecognisable, images, [0, 1], solver_labels=np.zeros(4, "int64")
    )
    assert "solver_agreement" not in report
    assert "solver_agreement" not in class_distribution(evaluator, images, [0, 1])
