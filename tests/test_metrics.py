"""Tests of keras_mergan.metrics (FID maths) against closed forms."""

import numpy as np
import pytest

from keras_mergan.metrics import (
    GaussianFit,
    feature_distance,
    fit_gaussian,
    frechet_distance,
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
