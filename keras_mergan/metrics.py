"""Fréchet distance between Gaussian fits of two feature sets (FID), numpy only.

FID (Heusel et al., 2017) fits a Gaussian to each set of features and reports

    ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)).

``S_a S_b`` is not symmetric, but it is similar to the symmetric positive
semi-definite ``S_a^(1/2) S_b S_a^(1/2)``, so the trace of its square root is
the sum of the square roots of that matrix's eigenvalues: two symmetric
eigendecompositions (``numpy.linalg.eigh``), no SciPy ``sqrtm``. Computed in
float64; eigenvalues that rounding makes slightly negative count as zero.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["GaussianFit", "fit_gaussian", "frechet_distance", "feature_distance"]


class GaussianFit(NamedTuple):
    """Mean ``[D]`` and covariance ``[D, D]`` (float64) of a feature set.

    Example:
        >>> fit = fit_gaussian(np.array([[0.0, 1.0], [2.0, 3.0]]))
        >>> fit.mean.tolist(), fit.covariance.tolist()
        ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """

    mean: np.ndarray
    covariance: np.ndarray


def fit_gaussian(features) -> GaussianFit:
    """Sample mean and unbiased covariance of features ``[N, D]``, ``N >= 2``."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need features [N >= 2, D], got shape {x.shape}")
    return GaussianFit(x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False)))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: GaussianFit, b: GaussianFit) -> float:
    """Squared Fréchet (2-Wasserstein) distance between two Gaussians.

    Example:
        >>> one = GaussianFit(np.zeros(2), np.eye(2))
        >>> round(frechet_distance(one, GaussianFit(np.ones(2), 4 * np.eye(2))), 6)
        4.0
    """
    if a.mean.shape != b.mean.shape:
        raise ValueError(
            f"feature sizes differ: {a.mean.shape[0]} and {b.mean.shape[0]}"
        )
    root_a = _psd_sqrt(np.asarray(a.covariance, np.float64))
    middle = root_a @ np.asarray(b.covariance, np.float64) @ root_a
    middle = (middle + middle.T) / 2  # symmetric up to rounding
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum()
    difference = np.asarray(a.mean, np.float64) - np.asarray(b.mean, np.float64)
    distance = (
        difference @ difference
        + np.trace(a.covariance)
        + np.trace(b.covariance)
        - 2.0 * trace_root
    )
    return float(max(distance, 0.0))


def feature_distance(features_a, features_b) -> float:
    """FID-style distance between two feature sets ``[N, D]`` and ``[M, D]``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.standard_normal((500, 3))
        >>> round(feature_distance(x, x), 9)
        0.0
    """
    return frechet_distance(fit_gaussian(features_a), fit_gaussian(features_b))
