"""Distances between a generated and a real feature set: FID, KID, precision/recall.

All three take feature arrays ``[N, D]`` (in this package, the evaluator's
``"features"``), so they need no Inception download:

- `feature_distance`: FID (see below);
- `kernel_distance`: KID (Bińkowski et al., 2018), the unbiased estimate of
  the squared maximum mean discrepancy under the cubic polynomial kernel
  ``k(x, y) = (x.y / D + 1)^3``. Unlike FID it has no bias from the sample
  size (it can be slightly negative), so it compares sets of different
  sizes, such as a class with 100 real test images;
- `precision_recall`: improved precision and recall (Kynkäänniemi et al.,
  2019) with density and coverage (Naeem et al., 2020), from k-nearest-
  neighbour balls (k = 3) around each set's points, as computed by the
  authors' ``prdc`` package (the ``metrics`` extra). Precision is the share
  of generated samples inside the real manifold (quality), recall the share
  of real samples inside the generated one (coverage).

FID (Heusel et al., 2017) fits a Gaussian to each set of features and reports

    ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)).

``S_a S_b`` is not symmetric, but it is similar to the symmetric positive
semi-definite ``S_a^(1/2) S_b S_a^(1/2)``, so the trace of its square root is
the sum of the square roots of that matrix's eigenvalues: two symmetric
eigendecompositions (``numpy.linalg.eigh``), no SciPy ``sqrtm``. Computed in
float64; eigenvalues that rounding makes slightly negative count as zero.
"""

from __future__ import annotations

import contextlib
import io
from typing import NamedTuple

import numpy as np

__all__ = [
    "GaussianFit",
    "fit_gaussian",
    "frechet_distance",
    "feature_distance",
    "kernel_distance",
    "precision_recall",
    "NEAREST_K",
]

#: Neighbours of the k-NN balls of `precision_recall` (both papers' choice).
NEAREST_K = 3
# Rows of the kernel matrix computed at a time: pooled sets of 10 classes
# (10 000 x 10 000) would otherwise hold 800 MB at once.
_KERNEL_BLOCK = 1024


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


def _as_features(features, minimum: int) -> np.ndarray:
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < minimum:
        raise ValueError(f"need features [N >= {minimum}, D], got shape {x.shape}")
    return x


def _kernel_sums(x: np.ndarray, y: np.ndarray) -> float:
    """Sum of the cubic polynomial kernel over all pairs of rows of x and y."""
    total = 0.0
    for start in range(0, len(x), _KERNEL_BLOCK):
        block = x[start : start + _KERNEL_BLOCK] @ y.T / x.shape[1] + 1.0
        total += float((block**3).sum())
    return total


def kernel_distance(features_a, features_b) -> float:
    """KID: unbiased squared MMD of two feature sets under ``(x.y / D + 1)^3``.

    Computed on the full sets (no subsets), in float64, the kernel matrices
    a block of rows at a time.

    Example:
        >>> a, b = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
        >>> kernel_distance(a, b)  # (1) + (27) - 2 (1 + 1 + 8 + 27) / 4
        9.5
    """
    a, b = _as_features(features_a, 2), _as_features(features_b, 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    m, n = len(a), len(b)

    def within(x: np.ndarray) -> float:
        diagonal = float((((x * x).sum(axis=1) / x.shape[1] + 1.0) ** 3).sum())
        return (_kernel_sums(x, x) - diagonal) / (len(x) * (len(x) - 1))

    return within(a) + within(b) - 2.0 * _kernel_sums(a, b) / (m * n)


def precision_recall(
    real_features, fake_features, nearest_k: int = NEAREST_K
) -> dict[str, float]:
    """Precision, recall, density and coverage of fake features against real ones.

    ``prdc.compute_prdc`` (Naeem et al.'s implementation) on float32
    features; each set needs at least ``nearest_k + 2`` points (its k-th
    neighbour other than itself, exclusive of the last index).

    Example:
        >>> real = np.arange(8.0).reshape(-1, 1)
        >>> precision_recall(real, real + 100.0)
        {'precision': 0.0, 'recall': 0.0, 'density': 0.0, 'coverage': 0.0}
    """
    try:
        from prdc import compute_prdc
    except ImportError as error:
        raise ImportError(
            "precision and recall need the prdc package: "
            "pip install 'keras-mergan[metrics]'"
        ) from error
    real = _as_features(real_features, nearest_k + 2).astype(np.float32)
    fake = _as_features(fake_features, nearest_k + 2).astype(np.float32)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} and {fake.shape[1]}")
    # compute_prdc prints the set sizes on every call
    with contextlib.redirect_stdout(io.StringIO()):
        scores = compute_prdc(real, fake, nearest_k)
    return {name: float(value) for name, value in scores.items()}
