import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import random_images, tiny_gan

from keras_mergan.cli import main
from keras_mergan.data.tasks import TaskSequence, TaskStream
from keras_mergan.run.recorder import RunRecorder
from keras_mergan.run.resume import (
    MANIFEST_NAME,
    CheckpointError,
    NonFiniteLossError,
    ResumePoint,
    RunMismatchError,
    check_run_info,
    find_resume_point,
    fit_tasks,
    load_state,
    training_state,
)
from keras_mergan.run_folder import CHECKPOINT_FOLDER, RunInfo, task_dir

STEPS = 6
CLI_TRAIN = [
    "train",
    "--tasks=0,1",
    "--iters-per-task=40",
    "--batch-size=4",
    "--n-critic=1",
    "--latent-dim=16",
    "--width=8",
    "--eval-samples=0",
    "--checkpoint-every=2",
    "--verbose=0",
]


class PoisonedStream(TaskStream):
    """Real images turn NaN from iteration `poisoned_from` of the sequence on."""

    poisoned_from = 10**9

    def __getitem__(self, index):
        images, labels = super().__getitem__(index)
        if self.iteration_of_step(index) >= self.poisoned_from:
            images = np.full_like(images, np.nan)
        return images, labels


def run_task(run_dir, stream_class=TaskStream):
    """Trains one task of STEPS iterations, checkpointing every 2."""
    keras.utils.set_random_seed(0)
    gan = tiny_gan(n_critic=1)
    stream = stream_class(random_images(20), np.arange(20) % 2, [[0]], STEPS, 2, 1)
    info = RunInfo(
        method="sft",
        dataset="random",
        class_names=["0", "1", "2"],
        tasks=[[0]],
        latent_dim=gan.latent_dim,
        image_shape=[32, 32, 1],
    )
    recorder = RunRecorder(run_dir, stream, info, grid_columns=2)
    start = fit_tasks(gan, stream, run_dir, [recorder], checkpoint_every=2, verbose=0)
    return gan, start


def file_hashes(run_dir):
    return {
        str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(Path(run_dir).glob("task_*/*"))
    }


def test_part_stream_serves_the_full_streams_batches():
    stream = TaskStream(random_images(20), np.arange(20) % 2, [[0], [1]], 5, 2, 1)
    part = stream.starting_at(1, 3)
    assert part.iteration_of_step(0) == 8
    np.testing.assert_array_equal(part[1][0], stream[9][0])
    assert set(part[0][1].tolist()) == {1}
    with pytest.raises(ValueError, match="step 5 outside"):
        stream.starting_at(1, 5)
    sequence = TaskSequence(part)
    sequence.set_params({"epochs": 2, "steps": 5})
    with pytest.raises(ValueError, match="minus its initial_step=3"):
        sequence.on_train_begin()
    sequence.set_params({"epochs": 3, "steps": 2})
    with pytest.raises(ValueError, match="covers only that task"):
        sequence.on_train_begin()


def test_non_finite_loss_keeps_the_last_good_state_which_resumes_exactly(
    tmp_path, monkeypatch
):
    expected, start = run_task(tmp_path / "whole")
    assert start == ResumePoint(0, 0, 0)
    assert not (tmp_path / "whole" / CHECKPOINT_FOLDER).exists()

    monkeypatch.setattr(PoisonedStream, "poisoned_from", 4)
    with pytest.raises(
        NonFiniteLossError,
        match=r"non-finite loss \(.*critic_loss=nan.*task 1, iteration 5: .*kept",
    ):
        run_task(tmp_path / "cut", PoisonedStream)
    assert not task_dir(tmp_path / "cut", 1).exists()
    stream = TaskStream(random_images(4), [0, 0, 0, 0], [[0]], STEPS)
    probe = tiny_gan(n_critic=1)
    start = find_resume_point(tmp_path / "cut", stream)
    assert (start.task, start.step, start.completed_tasks) == (0, 4, 0)
    load_state(probe, start.state)
    for variable in training_state(probe):
        assert np.isfinite(keras.ops.convert_to_numpy(variable)).all()

    # Resumed (without the poison) at iteration 4, it ends where the
    # uninterrupted run ended: same batches, noise, optimizer and loss means.
    resumed, start = run_task(tmp_path / "cut")
    assert (start.task, start.step) == (0, 4)
    assert (
        file_hashes(tmp_path / "cut").keys() == file_hashes(tmp_path / "whole").keys()
    )
    assert not (tmp_path / "cut" / CHECKPOINT_FOLDER).exists()
    for got, want in zip(
        training_state(resumed), training_state(expected), strict=True
    ):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(got),
            keras.ops.convert_to_numpy(want),
            rtol=1e-5,
            atol=1e-6,
            err_msg=got.path,
        )


def test_a_differently_configured_run_is_refused(tmp_path):
    info = RunInfo(
        method="sft",
        dataset="digits",
        class_names=["0", "1", "2"],
        tasks=[[0], [1]],
        latent_dim=16,
        image_shape=[32, 32, 1],
        config={"batch_size": 4, "checkpoint_every": 200},
        backend="jax",
        model_config={"name": "conditional_wgangp", "lambda_gp": 10.0},
    )
    check_run_info(tmp_path, info)
    info.write(tmp_path)
    check_run_info(
        tmp_path,
        replace(
            info,
            backend="torch",
            config={"batch_size": 4, "checkpoint_every": 50},
            model_config={"name": "conditional_wgangp_1", "lambda_gp": 10.0},
        ),
    )
    with pytest.raises(RunMismatchError, match=r"tasks: \[\[0\], \[1\]\] there"):
        check_run_info(tmp_path, replace(info, tasks=[[0], [2]]))
    with pytest.raises(RunMismatchError, match="method"):
        check_run_info(tmp_path, replace(info, method="jt"))
    with pytest.raises(RunMismatchError, match="batch_size: 4 there, 8 now"):
        check_run_info(tmp_path, replace(info, config={"batch_size": 8}))
    (tmp_path / "run.json").unlink()
    task_dir(tmp_path, 1).mkdir()
    with pytest.raises(RunMismatchError, match="no run.json"):
        check_run_info(tmp_path, info)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A CLI run killed with SIGKILL in task 2, after a mid-task checkpoint."""
    run_dir = tmp_path_factory.mktemp("killed") / "run"
    manifest_path = run_dir / CHECKPOINT_FOLDER / MANIFEST_NAME
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_mergan.cli", *CLI_TRAIN, f"--out={run_dir}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    manifest = None
    deadline = time.time() + 300
    while process.poll() is None and time.time() < deadline:
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            if (manifest["task"], manifest["step"]) >= (1, 2):
                process.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    # The process may have saved once more between that read and the kill.
    return run_dir, json.loads(manifest_path.read_text())


def test_killed_cli_run_resumes_where_it_stopped(killed_run, tmp_path, capsys):
    killed_dir, manifest = killed_run
    run_dir = tmp_path / "run"
    shutil.copytree(killed_dir, run_dir)
    finished = file_hashes(run_dir)
    assert {Path(name).parent.name for name in finished} == {"task_01"}

    # --verbose 1: the resume line is part of what a run shows.
    assert main([*CLI_TRAIN, "--verbose=1", f"--out={run_dir}"]) == 0
    printed = capsys.readouterr().out
    assert (
        f"Resuming at task 2, iteration {manifest['step']}/40 (1 finished tasks kept)"
        in printed
    )
    after = file_hashes(run_dir)
    assert {name: after[name] for name in finished} == finished
    assert sorted(after) == [
        f"task_0{n}/{f}"
        for n in (1, 2)
        for f in ("gan.keras", "grid.png", "metrics.json")
    ]
    assert not (run_dir / CHECKPOINT_FOLDER).exists()
    # Task 2's replay generator is the snapshot of task 1's final generator,
    # not of the half-trained generator that was checkpointed.
    first, second = (
        keras.saving.load_model(task_dir(run_dir, n) / "gan.keras") for n in (1, 2)
    )
    for got, want in zip(
        second.replay_generator.weights, first.generator.weights, strict=True
    ):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want)
        )
    assert main([*CLI_TRAIN, "--verbose=1", f"--out={run_dir}"]) == 0
    assert "already trained" in capsys.readouterr().out
    assert file_hashes(run_dir) == after


def test_corrupt_checkpoint_is_reported_not_loaded(killed_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(killed_run[0], run_dir)
    stream = TaskStream(random_images(4), [0, 1, 0, 1], [[0], [1]], 40)
    state = find_resume_point(run_dir, stream).state
    data = state.read_bytes()
    state.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    with pytest.raises(CheckpointError, match="corrupt .*SHA-256"):
        find_resume_point(run_dir, stream)
    state.unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        find_resume_point(run_dir, stream)
    (run_dir / CHECKPOINT_FOLDER / MANIFEST_NAME).write_text('{"task": 1, "ste')
    with pytest.raises(CheckpointError, match="checkpoint.json is corrupt"):
        find_resume_point(run_dir, stream)
    other = TaskStream(random_images(4), [0, 1, 0, 1], [[0], [1]], 30)
    shutil.copy(
        killed_run[0] / CHECKPOINT_FOLDER / MANIFEST_NAME, run_dir / CHECKPOINT_FOLDER
    )
    with pytest.raises(CheckpointError, match="x 40 iterations, not"):
        find_resume_point(run_dir, other)


def test_without_a_checkpoint_the_unfinished_task_restarts(
    killed_run, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    shutil.copytree(killed_run[0], run_dir)
    shutil.rmtree(run_dir / CHECKPOINT_FOLDER)
    finished = file_hashes(run_dir)
    assert main([*CLI_TRAIN, "--verbose=1", f"--out={run_dir}"]) == 0
    assert "Resuming at task 2, iteration 0/40" in capsys.readouterr().out
    after = file_hashes(run_dir)
    assert {name: after[name] for name in finished} == finished
    assert (task_dir(run_dir, 2) / "metrics.json").exists()


def test_cli_reports_a_truncated_checkpoint(killed_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(killed_run[0], run_dir)
    # A kill can come before the replaced state file is deleted: the
    # manifest names the current one.
    state = run_dir / CHECKPOINT_FOLDER / killed_run[1]["state"]
    state.write_bytes(state.read_bytes()[:1000])
    assert main([*CLI_TRAIN, f"--out={run_dir}"]) == 2
    error = capsys.readouterr().err
    assert f"checkpoint state {state} is truncated" in error
    assert "continue from the start of task 2" in error

    shutil.rmtree(run_dir / CHECKPOINT_FOLDER)
    model_file = task_dir(run_dir, 1) / "gan.keras"
    model_file.write_bytes(model_file.read_bytes()[:-500])
    assert main([*CLI_TRAIN, f"--out={run_dir}"]) == 2
    assert f"{model_file} is corrupt or unreadable" in capsys.readouterr().err
