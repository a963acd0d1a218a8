"""Tests of keras_mergan.evaluation.plots on the tiny two-task run of conftest."""

import json
import shutil

import numpy as np
import pytest
from helpers import TINY_CLI_RUN, wiring_test
from PIL import Image

from keras_mergan import cli
from keras_mergan.evaluation.evaluator import Evaluator
from keras_mergan.evaluation.plots import (
    grid_evolution,
    plot_accuracy_matrix,
    plot_feature_tsne,
    plot_forgetting_curves,
)
from keras_mergan.run_folder import ACCURACY_CURVE

TSNE_SAMPLES = 20


@pytest.fixture(scope="module")
def run_dir(tiny_run, tmp_path_factory):
    # a copy: the tests below write plots/ into it
    return shutil.copytree(tiny_run, tmp_path_factory.mktemp("run") / "run")


def _assert_figure(path, min_width=300, min_height=150):
    assert path.is_file() and path.suffix == ".png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_width and image.height >= min_height
        pixels = np.asarray(image.convert("L"), "float32")
    assert pixels.std() > 5, "an almost uniform image: nothing was drawn"
    assert not list(path.parent.glob(f".{path.name}*")), "temporary file left"


def test_forgetting_curves_without_curve_file(run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / ACCURACY_CURVE).unlink()
    path = plot_forgetting_curves(copy, tmp_path / "curves.png")
    assert path == tmp_path / "curves.png"
    _assert_figure(path)


def test_grid_evolution_uses_the_same_z_for_every_task(run_dir):
    # the task grids of the run were drawn with the same 2 fixed z (seed 0)
    cells = grid_evolution(run_dir, num_latents=2, seed=0)
    assert cells.shape == (2, 2, 2, 32, 32, 1) and cells.dtype == np.uint8
    assert not cells[0, 1].any(), "class 1 is unseen after task 1: black cells"
    for row, seen in ((0, 1), (1, 2)):
        with Image.open(run_dir / f"task_{row + 1:02d}" / "grid.png") as image:
            grid = np.asarray(image, "int16")
        # the rows' labels take a margin on the left of the 2 cells of 34 + 2
        margin = grid.shape[1] - (2 + 2 * 34)
        assert margin > 0
        for label in range(seen):
            for column in range(2):
                top, left = 2 + label * 34, margin + 2 + column * 34
                recorded = grid[top : top + 32, left : left + 32]
                drawn = cells[row, label, column, ..., 0].astype("int16")
                assert np.abs(recorded - drawn).max() <= 1


def test_tsne_checks_the_class_and_tasks(
    run_dir, digits, untrained_evaluator, tmp_path
):
    options = dict(samples=TSNE_SAMPLES, evaluator=untrained_evaluator, dataset=digits)
    path = plot_feature_tsne(run_dir, label=1, path=tmp_path / "t.png", **options)
    _assert_figure(path)
    with pytest.raises(ValueError, match="seen class 5"):
        plot_feature_tsne(run_dir, label=5, **options)
    with pytest.raises(ValueError, match=r"tasks \[1\]"):
        plot_feature_tsne(run_dir, label=1, tasks=[1], **options)


def test_accuracy_matrix_heatmap(run_dir, tmp_path):
    path = plot_accuracy_matrix(run_dir, tmp_path / "matrix.png")
    _assert_figure(path, min_width=150, min_height=100)
    copy = shutil.copytree(run_dir, tmp_path / "run")
    for metrics in copy.glob("task_*/metrics.json"):
        scores = json.loads(metrics.read_text())
        del scores["accuracy"]
        metrics.write_text(json.dumps(scores))
    with pytest.raises(FileNotFoundError, match="accuracy per class"):
        plot_accuracy_matrix(copy)


def test_cli_plot_writes_the_four_figures(
    run_dir, untrained_evaluator, monkeypatch, capsys
):
    monkeypatch.setattr(Evaluator, "for_dataset", lambda *a, **k: untrained_evaluator)
    argv = ["plot", str(run_dir), "--tsne-samples", str(TSNE_SAMPLES)]
    assert cli.main(argv) == 0
    assert "Plots: " in capsys.readouterr().out
    names = [
        "accuracy_matrix.png",
        "forgetting_curves.png",
        "grid_evolution.png",
        "tsne_class_0.png",
    ]
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == names
    for name in names[1:]:
        _assert_figure(run_dir / "plots" / name)
    _assert_figure(run_dir / "plots" / names[0], min_width=150, min_height=100)


@pytest.fixture(scope="module")
def ltgan_run(tmp_path_factory):
    """A tiny LT-GANs run scored by the built-in digits' evaluator."""
    run_dir = tmp_path_factory.mktemp("ltgan") / "run"
    options = ["--method=ltgan", "--eval-samples=4", "--width=4"]
    assert cli.main([*TINY_CLI_RUN, *options, f"--out={run_dir}"]) == 0
    return run_dir


@wiring_test
def test_plot_draws_an_ltgan_runs_class_shares_not_accuracy(ltgan_run, capsys):
    assert cli.main(["plot", str(ltgan_run)]) == 0
    plots = ltgan_run / "plots"
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"Plots: {plots / 'class_shares.png'}, {plots / 'grid_evolution.png'}"
    )
    _assert_figure(plots / "class_shares.png", min_width=150)
    _assert_figure(plots / "grid_evolution.png")


@wiring_test
def test_an_ltgan_grid_is_one_unlabelled_block(ltgan_run):
    # LT-GANs draws no class: no row is labelled with one, and no two rows
    # repeat the same samples.
    grid = np.asarray(Image.open(ltgan_run / "task_02" / "grid.png"))
    cell = 32 + 2
    assert grid.shape[:2] == (2 * cell + 2, 8 * cell + 2)
    assert not np.array_equal(grid[2 : 2 + 32], grid[2 + cell : 2 + cell + 32])
