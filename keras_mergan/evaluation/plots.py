"""Figures of a run, as in the MeRGAN paper, written to ``RUN_DIR/plots/``.

- `plot_forgetting_curves` (paper Fig. 6): evaluator accuracy of every class
  across training, from ``accuracy_curve.csv`` (``train --eval-every N``)
  or, without it, from the task ends' ``metrics.json``.
- `plot_grid_evolution` (Fig. 5 and 7): one fixed z per column group, one
  row per task checkpoint, one column per class; classes not yet seen at a
  task are left black.
- `plot_accuracy_matrix`: heatmap of the task-by-class accuracy matrix
  (`keras_mergan.evaluation.continual`), classes in the order they were learned.
- `plot_feature_tsne` (Fig. 4): t-SNE of the evaluator's features of real
  test images of one class (red) and of images of that class generated after
  some tasks.

Figures are drawn with `matplotlib.figure.Figure` (rendered by Agg, no
pyplot, no display needed) and written atomically. Needs the ``plots``
extra (matplotlib, scikit-learn).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from keras_mergan.data import ImageDataset
from keras_mergan.evaluation.accuracy import (
    class_sampler,
    read_accuracy_curve,
    task_end_iterations,
)
from keras_mergan.evaluation.continual import AccuracyMatrix
from keras_mergan.evaluation.evaluator import Evaluator
from keras_mergan.evaluation.run_scores import load_run
from keras_mergan.run_folder import (
    PLOTS_FOLDER,
    atomic_open,
    finished_tasks,
    load_task_model,
    read_run_info,
    read_task_metrics,
)
from keras_mergan.sampling import (
    draws_classes,
    fixed_latents,
    grid_image,
    sample_grid,
    unconditional_grid,
)

__all__ = [
    "plot_accuracy_matrix",
    "plot_forgetting_curves",
    "grid_evolution",
    "plot_grid_evolution",
    "plot_feature_tsne",
    "plot_run",
]

REAL_COLOR = "tab:red"


def _plot_path(run_dir, path, name) -> Path:
    return Path(path) if path else Path(run_dir) / PLOTS_FOLDER / name


def _save(figure: Figure, path: Path) -> Path:
    with atomic_open(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100, bbox_inches="tight")
    return path


def plot_forgetting_curves(
    run_dir: str | os.PathLike, path: str | os.PathLike | None = None
) -> Path:
    """Accuracy (%) of each class over training iterations, one line per class.

    Dotted vertical lines mark task boundaries.

    Example:
        >>> plot_forgetting_curves("runs/ra-digits")  # doctest: +SKIP
        PosixPath('runs/ra-digits/plots/forgetting_curves.png')
    """
    info = read_run_info(run_dir)
    _need_classes(info, "accuracy per class")
    rows = read_accuracy_curve(run_dir)
    if not rows:
        raise FileNotFoundError(
            f"{run_dir} has no accuracy points: train with an evaluator "
            "(--eval-samples > 0)"
        )
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    for index, label in enumerate(sorted({row["class"] for row in rows})):
        points = [row for row in rows if row["class"] == label]
        axes.plot(
            [row["iteration"] for row in points],
            [100 * row["accuracy"] for row in points],
            marker="o" if len(points) < 30 else None,
            markersize=3,
            color=f"C{index % 10}",
            label=_class_name(info, label),
        )
    ends = task_end_iterations(run_dir)
    for number in range(1, info.num_tasks):
        if number in ends:
            axes.axvline(ends[number], color="grey", linestyle=":", linewidth=1)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("iteration")
    axes.set_ylabel("evaluator accuracy (%)")
    axes.set_ylim(-2, 102)
    axes.set_title(f"Accuracy per class during training ({info.method})")
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return _save(figure, _plot_path(run_dir, path, "forgetting_curves.png"))


def plot_accuracy_matrix(
    run_dir: str | os.PathLike, path: str | os.PathLike | None = None
) -> Path:
    """Heatmap of accuracy (%) per task (rows) and class (columns).

    From the task ends' ``metrics.json``; classes not yet seen are blank,
    each cell is labelled with its value.

    Example:
        >>> plot_accuracy_matrix("runs/ra-digits")  # doctest: +SKIP
        PosixPath('runs/ra-digits/plots/accuracy_matrix.png')
    """
    info = read_run_info(run_dir)
    _need_classes(info, "accuracy per class")
    rows = [read_task_metrics(run_dir, number) for number in _checkpoints(run_dir)]
    figure = _task_class_heatmap(
        run_dir, info, rows, "accuracy per class", "evaluator accuracy (%)"
    )
    figure.axes[0].set_title(f"Accuracy (%) per task and class ({info.method})")
    return _save(figure, _plot_path(run_dir, path, "accuracy_matrix.png"))


def plot_class_shares(
    run_dir: str | os.PathLike, path: str | os.PathLike | None = None
) -> Path:
    """Heatmap of the share (%) of generated samples the evaluator assigns to
    each seen class, per task: what an unconditional generator (LT-GANs, DGR)
    still draws of each class after each task.

    From the task ends' ``metrics.json`` (``generated_classes``, written by
    `keras_mergan.run.callbacks.UnconditionalReport`).

    Example:
        >>> plot_class_shares("runs/ltgan-digits")  # doctest: +SKIP
        PosixPath('runs/ltgan-digits/plots/class_shares.png')
    """
    info = read_run_info(run_dir)
    rows = []
    for number in _checkpoints(run_dir):
        metrics = read_task_metrics(run_dir, number)
        shares = metrics.get("generated_classes") or {}
        seen = [str(c) for c in metrics["seen_classes"]]
        shown = {c: shares[c] for c in seen if c in shares}
        rows.append({"task": number, "accuracy": shown})
    figure = _task_class_heatmap(
        run_dir, info, rows, "class shares", "share of the generated samples (%)"
    )
    figure.axes[0].set_title(f"Class shares (%) after each task ({info.method})")
    return _save(figure, _plot_path(run_dir, path, "class_shares.png"))


def _task_class_heatmap(run_dir, info, rows, what: str, label: str) -> Figure:
    """Rows tasks, columns classes, each cell labelled with its percentage:
    the ``accuracy`` of `rows` (`AccuracyMatrix.from_rows`)."""
    matrix = AccuracyMatrix.from_rows(rows, info.class_names)
    if not matrix.tasks:
        raise FileNotFoundError(
            f"{run_dir} has no {what}: train with an evaluator (--eval-samples > 0)"
        )
    percent = 100 * matrix.values
    rows, columns = percent.shape
    figure = Figure(figsize=(1.5 + 0.6 * columns, 1.2 + 0.45 * rows))
    axes = figure.subplots()
    image = axes.imshow(
        np.ma.masked_invalid(percent), cmap="viridis", vmin=0, vmax=100, aspect="auto"
    )
    for (t, c), value in np.ndenumerate(percent):
        if not np.isnan(value):
            axes.text(
                c,
                t,
                f"{value:.0f}",
                ha="center",
                va="center",
                fontsize="x-small",
                color="white" if value < 60 else "black",
            )
    axes.set_xticks(range(columns), matrix.classes)
    axes.set_yticks(range(rows), [str(task) for task in matrix.tasks])
    axes.set_xlabel("class (in the order learned)")
    axes.set_ylabel("after task")
    figure.colorbar(image, ax=axes, label=label)
    return figure


def grid_evolution(
    run_dir: str | os.PathLike, num_latents: int = 2, seed: int = 0
) -> np.ndarray:
    """uint8 images ``[tasks, classes, num_latents, H, W, C]`` of fixed z.

    Entry ``[t, i, j]`` is the image of the run's `i`-th class (in sorted
    order) for the `j`-th z of `fixed_latents(num_latents, latent_dim,
    seed)`, generated after finished task ``t + 1``; zeros where that task
    had not seen the class. A method that draws no class (LT-GANs) fills
    every cell of a task with its own z instead (no column is a class).

    Example:
        >>> grid_evolution("runs/ra-digits", num_latents=1).shape  # doctest: +SKIP
        (10, 10, 1, 32, 32, 1)
    """
    if num_latents < 1:
        raise ValueError(f"num_latents must be >= 1, got {num_latents}")
    info = read_run_info(run_dir)
    numbers = _checkpoints(run_dir)
    classes = _run_classes(info)
    conditional = draws_classes(info.method)
    # Without classes, a z per cell: the columns' z, then as many more.
    columns = num_latents if conditional else len(classes) * num_latents
    z = fixed_latents(columns, int(info.latent_dim), seed)
    height, width, channels = info.image_shape
    cells = np.zeros(
        (len(numbers), len(classes), num_latents, height, width, channels), "uint8"
    )
    for row, number in enumerate(numbers):
        gan = load_task_model(run_dir, number)
        if not conditional:
            cells[row] = unconditional_grid(gan, z, num_latents)
            continue
        seen_classes = read_task_metrics(run_dir, number)["seen_classes"]
        seen = [c for c in classes if c in seen_classes]
        for label, images in zip(seen, sample_grid(gan, seen, z), strict=True):
            cells[row, classes.index(label)] = images
    return cells


def plot_grid_evolution(
    run_dir: str | os.PathLike,
    path: str | os.PathLike | None = None,
    num_latents: int = 2,
    seed: int = 0,
) -> Path:
    """Images of the same z after every task: rows tasks, columns classes.

    Each class gets `num_latents` adjacent columns (one per fixed z);
    classes not yet seen at a task stay black (see `grid_evolution`).

    Example:
        >>> plot_grid_evolution("runs/ra-digits", num_latents=1)  # doctest: +SKIP
        PosixPath('runs/ra-digits/plots/grid_evolution.png')
    """
    info = read_run_info(run_dir)
    cells = grid_evolution(run_dir, num_latents, seed)
    numbers, classes = _checkpoints(run_dir), _run_classes(info)
    height, width, channels = info.image_shape
    padding = 2
    canvas = grid_image(
        cells.reshape(
            (len(numbers), len(classes) * num_latents, height, width, channels)
        ),
        padding,
    )
    cell_width, cell_height = width + padding, height + padding
    figure = Figure(
        figsize=(
            max(4.0, 0.5 * len(classes) * num_latents + 1.5),
            max(2.5, 0.5 * len(numbers) + 1.0),
        )
    )
    axes = figure.subplots()
    axes.imshow(np.asarray(canvas), cmap="gray" if channels == 1 else None)
    if draws_classes(info.method):
        axes.set_xticks(
            [
                padding / 2 + (i + 0.5) * num_latents * cell_width
                for i in range(len(classes))
            ],
            [_class_name(info, c) for c in classes],
            rotation=45 if len(classes) * num_latents > 12 else 0,
        )
    else:
        axes.set_xticks([])
        axes.set_xlabel(f"a fixed z per column ({info.method} draws no class)")
    axes.set_yticks(
        [padding / 2 + (i + 0.5) * cell_height for i in range(len(numbers))],
        [f"task {n}" for n in numbers],
    )
    axes.tick_params(length=0)
    axes.set_title(f"The same z after each task ({info.method})")
    return _save(figure, _plot_path(run_dir, path, "grid_evolution.png"))


def plot_feature_tsne(
    run_dir: str | os.PathLike,
    label: int | None = None,
    tasks: Sequence[int] | None = None,
    samples: int = 300,
    seed: int = 0,
    evaluator: Evaluator | None = None,
    dataset: ImageDataset | None = None,
    path: str | os.PathLike | None = None,
) -> Path:
    """t-SNE of evaluator features: real images of `label` and generated ones.

    Args:
        run_dir: the run's folder.
        label: the class (default: the first class of the first task, the
            one longest exposed to forgetting).
        tasks: 1-based tasks whose generator is shown (default: the first
            task that saw `label` and the last finished task).
        samples: real and generated images per group.
        seed: seed of the latent vectors and of t-SNE.
        evaluator: default the dataset's cached evaluator.
        dataset: default the run's dataset.
        path: default ``RUN_DIR/plots/tsne_class_<label>.png``.

    Example:
        >>> plot_feature_tsne("runs/ra-digits", label=0)  # doctest: +SKIP
        PosixPath('runs/ra-digits/plots/tsne_class_0.png')
    """
    from sklearn.manifold import TSNE

    if dataset is None:
        info, dataset = load_run(run_dir)
    else:
        info = read_run_info(run_dir)
    _need_classes(info, "samples of a class")
    label = int(info.tasks[0][0] if label is None else label)
    numbers = _checkpoints(run_dir)
    seeing = [
        n for n in numbers if label in read_task_metrics(run_dir, n)["seen_classes"]
    ]
    if not seeing:
        raise ValueError(f"no finished task of {run_dir} has seen class {label}")
    tasks = sorted(set(tasks) if tasks else {seeing[0], seeing[-1]})
    unseen = sorted(set(tasks) - set(seeing))
    if unseen:
        raise ValueError(f"tasks {unseen} did not generate class {label}")
    evaluator = evaluator or Evaluator.for_dataset(dataset)
    # Rows first: streamed images (ImageFiles) decode only what is indexed.
    rows = np.flatnonzero(dataset.y_test == label)[:samples]
    real = dataset.x_test[rows]
    if len(real) == 0:
        real = dataset.x_train[np.flatnonzero(dataset.y_train == label)[:samples]]
    groups = {"real": evaluator.features(real)}
    for number in tasks:
        gan = load_task_model(run_dir, number)
        generated = class_sampler(gan, seed)(label, samples)
        groups[f"generated after task {number}"] = evaluator.features(generated)
    features = np.concatenate(list(groups.values()))
    embedding = TSNE(
        n_components=2,
        perplexity=min(30.0, (len(features) - 1) / 3),
        init="pca",
        random_state=seed,
    ).fit_transform(features)
    figure = Figure(figsize=(6, 5.5))
    axes = figure.subplots()
    colors = iter(["tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"])
    start = 0
    for name, group in groups.items():
        points = embedding[start : start + len(group)]
        start += len(group)
        color = REAL_COLOR if name == "real" else next(colors, "tab:gray")
        axes.scatter(
            points[:, 0], points[:, 1], s=6, alpha=0.7, color=color, label=name
        )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(
        f"t-SNE of evaluator features, class {_class_name(info, label)} ({info.method})"
    )
    axes.legend(fontsize="small", markerscale=2)
    return _save(figure, _plot_path(run_dir, path, f"tsne_class_{label}.png"))


def plot_run(
    run_dir: str | os.PathLike,
    evaluator: Evaluator | None = None,
    dataset: ImageDataset | None = None,
    tsne_class: int | None = None,
    samples: int = 300,
    num_latents: int = 2,
    seed: int = 0,
) -> list[Path]:
    """All figures of a run into ``RUN_DIR/plots/``; returns their paths.

    A method that draws no class (LT-GANs) has no accuracy per class and no
    samples of a class: its figures are the class shares per task
    (`plot_class_shares`) and the grid evolution.

    Example:
        >>> plot_run("runs/ra-digits")  # doctest: +SKIP
        [PosixPath('runs/ra-digits/plots/forgetting_curves.png'), ...]
    """
    if not draws_classes(read_run_info(run_dir).method):
        return [
            plot_class_shares(run_dir),
            plot_grid_evolution(run_dir, num_latents=num_latents, seed=seed),
        ]
    return [
        plot_forgetting_curves(run_dir),
        plot_accuracy_matrix(run_dir),
        plot_grid_evolution(run_dir, num_latents=num_latents, seed=seed),
        plot_feature_tsne(
            run_dir,
            tsne_class,
            samples=samples,
            seed=seed,
            evaluator=evaluator,
            dataset=dataset,
        ),
    ]


def _run_classes(info: dict) -> list[int]:
    return sorted({int(c) for task in info.tasks for c in task})


def _need_classes(info, what: str) -> None:
    if not draws_classes(info.method):
        raise ValueError(
            f"{info.method} draws no class, so its run has no {what}: "
            "see its class shares (plot_class_shares)"
        )


def _checkpoints(run_dir) -> list[int]:
    numbers = finished_tasks(run_dir)
    if not numbers:
        raise FileNotFoundError(f"no task checkpoints under {run_dir}")
    return numbers


def _class_name(info: dict, label: int) -> str:
    names = info.class_names
    return str(names[label]) if 0 <= label < len(names) else str(label)
