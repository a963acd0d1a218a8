"""Per-task scores of the unconditional replay methods (DGR, LT-GANs).

An unconditional generator cannot be asked for a class, so besides (for
DGR) the solver-labelled accuracy of `RunRecorder`, a task's report says
which classes the evaluator sees in the generator's samples:

- `generated_classes`: fraction of samples the evaluator assigns to each
  class;
- `seen_class_fraction`: fraction it assigns to a seen class with
  probability >= `confidence` (samples of forgotten or unseen classes and
  unrecognisable samples count against it);
- `fid`: the Frechet distance between the evaluator features of the
  samples and of the real test images of the seen classes;
- `solver_accuracy` (DGR): the solver's accuracy on the real test images of
  the seen classes, the classifier-continual-learning score;
- `solver_agreement` (DGR): among the samples the evaluator confidently
  assigns to a seen class, the fraction the solver labels the same way.
  With `seen_class_fraction` it tells apart the two ways DGR's
  solver-labelled accuracy falls: unrecognisable samples (a low fraction)
  or wrong labels on recognisable ones (a low agreement);
- `student_nll` (LT-GANs with a student): the student VAE's NLL estimate
  (reconstruction + KL, nats per image) on those test images.
"""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_mergan.evaluation.scores import feature_distance
from keras_mergan.run_folder import METRICS_FILE, write_json
from keras_mergan.sampling import fixed_latents


def class_distribution(
    evaluator,
    images,
    seen_classes: Sequence[int],
    confidence: float = 0.9,
    solver_labels: np.ndarray | None = None,
) -> dict:
    """`generated_classes`, `seen_class_fraction` and, given the solver's
    labels of `images`, `solver_agreement` (see above; left out when no
    sample is confidently of a seen class).

    Example:

    >>> # class_distribution(evaluator, gan.generate_unconditional(z), [0, 1])
    """
    probabilities = evaluator.predict_proba(images)
    predicted = np.argmax(probabilities, axis=-1)
    recognised = (np.max(probabilities, axis=-1) >= confidence) & np.isin(
        predicted, list(seen_classes)
    )
    counts = np.bincount(predicted, minlength=evaluator.num_classes) / len(predicted)
    distribution = {
        "generated_classes": {str(c): float(f) for c, f in enumerate(counts)},
        "seen_class_fraction": float(np.mean(recognised)),
        "confidence": float(confidence),
    }
    if solver_labels is not None and recognised.any():
        agrees = np.asarray(solver_labels)[recognised] == predicted[recognised]
        distribution["solver_agreement"] = float(np.mean(agrees))
    return distribution


def task_report(
    gan,
    seen_classes: Sequence[int],
    test_images: np.ndarray,
    test_labels: np.ndarray,
    evaluator=None,
    samples: int = 1000,
    seed: int = 0,
    fid: bool = True,
) -> dict:
    """The report of a DGR or LT-GANs model after a task (see the module doc).

    Scores on test images are left out when the seen classes have none (a
    small folder's test split can be empty); the FID needs two of them, and
    is left out with `fid=False`.
    """
    seen = np.flatnonzero(np.isin(test_labels, list(seen_classes)))
    real = test_images[seen]
    report = {}
    if evaluator is not None:
        z = fixed_latents(samples, gan.latent_dim, seed)
        generated = gan.generate_unconditional(z)
        solver_labels = gan.classify(generated) if hasattr(gan, "classify") else None
        report.update(
            class_distribution(
                evaluator, generated, seen_classes, solver_labels=solver_labels
            )
        )
        if fid and len(seen) >= 2:
            report["fid"] = feature_distance(
                evaluator.features(generated), evaluator.features(real)
            )
    if not len(seen):
        return report
    if hasattr(gan, "classify"):
        report["solver_accuracy"] = float(
            np.mean(gan.classify(real) == test_labels[seen])
        )
    if getattr(gan, "student", None) is not None:
        report["student_nll"] = gan.student.negative_log_likelihood(real, seed=seed)
    return report


def add_task_report(folder: Path, report: dict) -> None:
    """Merge `report` into a task folder's `metrics.json`."""
    path = Path(folder) / METRICS_FILE
    write_json(path, {**json.loads(path.read_text()), **report})
