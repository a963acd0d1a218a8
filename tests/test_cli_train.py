"""`keras-mergan train` options: --devices, --architecture, SVHN's lambda_RA,
presets, and the Python route (`train_run`) beside the command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest
from helpers import (
    TINY_CLI_RUN,
    make_image_folder,
    wiring_test,
    write_svhn_files,
)

from keras_mergan import cli

ROOT = Path(__file__).resolve().parent.parent


def run_info(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="torch has no Keras data-parallel engine; JAX's step is checked in "
    "test_data_parallel.py (XLA compiles this one for a minute on a CPU)",
)
def test_devices_trains_data_parallel_and_records_the_devices(tmp_path):
    # A fresh process: the CPU is split into devices before the backend starts.
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    command = [*TINY_CLI_RUN, "--tasks=0", "--width=8", "--devices=2", f"--out={out}"]
    process = subprocess.run(
        [sys.executable, "-m", "keras_mergan.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert len(run_info(out)["devices"]) == 2
    assert (out / "task_01" / "gan.keras").exists()


@pytest.mark.skipif(
    keras.config.backend() == "tensorflow",
    reason="TensorFlow splits a CPU into as many devices as asked",
)
def test_devices_on_torch_or_beyond_those_present_is_a_clear_error(
    tmp_path, capsys, monkeypatch
):
    # JAX counts its devices once, when it starts: this process has one.
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    command = [*TINY_CLI_RUN, "--tasks=0", "--devices=2", f"--out={tmp_path}"]
    assert cli.main(command) == 2
    error = capsys.readouterr().err
    if keras.config.backend() == "torch":
        assert "use the jax" in error and "tensorflow" in error
    else:
        assert "2 devices requested, JAX sees 1" in error
    assert not (tmp_path / "run.json").exists()


@wiring_test
def test_resnet_trains_on_an_image_folder_streamed_from_disk(tmp_path):
    # 16x16 (two residual blocks instead of 64x64's four) halves the graph to
    # trace; tests/test_resnet.py trains the 64x64 networks.
    folder = make_image_folder(tmp_path / "scenes", rgb=True)
    out = tmp_path / "run"
    command = [
        *TINY_CLI_RUN,
        f"--dataset={folder}",
        "--tasks=kitchen",
        "--image-size=16",
        "--architecture=resnet",
        "--width=4",
        "--stream-images",
        f"--out={out}",
    ]
    assert cli.main(command) == 0
    info = run_info(out)
    assert info["config"]["architecture"] == "resnet"
    assert info["config"]["width"] == 4
    assert info["image_shape"] == [16, 16, 3]
    gan = keras.saving.load_model(out / "task_01" / "gan.keras")
    assert gan.generator.get_layer("generator_block1_conv1").filters == 4


@wiring_test
@pytest.mark.parametrize("method", ["jtr+ra", "ewc", "dgr", "ltgan"])
def test_every_kind_of_method_trains_the_resnet_over_two_tasks(method, tmp_path):
    # Replay with alignment, a Fisher penalty, a solver, twin generators with
    # a student: each part must build and train on the ResNet networks.
    folder = make_image_folder(tmp_path / "scenes", rgb=True)
    out = tmp_path / "run"
    command = [
        *TINY_CLI_RUN,
        f"--method={method}",
        f"--dataset={folder}",
        "--tasks=bedroom/kitchen",
        "--image-size=16",
        "--architecture=resnet",
        "--width=4",
        *(["--fisher-samples=4"] if method == "ewc" else []),
        f"--out={out}",
    ]
    assert cli.main(command) == 0
    gan = keras.saving.load_model(out / "task_02" / "gan.keras")
    assert gan.generator.get_layer("generator_block1_conv1").filters == 4
    assert gan.generator.output.shape[1:] == (16, 16, 3)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--image-size=64"], "--architecture dcgan generates 32x32"),
        (["--image-size=48", "--architecture=resnet"], "image_size must be 4 * 2**k"),
    ],
)
def test_architecture_and_image_size_that_do_not_fit_are_refused(
    tmp_path, capsys, options, message
):
    assert cli.main([*TINY_CLI_RUN, *options, f"--out={tmp_path}"]) == 2
    assert message in capsys.readouterr().err


@wiring_test
def test_svhn_run_records_its_lambda_ra(tmp_path):
    train_file = write_svhn_files(tmp_path, n_train=8)
    out = tmp_path / "run"
    command = [*TINY_CLI_RUN, "--method=ra", "--width=4", f"--dataset={train_file}"]
    # The paper's SVHN value belongs to the paper preset, which a tiny run
    # gets only when asked: by its budget, auto would pick short.
    command.append("--preset=paper")
    assert cli.main([*command, "--tasks=1", f"--out={out}"]) == 0
    assert run_info(out)["model_config"]["lambda_ra"] == pytest.approx(1e-2)


@wiring_test
def test_short_budget_options_reach_the_model_and_its_optimizers(tmp_path):
    out = tmp_path / "run"
    command = [
        *TINY_CLI_RUN,
        "--method=jtr+ra",
        "--replay-scaling=mean",
        "--learning-rate=2e-4",
        "--warmup-iterations=10",
        "--beta-1=0.5",
        "--width=4",
        "--tasks=0",
        f"--out={out}",
    ]
    assert cli.main(command) == 0
    info = run_info(out)
    assert info["model_config"]["replay_scaling"] == "mean"
    config = info["config"]
    assert (config["learning_rate"], config["warmup_iterations"]) == (2e-4, 10)
    gan = keras.saving.load_model(out / "task_01" / "gan.keras")
    # one iteration into the warm-up: a tenth of the generator's rate, and
    # the critic's warm-up counts its n_critic updates per iteration
    assert float(gan.generator_optimizer.learning_rate) == pytest.approx(2e-5)
    assert float(gan.critic_optimizer.learning_rate) == pytest.approx(2e-5)
    assert gan.generator_optimizer.beta_1 == gan.critic_optimizer.beta_1 == 0.5
