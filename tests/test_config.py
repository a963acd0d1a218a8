"""`RunConfig` and presets: resolution, validation, the CLI built from them,
and `train_run` writing what `keras-mergan train` writes."""

import dataclasses
import inspect
import json
import re

import pytest
from helpers import TINY_CLI_RUN, TINY_RUN_CONFIG, wiring_test
from PIL import Image

from keras_mergan import cli
from keras_mergan.methods import METHODS
from keras_mergan.run.config import RunConfig
from keras_mergan.run.presets import PRESETS
from keras_mergan.run.training import train_run


def test_presets_fill_unset_fields_and_explicit_values_win():
    fast = RunConfig(method="ra", preset="fast")
    assert (fast.iters_per_task, fast.warmup_iterations) == (1000, 100)
    assert (fast.ra_scaling, fast.lambda_ra) == ("mean", 33.0)
    paper = RunConfig(method="ra")
    assert (paper.preset, paper.iters_per_task, paper.warmup_iterations) == (
        "paper",
        4000,
        0,
    )
    assert (paper.ra_scaling, paper.lambda_ra) == ("reference", None)
    mine = RunConfig(method="ra", preset="fast", lambda_ra=5.0, iters_per_task=300)
    assert (mine.lambda_ra, mine.iters_per_task, mine.ra_scaling) == (5.0, 300, "mean")
    assert RunConfig(method="jtr+ra", preset="fast").replay_scaling == "mean"
    assert RunConfig(method="ewc", preset="fast").lambda_ewc == 3e3


def test_auto_picks_the_preset_whose_budget_the_run_reaches():
    short = RunConfig(method="jtr", iters_per_task=300)
    assert (short.preset, short.replay_scaling, short.learning_rate) == (
        "short",
        "mean",
        5e-4,
    )
    fast = RunConfig(method="jtr", iters_per_task=1000)
    assert (fast.preset, fast.learning_rate, fast.warmup_iterations) == (
        "fast",
        1e-4,
        100,
    )
    assert RunConfig(method="jtr").preset == "paper"
    assert RunConfig(method="jtr", iters_per_task=8000).preset == "paper"
    chosen = RunConfig(method="jtr", preset="paper", iters_per_task=300)
    assert (chosen.preset, chosen.replay_scaling) == ("paper", "reference")
    assert RunConfig.from_dict(short.to_dict()) == short


@pytest.mark.parametrize(
    "dataset, options, expected",
    [
        ("svhn", {}, 1e-2),
        ("svhn", {"lambda_ra": 0.5}, 0.5),
        ("svhn", {"ra_scaling": "mean"}, None),
        ("mnist", {}, None),
        ("digits", {"lambda_ra": 0.5}, 0.5),
    ],
)
def test_lambda_ra_takes_the_papers_value_per_dataset(dataset, options, expected):
    config = RunConfig(method="ra", **options).for_dataset(dataset)
    assert config.lambda_ra == expected


@pytest.mark.parametrize(
    "options, expected",
    [({"batch_size": 32}, 32), ({}, 64), ({"replay_batch": 8}, 8)],
)
def test_one_replayed_batch_per_real_batch_by_default(options, expected):
    config = RunConfig(method="jtr", **options)
    assert config.method_options()["replay_batch"] == expected
    assert "replay_batch" not in RunConfig(method="sft").method_options()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "sft", "lambda_ra": 1.0}, "--lambda-ra: not an option of"),
        ({"method": "jtr", "lambda_ewc": 1.0}, "--lambda-ewc: not an option of"),
        ({"iters_per_task": 0}, "--iters-per-task must be >= 1, got 0"),
        ({"batch_size": 0}, "--batch-size must be >= 1, got 0"),
        ({"checkpoint_every": -1}, "--checkpoint-every must be >= 0"),
        ({"learning_rate": 0.0}, "--learning-rate must be > 0"),
        ({"beta_1": 1.0}, "--beta-1 must be in [0, 1)"),
        ({"method": "dgr", "mixing_ratio": 1.5}, "--mixing-ratio must be in (0, 1]"),
        ({"method": "ltgan", "mixing_ratio": "half"}, "or 'balanced', got 'half'"),
        ({"image_size": 64}, "--architecture dcgan generates 32x32"),
        ({"method": "mergan"}, "method must be one of"),
        ({"preset": "slow"}, "preset must be one of"),
    ],
)
def test_bad_values_are_refused_naming_the_option(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RunConfig(**options)


def test_a_config_reads_back_from_its_dict_unchanged():
    config = RunConfig(method="jtr+ra", preset="fast", tasks="0-2", seed=3)
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown RunConfig fields: colour"):
        RunConfig.from_dict({**config.to_dict(), "colour": "red"})


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_takes_the_options_its_registry_entry_names(name):
    method = METHODS[name]
    accepted = {
        parameter
        for base in method.model_class.__mro__
        if "__init__" in vars(base)
        for parameter in inspect.signature(base.__init__).parameters
    }
    assert set(RunConfig(method=name).method_options()) <= accepted


def test_presets_name_only_run_config_fields():
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    for preset in PRESETS.values():
        named = set(preset.values)
        named.update(*(set(v) for v in preset.method_values.values()))
        for by_method in preset.dataset_values.values():
            named.update(*(set(v) for v in by_method.values()))
        assert named <= fields


def test_the_train_command_has_one_option_per_field_with_its_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in dataclasses.fields(RunConfig):
        assert "--" + option.name.replace("_", "-") in text
    assert "(default: 4000 (paper), 1000 (fast), 300 (short))" in text
    assert "(default: 33.0 (fast), 33.0 (short))" in text


def test_the_command_refuses_a_bad_value_before_training(tmp_path, capsys):
    assert cli.main(["train", "--iters-per-task=0", f"--out={tmp_path}"]) == 2
    assert "--iters-per-task must be >= 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_data_and_task_errors_name_the_option(tmp_path, capsys):
    out = f"--out={tmp_path / 'run'}"
    assert cli.main(["train", "--tasks=0-12", "--iters-per-task=1", out]) == 2
    assert "error: --tasks 0-12: category index 10 out of range" in (
        capsys.readouterr().err
    )
    missing = tmp_path / "nowhere.npz"
    assert cli.main(["train", f"--dataset={missing}", out]) == 2
    assert f"error: --dataset {missing}: " in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@wiring_test
def test_python_and_command_routes_write_the_same_run(tmp_path):
    options = {**TINY_RUN_CONFIG, "preset": "fast"}
    train_run(RunConfig(**options), tmp_path / "python", verbose=0)
    flags = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in options.items()
        if k not in ("iters_per_task", "batch_size", "n_critic", "latent_dim")
    ]
    assert cli.main([*TINY_CLI_RUN, *flags, f"--out={tmp_path / 'command'}"]) == 0

    def read(route, name):
        return json.loads((tmp_path / route / name).read_text())

    python, command = read("python", "run.json"), read("command", "run.json")
    assert python["config"] == command["config"]
    assert python["config"]["warmup_iterations"] == 100
    assert python["model_config"] == command["model_config"]
    for name in ("task_01/metrics.json", "task_02/metrics.json"):
        assert read("python", name)["losses"] == read("command", name)["losses"]
    python_grid, command_grid = (
        Image.open(tmp_path / route / "task_02" / "grid.png")
        for route in ("python", "command")
    )
    assert python_grid.tobytes() == command_grid.tobytes()
    assert RunConfig.from_run_dir(tmp_path / "python") == RunConfig(**options)
