"""The Python route: `prepare_run` + `model.fit` with the run's callbacks."""

import dataclasses
import json
from pathlib import Path

import keras
import pytest
from helpers import TINY_CLI_RUN, TINY_RUN_CONFIG, fit_run, wiring_test

from keras_mergan import cli
from keras_mergan.run.callbacks import TaskExport, TaskSequence, TrainingCheckpoint
from keras_mergan.run.config import RunConfig
from keras_mergan.run.interrupt import InterruptGuard
from keras_mergan.run.training import prepare_run, train_run
from keras_mergan.run_folder import CHECKPOINT_FOLDER, finished_tasks

TWO_TASKS = ["--method=jtr", "--tasks=0-1", "--iters-per-task=2", "--width=4"]


def _files(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def _without_timing(metrics: bytes) -> dict:
    data = json.loads(metrics)
    data.pop("seconds")
    return data


@wiring_test
def test_fit_with_the_run_callbacks_writes_what_the_command_writes(tmp_path):
    command_run, python_run = tmp_path / "command", tmp_path / "python"
    # Checkpoints every iteration, so both routes save and then clear resume/.
    options = [*TINY_CLI_RUN, *TWO_TASKS, "--checkpoint-every=1"]
    assert cli.main([*options, f"--out={command_run}"]) == 0

    config = RunConfig(
        **{**TINY_RUN_CONFIG, "iters_per_task": 2, "checkpoint_every": 1}
    )
    run = prepare_run(config, python_run, verbose=0)
    callbacks = run.fit_callbacks()
    assert [type(c) for c in callbacks[:2] + callbacks[-1:]] == [
        InterruptGuard,
        TaskSequence,
        TrainingCheckpoint,
    ]
    fit_run(run)

    written, expected = _files(python_run), _files(command_run)
    assert sorted(written) == sorted(expected)
    assert "task_02/gan.keras" in written and not (python_run / "resume").exists()
    assert json.loads(written["run.json"]) == json.loads(expected["run.json"])
    for number in (1, 2):
        name = f"task_{number:02d}/metrics.json"
        assert _without_timing(written[name]) == _without_timing(expected[name])
        grid = f"task_{number:02d}/grid.png"
        assert written[grid] == expected[grid]


def test_export_is_a_callback_of_the_run_only_when_asked(tmp_path):
    config = RunConfig(method="sft", tasks="0", iters_per_task=1, eval_samples=0)
    plain = prepare_run(config, tmp_path / "a", verbose=0)
    exported = prepare_run(
        dataclasses.replace(config, export=True), tmp_path / "b", verbose=0
    )
    assert not any(isinstance(c, TaskExport) for c in plain.callbacks)
    assert [c.run_dir for c in exported.callbacks if isinstance(c, TaskExport)] == [
        tmp_path / "b"
    ]


@wiring_test
def test_train_run_with_verbose_0_prints_nothing(tmp_path, capsys):
    config = RunConfig(**{**TINY_RUN_CONFIG, "eval_samples": 4})
    train_run(config, tmp_path / "run", verbose=0)
    train_run(config, tmp_path / "run", verbose=0)  # all trained: still silent
    assert capsys.readouterr().out == ""
    assert (tmp_path / "run" / "task_02" / "metrics.json").is_file()


@wiring_test
def test_a_callback_that_stops_training_before_the_last_task_is_warned_of(tmp_path):
    config = RunConfig(**{**TINY_RUN_CONFIG, "tasks": "0-2", "checkpoint_every": 1})
    run = prepare_run(config, tmp_path / "run", verbose=0)
    # No iteration beats the baseline: it stops at the second epoch, task 2.
    early = keras.callbacks.EarlyStopping(
        "critic_loss", patience=0, mode="min", baseline=-1e9
    )
    with pytest.warns(UserWarning, match="a callback stopped") as caught:
        fit_run(run, early)
    (warning,) = [w for w in caught if "a callback stopped" in str(w.message)]
    assert str(warning.message) == (
        "a callback stopped training after task 2 of 3 (an epoch is a task: "
        "EarlyStopping counts tasks); the run is unfinished: train_run or "
        "fit_tasks on its folder continues it from task 3"
    )
    # Attributed to the line that called fit (in the helper), not to Keras.
    assert Path(warning.filename).name == "helpers.py"
    # Nothing lost: the two tasks and the state to go on from are kept.
    assert finished_tasks(run.run_dir) == [1, 2]
    assert (run.run_dir / CHECKPOINT_FOLDER).is_dir()
    train_run(config, run.run_dir, verbose=0)
    assert finished_tasks(run.run_dir) == [1, 2, 3]


@pytest.mark.parametrize(("warmup", "warned"), [(10, True), (9, False), (0, False)])
def test_a_warm_up_as_long_as_the_budget_is_warned_of(digits, caplog, warmup, warned):
    from keras_mergan.run.training import build_model

    config = RunConfig(
        **{**TINY_RUN_CONFIG, "iters_per_task": 10, "warmup_iterations": warmup}
    )
    with caplog.at_level("WARNING", logger="keras_mergan"):
        build_model(config, digits)
    messages = [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()]
    assert bool(messages) == warned
    if warned:
        assert messages[0].startswith("the learning-rate warm-up (10 iterations)")
