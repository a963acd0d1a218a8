"""Per-task report of the unconditional replay methods."""

import numpy as np

from keras_mergan.unconditional import task_report


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
    class Scholar(_FixedSamples):
        def classify(self, images):
            raise AssertionError("no test image of the seen classes to classify")

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
