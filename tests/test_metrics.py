"""Tests of evaluation.scores (FID, KID, precision/recall) on known answers."""

import numpy as np
import pytest

from keras_mergan.evaluation import scores as metrics
from keras_mergan.evaluation.scores import (
    GaussianFit,
    feature_distance,
    fit_gaussian,
    frechet_distance,
    kernel_distance,
    precision_recall,
)


def _random_covariance(rng, dim):
    a = rng.standard_normal((dim, dim))
    return a @ a.T + 0.1 * np.eye(dim)


def test_identical_distributions_are_at_distance_zero():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6))
    assert feature_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    fit = GaussianFit(np.ones(5), _random_covariance(rng, 5))
    assert frechet_distance(fit, fit) == pytest.approx(0.0, abs=1e-8)


def test_diagonal_gaussians_match_the_closed_form():
    mean_a, var_a = np.array([0.0, 1.0, -2.0]), np.array([1.0, 4.0, 0.25])
    mean_b, var_b = np.array([1.0, 1.0, 0.0]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum(
        (np.sqrt(var_a) - np.sqrt(var_b)) ** 2
    )  # 5 + (4 + 1 + 0)
    a = GaussianFit(mean_a, np.diag(var_a))
    b = GaussianFit(mean_b, np.diag(var_b))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(a, b) == pytest.approx(10.0)


def test_full_covariances_match_the_eigenvalues_of_the_product():
    rng = np.random.default_rng(1)
    a = GaussianFit(rng.standard_normal(4), _random_covariance(rng, 4))
    b = GaussianFit(rng.standard_normal(4), _random_covariance(rng, 4))
    # tr sqrt(S_a S_b) from the (real, positive) eigenvalues of the product
    trace_root = np.sum(np.sqrt(np.linalg.eigvals(a.covariance @ b.covariance).real))
    expected = (
        np.sum((a.mean - b.mean) ** 2)
        + np.trace(a.covariance)
        + np.trace(b.covariance)
        - 2 * trace_root
    )
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-8)


def test_samples_converge_to_the_distance_of_their_gaussians():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, (20000, 3))
    y = rng.normal(2.0, 3.0, (20000, 3))  # expected 3 * (2^2 + (3 - 1)^2) = 24
    assert feature_distance(x, y) == pytest.approx(24.0, rel=0.03)


def test_singular_covariances_from_few_samples():
    rng = np.random.default_rng(3)
    x, y = rng.random((5, 16)), rng.random((7, 16))  # rank < dimension
    value = feature_distance(x, y)
    assert np.isfinite(value) and value > 0


def test_fit_and_validation():
    fit = fit_gaussian([[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_allclose(fit.mean, [1.0, 2.0])
    np.testing.assert_allclose(fit.covariance, [[2.0, 2.0], [2.0, 2.0]])
    with pytest.raises(ValueError, match="N >= 2"):
        fit_gaussian(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="feature sizes differ"):
        feature_distance(np.random.rand(4, 2), np.random.rand(4, 3))


def test_kid_of_a_hand_computed_case():
    # k(x, y) = (x y + 1)^3 in one dimension: within a, k(0, 1) = 1; within
    # b, k(1, 2) = 27; across, (1 + 1 + 8 + 27) / 4
    a, b = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    assert kernel_distance(a, b) == pytest.approx(1 + 27 - 2 * 37 / 4)
    assert kernel_distance(b, a) == pytest.approx(kernel_distance(a, b))


def test_kid_is_unbiased_and_computed_by_blocks(monkeypatch):
    rng = np.random.default_rng(0)
    same = [
        kernel_distance(rng.normal(size=(400, 4)), rng.normal(size=(300, 4)))
        for _ in range(5)
    ]
    shifted = kernel_distance(rng.normal(size=(400, 4)), rng.normal(0.3, 1, (300, 4)))
    # unbiased: around zero, of either sign, for one distribution (a biased
    # estimate stays above zero), well above it for a shifted one
    assert min(same) < 0 < max(same) and max(abs(v) for v in same) < 0.1 < shifted
    a, b = rng.normal(size=(10, 3)), rng.normal(size=(7, 3))
    whole = kernel_distance(a, b)
    monkeypatch.setattr(metrics, "_KERNEL_BLOCK", 3)
    assert kernel_distance(a, b) == pytest.approx(whole, rel=1e-12)
    with pytest.raises(ValueError, match="feature sizes"):
        kernel_distance(a, b[:, :2])
    with pytest.raises(ValueError, match="N >= 2"):
        kernel_distance(a[:1], b)


def test_precision_recall_of_a_hand_computed_case():
    # real points 0..3 on a line have nearest-neighbour radius 1: the fake
    # 0.5 lies in the balls of 0 and 1, the fakes 10 and 11 in none. The
    # fake 0.5's own radius (k = 1) is 9.5, so its ball holds every real point.
    real = np.arange(4.0).reshape(-1, 1)
    fake = np.array([[0.5], [10.0], [11.0]])
    assert precision_recall(real, fake, nearest_k=1) == pytest.approx(
        {"precision": 1 / 3, "recall": 1.0, "density": 2 / 3, "coverage": 0.5}
    )


def test_precision_recall_separate_quality_from_coverage():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 2))
    # a collapsed generator: every sample is good, half the data is missed
    collapsed = real[real[:, 0] > 0] + 1e-3
    scores = precision_recall(real, collapsed)
    assert scores["precision"] == 1.0 and scores["recall"] < 0.7
    assert precision_recall(real, real)["recall"] == 1.0
    with pytest.raises(ValueError, match="N >= 5"):
        precision_recall(real, real[:4])


def test_pooled_fid_can_be_below_every_per_class_fid():
    # Two classes far apart, each generated with half its spread: every
    # class is far from its real images, but the pooled Gaussians are
    # dominated by the distance between the classes, which both share.
    rng = np.random.default_rng(0)
    means = np.array([[-20.0, 0.0], [20.0, 0.0]])
    real = [m + rng.normal(size=(2000, 2)) for m in means]
    fake = [m + 0.5 * rng.normal(size=(2000, 2)) for m in means]
    per_class = [feature_distance(f, r) for f, r in zip(fake, real, strict=True)]
    pooled = feature_distance(np.concatenate(fake), np.concatenate(real))
    assert pooled < min(per_class)
    assert min(per_class) == pytest.approx(2 * 0.5**2, rel=0.1)
