"""Extending a finished run with new categories, from their data alone."""

import json
import shutil

import keras
import numpy as np
import pytest
from helpers import TINY_CLI_RUN, fit_random_tasks, save_image, tiny_gan, wiring_test

from keras_mergan import cli
from keras_mergan.evaluation.evaluator import build_classifier
from keras_mergan.methods import ElasticWeightConsolidationGAN, JointTrainingWithReplay
from keras_mergan.methods.growth import grow_categories
from keras_mergan.run.extension import extension_config
from keras_mergan.run.resume import fit_tasks
from keras_mergan.run.training import prepare_run
from keras_mergan.run_folder import RunInfo, load_task_model

TINY = [*TINY_CLI_RUN, "--method=jtr", "--width=8", "--iters-per-task=2"]


def _train(*args) -> int:
    return cli.main([*TINY, *map(str, args)])


def _generator_weights(run_dir, task):
    gan = load_task_model(run_dir, task)
    return [np.asarray(w) for w in gan.generator.get_weights()]


def _only(tmp_path, digit: int):
    data = np.load(__import__("keras_mergan").__path__[0] + "/datasets/digits.npz")
    keep, keep_test = data["y_train"] == digit, data["y_test"] == digit
    path = tmp_path / f"only{digit}.npz"
    np.savez(
        path,
        x_train=data["x_train"][keep],
        y_train=data["y_train"][keep],
        x_test=data["x_test"][keep_test],
        y_test=data["y_test"][keep_test],
    )
    return path


@wiring_test
def test_extending_a_run_equals_training_it_in_one_go(tmp_path, capsys):
    extended, whole = tmp_path / "extended", tmp_path / "whole"
    assert _train("--tasks=0-1", f"--out={extended}") == 0
    capsys.readouterr()
    assert _train("--tasks=0-2", f"--out={extended}", "--verbose=1") == 0
    assert f"Extending {extended}: 2 tasks kept, 1 new" in capsys.readouterr().out
    assert _train("--tasks=0-2", f"--out={whole}") == 0
    # Equal up to float reordering: well below what the task itself moved.
    difference = max(
        np.abs(a - b).max()
        for a, b in zip(
            _generator_weights(extended, 3), _generator_weights(whole, 3), strict=True
        )
    )
    moved = max(
        np.abs(a - b).max()
        for a, b in zip(
            _generator_weights(whole, 3), _generator_weights(whole, 2), strict=True
        )
    )
    assert difference < 1e-4 < moved / 2
    assert RunInfo.read(extended).tasks == [[0], [1], [2]]


@wiring_test
def test_add_tasks_from_a_dataset_holding_only_the_new_category(tmp_path):
    run = tmp_path / "run"
    assert _train("--tasks=0-1", f"--out={run}") == 0
    before = (run / "task_01" / "gan.keras").read_bytes()
    only2 = _only(tmp_path, 2)
    # Settings come from the run: none is repeated.
    assert (
        cli.main(
            [
                "train",
                f"--out={run}",
                "--add-tasks=2",
                f"--dataset={only2}",
                "--verbose=0",
            ]
        )
        == 0
    )
    info = RunInfo.read(run)
    assert info.tasks == [[0], [1], [2]]
    assert info.task_datasets == ["digits", "digits", str(only2)]
    assert info.config["width"] == 8 and info.config["iters_per_task"] == 2
    metrics = json.loads((run / "task_03" / "metrics.json").read_text())
    assert metrics["seen_classes"] == [0, 1, 2]
    assert (run / "task_01" / "gan.keras").read_bytes() == before
    # The command that made the run, repeated, finds it trained.
    assert _train("--tasks=0-1", f"--out={run}") == 0
    assert RunInfo.read(run).tasks == [[0], [1], [2]]
    # A later extension without --dataset uses the run's first dataset.
    assert cli.main(["train", f"--out={run}", "--add-tasks=3", "--verbose=0"]) == 0
    assert RunInfo.read(run).task_datasets[3] == "digits"


@wiring_test
def test_settings_that_shape_the_model_cannot_change(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train("--tasks=0-1", f"--out={run}") == 0
    capsys.readouterr()
    assert _train("--tasks=0-2", f"--out={run}", "--method=ra") == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "cannot extend" in error and "--method (jtr there, ra now)" in error
    assert not (run / "task_03").exists()


def test_add_tasks_needs_an_existing_run(tmp_path, capsys):
    assert cli.main(["train", f"--out={tmp_path / 'new'}", "--add-tasks=2"]) == 2
    assert "--add-tasks needs --out at an existing run" in capsys.readouterr().err


@wiring_test
def test_a_folder_run_learns_a_category_it_never_saw(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    pets, birds = tmp_path / "pets", tmp_path / "birds"
    for root, names in ((pets, ("cat", "dog")), (birds, ("bird",))):
        for name in names:
            for i in range(4):
                image = rng.integers(0, 256, (32, 32), dtype=np.uint8)
                save_image(root / name / f"{i}.png", image)
    run = tmp_path / "run"
    # Scored by an evaluator trained on cat and dog, which never saw a bird.
    monkeypatch.setenv("KERAS_MERGAN_CACHE", str(tmp_path / "cache"))
    pets_run = [f"--dataset={pets}", "--tasks=cat/dog", "--eval-samples=4"]
    assert _train(*pets_run, f"--out={run}") == 0
    old = load_task_model(run, 2)
    assert (
        cli.main(
            [
                "train",
                f"--out={run}",
                "--add-tasks=bird",
                f"--dataset={birds}",
                "--verbose=0",
            ]
        )
        == 0
    )
    info = RunInfo.read(run)
    assert info.class_names == ["cat", "dog", "bird"]
    assert info.tasks == [[0], [1], [2]]
    grown = load_task_model(run, 3)
    assert (old.num_classes, grown.num_classes) == (2, 3)
    metrics = json.loads((run / "task_03" / "metrics.json").read_text())
    assert sorted(metrics["accuracy"]) == ["0", "1"]
    assert metrics["categories"] == {"0": "cat", "1": "dog", "2": "bird"}
    bird = metrics["unscored"]["bird"]
    assert "does not know" in bird["reason"]
    assert bird["fid"] > 0 and bird["samples"] == 4


@pytest.mark.parametrize(
    "model_class", [JointTrainingWithReplay, ElasticWeightConsolidationGAN]
)
def test_growth_leaves_the_old_categories_outputs_unchanged(model_class):
    small = tiny_gan(model_class, num_classes=2)
    fit_random_tasks(small, [[0], [1]], steps=2)
    big = tiny_gan(model_class, num_classes=3, seed=1)
    grow_categories(small, big)
    z = keras.random.normal((4, small.latent_dim), seed=3)
    for label in (0, 1):
        labels = np.full((4,), label, "int32")
        np.testing.assert_array_equal(
            np.asarray(small.generate(z, labels)), np.asarray(big.generate(z, labels))
        )
    gamma = big.generator.get_layer("generator_cbn0").variables[0]
    old_gamma = small.generator.get_layer("generator_cbn0").variables[0]
    np.testing.assert_allclose(
        np.asarray(gamma)[2], np.asarray(old_gamma).mean(axis=0), rtol=1e-6
    )
    if model_class is ElasticWeightConsolidationGAN:
        fisher = [f for f in big.fisher if f.shape[0] == 3]
        assert fisher and all(not np.asarray(f)[2].any() for f in fisher)


@wiring_test
def test_a_run_scored_by_a_classifier_of_the_users(tmp_path, capsys):
    names = [str(d) for d in range(10)]
    for outputs in (10, 3):
        classifier = build_classifier((32, 32, 1), outputs, seed=0)
        classifier.save(tmp_path / f"pool{outputs}.keras")
    run = tmp_path / "run"
    pool = f"--evaluator={tmp_path / 'pool10.keras'}"
    assert _train("--tasks=0-1", "--eval-samples=4", pool, f"--out={run}") == 0
    metrics = json.loads((run / "task_02" / "metrics.json").read_text())
    assert sorted(metrics["accuracy"]) == ["0", "1"]
    capsys.readouterr()
    wrong = f"--evaluator={tmp_path / 'pool3.keras'}"
    assert _train("--tasks=0-1", "--eval-samples=4", wrong, f"--out={tmp_path}/x") == 2
    error = capsys.readouterr().err
    assert f"has 3 outputs; the run has 10 categories ({', '.join(names)})" in error


class _Crash(keras.callbacks.Callback):
    """Stops training as Ctrl-C would, after the second iteration."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            raise KeyboardInterrupt


def test_an_extension_stopped_part_way_resumes_with_the_same_command(tmp_path):
    base = tmp_path / "base"
    budget = ["--tasks=0-1", "--iters-per-task=4", "--checkpoint-every=1"]
    assert _train(*budget, f"--out={base}") == 0
    whole = shutil.copytree(base, tmp_path / "whole")
    cut = shutil.copytree(base, tmp_path / "cut")
    extend = ["train", "--add-tasks=2", "--verbose=0"]
    assert cli.main([*extend, f"--out={whole}"]) == 0
    run = prepare_run(extension_config(cut, "2"), cut, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        fit_tasks(
            run.model,
            run.stream,
            run.run_dir,
            [*run.callbacks, _Crash()],
            start=run.start,
            checkpoint_every=1,
            verbose=0,
        )
    assert not (cut / "task_03").exists()
    assert cli.main([*extend, f"--out={cut}"]) == 0
    assert RunInfo.read(cut).tasks == [[0], [1], [2]]
    difference = max(
        np.abs(a - b).max()
        for a, b in zip(
            _generator_weights(cut, 3), _generator_weights(whole, 3), strict=True
        )
    )
    assert difference < 1e-4
