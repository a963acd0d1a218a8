"""Evaluation of a finished run: accuracy, FID and reverse accuracy per task.

For every task checkpoint ``RUN_DIR/task_XX/gan.keras`` and every class seen
up to that task, `evaluate_run` generates ``samples`` images (the z stream of
`keras_mergan.run.recorder.class_sampler`, so the accuracies equal those recorded
during training with the same seed and sample count) and reports
(docs/design-notes.md, "Evaluation protocol"):

- accuracy: the fraction of a class's images the evaluator labels as that
  class, per class and averaged over the seen classes;
- FID: the Fréchet distance between Gaussian fits of the evaluator's
  ``"features"`` of generated images and of the real test images, per class
  and over all seen classes together (no Inception download). With few real
  test images per class (100 in the built-in digits) the per-class value is
  biased upwards: compare it between runs of the same dataset only. The
  value over all classes compares the two pooled sets, not the classes one
  by one: it can be lower than every per-class value (docs/evaluation.md,
  "FID over all classes and per class");
- KID (unbiased, no sample-size bias) and precision, recall, density and
  coverage (k-NN manifolds, k = 3) on the same features, per class and
  overall (`keras_mergan.evaluation.scores`);
- reverse accuracy: a classifier with the evaluator's architecture, trained
  on the generated images of the seen classes, tested on their real test
  images (reported from two seen classes on);
- the task-by-class accuracy matrix of the evaluated tasks and its
  summaries: average accuracy after each task, average incremental
  accuracy, per-class forgetting and backward transfer
  (`keras_mergan.evaluation.continual`).

A generator that draws no class (LT-GANs) has no per-class accuracy: for
each task it is scored as during training
(`keras_mergan.evaluation.unconditional.task_report`), by the share of its
samples the evaluator puts in each class, the share it confidently puts in
a seen class, and the FID against the seen classes' real test images.

``keras-mergan evaluate RUN_DIR`` prints the tables of
`keras_mergan.evaluation.tables.format_evaluation`
and writes the report to ``RUN_DIR/evaluation.json``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from keras_mergan.data import ImageDataset, load_dataset
from keras_mergan.evaluation.accuracy import class_sampler
from keras_mergan.evaluation.continual import AccuracyMatrix, summarize
from keras_mergan.evaluation.evaluator import Evaluator
from keras_mergan.evaluation.scores import (
    NEAREST_K,
    feature_distance,
    kernel_distance,
)
from keras_mergan.evaluation.scores import precision_recall as precision_recall_scores
from keras_mergan.evaluation.unconditional import task_report
from keras_mergan.run_folder import (
    EVALUATION_FILE,
    check_task_model,
    finished_tasks,
    load_task_model,
    read_run_info,
    read_task_metrics,
    write_json,
)
from keras_mergan.sampling import draws_classes

__all__ = [
    "evaluate_run",
    "reverse_accuracy",
    "load_run",
]

logger = logging.getLogger(__name__)


# Scores of generated against real evaluator features: name -> (function of
# (fake, real), fewest images each set needs).
FEATURE_SCORES: dict[str, tuple[Callable, int]] = {
    "fid": (feature_distance, 2),
    "kid": (kernel_distance, 2),
    "precision_recall": (
        lambda fake, real: precision_recall_scores(real, fake),
        NEAREST_K + 2,
    ),
}


def load_run(run_dir: str | os.PathLike) -> tuple[dict, ImageDataset]:
    """`run.json` of a run folder and the dataset it was trained on."""
    info = read_run_info(run_dir)
    height, _, channels = info.image_shape
    dataset = load_dataset(info.dataset, image_size=height, channels=channels)
    return info, dataset


def reverse_accuracy(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    epochs: int | None = None,
    seed: int = 0,
) -> float:
    """Accuracy on `test_*` of an evaluator-architecture CNN trained on `train_*`.

    Labels may be any class indices: they are renumbered over the classes of
    `train_labels`, and the classifier has one output per such class.

    Args:
        train_images: ``[N, S, S, C]`` in ``[-1, 1]`` (generated images).
        train_labels: ``[N]`` class indices.
        test_images: real images of the same classes.
        test_labels: their class indices.
        epochs: training epochs; default as for the evaluator (about 1400
            optimizer steps).
        seed: seed of initialisation, dropout and shuffling.

    Example:
        >>> ds = load_dataset("digits")
        >>> train, test = np.isin(ds.y_train, [0, 1]), np.isin(ds.y_test, [0, 1])
        >>> x, y = ds.x_train[train], ds.y_train[train]
        >>> reverse_accuracy(x, y, ds.x_test[test], ds.y_test[test])  # doctest: +SKIP
        0.995
    """
    classes = np.unique(np.asarray(train_labels))
    if not np.isin(test_labels, classes).all():
        raise ValueError("test_labels hold classes that train_labels do not")
    dataset = ImageDataset(
        name="reverse",
        x_train=np.asarray(train_images, np.float32),
        y_train=np.searchsorted(classes, train_labels).astype("int32"),
        x_test=np.asarray(test_images, np.float32),
        y_test=np.searchsorted(classes, test_labels).astype("int32"),
        class_names=tuple(str(c) for c in classes),
    )
    with tempfile.TemporaryDirectory(prefix="keras_mergan_reverse_") as cache:
        classifier = Evaluator.for_dataset(
            dataset, cache_dir=cache, epochs=epochs, seed=seed
        )
    return classifier.accuracy(dataset.x_test, dataset.y_test)


def evaluate_run(
    run_dir: str | os.PathLike,
    samples: int = 1000,
    seed: int = 0,
    fid: bool = True,
    reverse: bool = False,
    reverse_epochs: int | None = None,
    tasks: Sequence[int] | None = None,
    evaluator: Evaluator | None = None,
    dataset: ImageDataset | None = None,
    kid: bool = True,
    precision_recall: bool = True,
) -> dict:
    """Scores of every task checkpoint of a run; writes ``evaluation.json``.

    Args:
        run_dir: the run's folder.
        samples: generated images per seen class (and per task).
        seed: seed of the latent vectors.
        fid: compute FID on evaluator features, per class and overall.
        reverse: compute the reverse accuracy (trains one classifier per
            task with two or more seen classes).
        reverse_epochs: epochs of those classifiers (default: the
            evaluator's schedule).
        tasks: 1-based task numbers to evaluate (default: every finished one).
        evaluator: default the dataset's cached evaluator
            (`Evaluator.for_dataset`).
        dataset: default the run's dataset (`run.json`).
        kid: compute KID on evaluator features, per class and overall.
        precision_recall: the same for precision, recall, density and
            coverage (needs the ``metrics`` extra, ``prdc``).

    Returns:
        The report written to ``RUN_DIR/evaluation.json``: ``run``,
        ``samples_per_class``, ``seed``, ``class_names`` and ``tasks``, one
        entry per task with ``task``, ``seen_classes``, ``accuracy`` (by
        class, as a string), ``mean_accuracy`` and, when asked, ``fid``,
        ``fid_per_class``, ``kid``, ``kid_per_class``, ``precision_recall``
        and ``precision_recall_per_class`` (dicts of ``precision``,
        ``recall``, ``density``, ``coverage``; None where a class has too
        few real test images) and ``reverse_accuracy`` (None with a single
        seen class); then ``accuracy_matrix`` (`AccuracyMatrix.to_dict`)
        and ``continual`` (`keras_mergan.evaluation.continual.summarize`).
        A task of a generator that draws no class has, instead of the
        accuracies and per-class scores, ``generated_classes``,
        ``seen_class_fraction``, ``confidence`` and (with `fid`) ``fid`` over
        ``samples`` images per seen class (see the module doc), and no
        reverse accuracy (its samples carry no label); its tasks are not in
        the accuracy matrix, and ``continual`` is None without any other.

    Example:
        >>> report = evaluate_run("runs/ra-digits", samples=200)  # doctest: +SKIP
        >>> report["tasks"][-1]["mean_accuracy"]  # doctest: +SKIP
        0.97
    """
    run_dir = Path(run_dir)
    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples}")
    if dataset is None:
        _, dataset = load_run(run_dir)
    available = finished_tasks(run_dir)
    if not available:
        raise FileNotFoundError(f"no task checkpoints under {run_dir}")
    wanted = list(available if tasks is None else tasks)
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise ValueError(
            f"tasks {missing} are not finished in {run_dir} "
            f"(finished: 1-{available[-1]})"
        )
    for number in wanted:  # a damaged task is reported before any work
        check_task_model(run_dir, number)
    if evaluator is None:
        evaluator = Evaluator.for_dataset(dataset)
    draws_class = draws_classes(read_run_info(run_dir).method)
    real_features: dict[int, np.ndarray] = {}
    wanted_scores = {"fid": fid, "kid": kid, "precision_recall": precision_recall}
    scores = {name: FEATURE_SCORES[name] for name, on in wanted_scores.items() if on}
    results = []
    for number in wanted:
        logger.info(f"evaluating task {number}/{available[-1]}")
        gan = load_task_model(run_dir, number)
        seen = [int(c) for c in read_task_metrics(run_dir, number)["seen_classes"]]
        if not draws_class:
            report = task_report(
                gan,
                seen,
                dataset.x_test,
                dataset.y_test,
                evaluator,
                samples=samples * len(seen),
                seed=seed,
                fid=fid,
            )
            results.append({"task": number, "seen_classes": seen, **report})
            continue
        images, accuracy = _generated_images(gan, evaluator, seen, samples, seed)
        row = {
            "task": number,
            "seen_classes": seen,
            "accuracy": {str(c): a for c, a in accuracy.items()},
            "mean_accuracy": float(np.mean(list(accuracy.values()))),
        }
        if scores:
            row.update(
                _feature_scores(evaluator, dataset, images, real_features, scores)
            )
        if reverse:
            row["reverse_accuracy"] = _reverse(images, dataset, reverse_epochs, seed)
        results.append(row)
    matrix = AccuracyMatrix.from_rows(results, dataset.class_names)
    report = {
        "run": str(run_dir),
        "samples_per_class": samples,
        "seed": seed,
        "class_names": list(dataset.class_names),
        "evaluator": str(evaluator.cache_path) if evaluator.cache_path else None,
        "tasks": results,
        "accuracy_matrix": matrix.to_dict(),
        # A run whose generator draws no class has no accuracy to summarise.
        "continual": summarize(matrix) if matrix.tasks else None,
    }
    write_json(run_dir / EVALUATION_FILE, report)
    return report


def _generated_images(
    gan, evaluator, classes, samples, seed
) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """``{class: images}`` and the evaluator's accuracy on them, per class.

    The images are those `Evaluator.accuracy_per_class` scores, recorded as
    they are drawn: FID and reverse accuracy see the same samples.
    """
    sampler = class_sampler(gan, seed)
    drawn: dict[int, list[np.ndarray]] = {c: [] for c in classes}

    def recording(label: int, n: int) -> np.ndarray:
        batch = sampler(label, n)
        drawn[label].append(batch)
        return batch

    accuracy = evaluator.accuracy_per_class(recording, classes, n_per_class=samples)
    images = {c: np.concatenate(parts)[:samples] for c, parts in drawn.items()}
    return images, accuracy


def _feature_scores(evaluator, dataset, images, real_features, scores) -> dict:
    """`scores` of each class's generated features against its real ones.

    ``<name>_per_class`` by class, and ``<name>`` for the pooled sets of all
    seen classes; None where the real images are too few.
    """
    fake = {label: evaluator.features(generated) for label, generated in images.items()}
    for label in images:
        if label not in real_features:
            real = dataset.x_test[dataset.y_test == label]
            real_features[label] = evaluator.features(real)
    real = {label: real_features[label] for label in images}
    pooled = np.concatenate(list(fake.values())), np.concatenate(list(real.values()))

    def score(function, fewest, fake_set, real_set):
        return function(fake_set, real_set) if len(real_set) >= fewest else None

    result = {}
    for name, (function, fewest) in scores.items():
        result[name] = score(function, fewest, *pooled)
        result[f"{name}_per_class"] = {
            str(label): score(function, fewest, fake[label], real[label])
            for label in images
        }
    return result


def _reverse(images, dataset, epochs, seed) -> float | None:
    classes = sorted(images)
    if len(classes) < 2:
        return None
    test = np.isin(dataset.y_test, classes)
    if not test.any():
        return None
    return reverse_accuracy(
        np.concatenate([images[c] for c in classes]),
        np.concatenate([np.full(len(images[c]), c) for c in classes]),
        dataset.x_test[test],
        dataset.y_test[test],
        epochs=epochs,
        seed=seed,
    )
