"""Replay health: the evaluator's view of what a replay method replayed.

A replay that collapses (one class drawn for another, images fading into
noise) otherwise shows only after the run, in the accuracy of the final
generator. After every task of a replay method (JTR, RA, JTR+RA, DGR,
LT-GANs), the frozen ``replay_generator`` that replayed the old classes
during that task is sampled and its samples are scored by the evaluator:

- `accuracy`: per old class, the fraction of the samples replayed *as* that
  class that the evaluator labels as it (conditional methods: the class the
  generator was asked for; DGR: the label its previous solver gave). LT-GANs
  replay unlabelled samples and have none;
- `class_share`: per old class, the fraction of all replayed samples the
  evaluator assigns to it (an even replay gives each ``1 / k`` of ``k``
  old classes); `other_share`: the fraction assigned to no old class.

A class whose accuracy falls below `min_accuracy`, or whose share falls
below `min_share` of an even share, is named in `warnings`, and
`keras_mergan.run.callbacks.ReplayHealth` raises `ReplayHealthWarning` as a
Python warning for each and merges the report into the task's
``metrics.json`` under ``"replay_health"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from keras import ops

from keras_mergan.inference import predict
from keras_mergan.methods.unconditional_replay import UnconditionalReplayGAN

__all__ = [
    "MIN_ACCURACY",
    "MIN_SHARE",
    "ReplayHealthWarning",
    "replay_health",
    "replay_samples",
]

#: Accuracy of an old class's replay below which a warning is raised.
MIN_ACCURACY = 0.5
#: Fraction of an even share of the replay below which a class is warned of.
MIN_SHARE = 0.5
#: Replayed samples per old class: enough to see a class collapse (a standard
#: error of at most 3.5 points on an accuracy) at a fraction of the
#: evaluation's cost.
SAMPLES_PER_CLASS = 200


class ReplayHealthWarning(UserWarning):
    """An old class is replayed badly (see `replay_health`).

    Example:
        >>> import warnings
        >>> warnings.simplefilter("error", ReplayHealthWarning)  # stop a run on it
    """


def replay_health(
    predicted: np.ndarray,
    labels: np.ndarray | None,
    old_classes: Sequence[int],
    min_accuracy: float = MIN_ACCURACY,
    min_share: float = MIN_SHARE,
    class_names: Sequence[str] | None = None,
) -> dict:
    """Accuracy and class balance of replayed samples, with warnings.

    Args:
        predicted: the evaluator's class of each replayed sample ``[N]``.
        labels: the class each sample is replayed as ``[N]``, or None when
            the replay has no labels (LT-GANs).
        old_classes: the classes the replay stands for.
        min_accuracy: a class replayed with a lower accuracy is warned of.
        min_share: a class with less than this fraction of an even share
            (``1 / len(old_classes)``) of the replay is warned of.
        class_names: names of the classes by index, for the warnings.

    Returns:
        ``old_classes``, ``samples``, ``accuracy`` (by class as a string;
        absent without labels), ``class_share``, ``other_share``,
        ``min_accuracy``, ``min_share`` and ``warnings`` (a list of texts).

    Example:
        >>> predicted, labels = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])
        >>> report = replay_health(predicted, labels, [0, 1])
        >>> report["accuracy"], report["class_share"]
        ({'0': 1.0, '1': 0.5}, {'0': 0.75, '1': 0.25})
        >>> report["warnings"]
        []
    """
    predicted = np.asarray(predicted).reshape(-1)
    old = [int(c) for c in old_classes]
    if not old or not len(predicted):
        raise ValueError("need at least one old class and one replayed sample")
    report: dict = {"old_classes": old, "samples": int(len(predicted))}
    problems = []
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape != predicted.shape:
            raise ValueError(f"{labels.shape[0]} labels for {len(predicted)} samples")
        accuracy = {}
        for c in old:
            mine = labels == c
            # a class the replay never labels has lost all of its samples
            hits = predicted[mine] == c
            accuracy[str(c)] = float(np.mean(hits)) if mine.any() else 0.0
        report["accuracy"] = accuracy
        problems += [
            f"{_named(c, class_names)}: replay accuracy {value:.3f} < {min_accuracy}"
            for c, value in accuracy.items()
            if value < min_accuracy
        ]
    share = {str(c): float(np.mean(predicted == c)) for c in old}
    report["class_share"] = share
    report["other_share"] = float(np.mean(~np.isin(predicted, old)))
    even = 1.0 / len(old)
    problems += [
        f"{_named(c, class_names)}: replay share {value:.3f} < {min_share} x even "
        f"share {even:.3f}"
        for c, value in share.items()
        if value < min_share * even
    ]
    report.update(min_accuracy=min_accuracy, min_share=min_share, warnings=problems)
    return report


def replay_samples(
    gan, old_classes: Sequence[int], n_per_class: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples of `gan.replay_generator` and the labels they are replayed with.

    A conditional replay (MeRGAN) draws `n_per_class` images of each old
    class; an unconditional one (DGR, LT-GANs) draws ``n_per_class *
    len(old_classes)`` images, labelled by DGR's previous solver and
    unlabelled (None) for LT-GANs.

    Example:
        >>> images, labels = replay_samples(gan, [0, 1], 100)  # doctest: +SKIP
    """
    old = np.asarray(old_classes, "int32")
    n = n_per_class * len(old)
    z = np.random.default_rng(seed).standard_normal((n, gan.latent_dim))
    z = z.astype("float32")
    conditional = not isinstance(gan, UnconditionalReplayGAN)
    labels = np.repeat(old, n_per_class) if conditional else np.zeros(n, "int32")
    images = predict(gan.replay_generator, [z, labels])
    if conditional:
        return images, labels
    if not hasattr(gan, "replay_solver"):
        return images, None
    return images, ops.convert_to_numpy(gan.replay_targets(images))


def _named(label: str, class_names: Sequence[str] | None) -> str:
    return f"class {class_names[int(label)] if class_names else label}"
