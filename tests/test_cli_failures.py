"""Failures a user can cause end in one true line, and nothing is lost."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import pytest
from helpers import (
    TINY_CLI_RUN,
    TINY_RUN_CONFIG,
    fit_run,
    make_image_folder,
    wiring_test,
)

from keras_mergan import RunConfig, cli, prepare_run
from keras_mergan.run_folder import CHECKPOINT_FOLDER

TRAIN = [
    "train",
    "--tasks=0,1",
    "--iters-per-task=400",
    "--batch-size=4",
    "--n-critic=1",
    "--latent-dim=16",
    "--width=4",
    "--eval-samples=0",
    "--checkpoint-every=2",
    "--verbose=0",
]


def test_ctrl_c_says_where_the_run_stopped_and_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    manifest = run_dir / CHECKPOINT_FOLDER / "checkpoint.json"
    command = [*TRAIN, f"--out={run_dir}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_mergan", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background by a non-interactive shell
        # inherits SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: the run gets Ctrl-C as a terminal would send it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    while process.poll() is None and time.time() < deadline:
        if manifest.exists() and json.loads(manifest.read_text())["step"] >= 4:
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    saved = json.loads(manifest.read_text())["step"]
    # TensorFlow may log its own interrupted input pipeline; ours is one line.
    assert (
        f"Stopped: {run_dir} keeps 0 finished tasks and task 1 saved at iteration "
        f"{saved}/400; resume with: keras-mergan {' '.join(command)}"
    ) in stderr.splitlines(), stderr[-3000:]


def test_out_at_a_file_is_refused_before_anything_loads(tmp_path, capsys):
    target = tmp_path / "f"
    target.write_text("")
    assert cli.main([*TINY_CLI_RUN, f"--out={target}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"keras-mergan train: error: --out {target}: a file, not a folder"
    # A folder inside that file cannot be made: refused as not writable.
    assert cli.main([*TINY_CLI_RUN, f"--out={target / 'run'}"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{target / 'run'}: not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    assert cli.main([*TINY_CLI_RUN, f"--out={locked / 'run'}"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_a_non_empty_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"")
    assert cli.main([*TINY_CLI_RUN, f"--out={folder}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith(
        f"--out {folder}: not empty and holds no run; choose an empty or new folder"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]


@wiring_test
def test_fitting_a_finished_run_again_is_refused_and_loses_nothing(tmp_path):
    config = RunConfig(**{**TINY_RUN_CONFIG, "eval_samples": 4})

    def fit():
        fit_run(prepare_run(config, tmp_path / "run", verbose=0))

    fit()
    metrics = tmp_path / "run" / "task_01" / "metrics.json"
    before = metrics.read_bytes(), (tmp_path / "run" / "metrics.csv").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a finished task 1"):
        fit()
    after = metrics.read_bytes(), (tmp_path / "run" / "metrics.csv").read_bytes()
    assert after == before


@pytest.mark.parametrize(
    "argument,message",
    [
        ("--tasks=3,3", "--tasks 3,3: category 3 is listed twice"),
        ("--tasks=3/3", "--tasks 3/3: category 3 is listed twice"),
        ("--tasks=2-0", "--tasks 2-0: the range 2-0 is empty (write 0-2, or list"),
        ("--mixing-ratio=2", "argument --mixing-ratio: mixing_ratio must be in"),
        ("--iters-per-task=lots", "argument --iters-per-task: --iters-per-task must"),
        # The tiny run scores nothing (--eval-samples 0).
        ("--iters-per-task=auto", "--iters-per-task auto needs the evaluator's"),
    ],
)
def test_bad_options_get_one_short_line(tmp_path, capsys, argument, message):
    method = "--method=dgr" if "mixing" in argument else "--method=sft"
    try:
        code = cli.main([*TINY_CLI_RUN, method, argument, f"--out={tmp_path / 'r'}"])
    except SystemExit as exit_info:  # argparse's own checks exit
        code = exit_info.code
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "usage" not in error
    assert error.startswith(f"keras-mergan train: error: {message}")
    assert not (tmp_path / "r").exists()


@wiring_test
def test_the_evaluator_line_says_what_happens(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_MERGAN_CACHE", str(tmp_path / "cache"))
    scored = [*TINY_CLI_RUN, "--verbose=1", "--eval-samples=4", "--tasks=0"]
    # The built-in digits' evaluator ships with the package: nothing to train.
    assert cli.main([*scored, f"--out={tmp_path / 'digits'}"]) == 0
    assert "the evaluator" not in capsys.readouterr().out
    folder = make_image_folder(tmp_path / "rooms", rgb=False)
    rooms = [f"--dataset={folder}", "--tasks=bedroom"]
    assert cli.main([*scored, *rooms, f"--out={tmp_path / 'rooms-run'}"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "the evaluator" in line]
    assert lines == [
        "Training the evaluator of rooms (once: it is cached for every later run "
        "on this data)..."
    ]
    assert "Epoch" not in out


def _damage(model, how):
    data = bytearray(model.read_bytes())
    first = zipfile.ZipFile(model).infolist()[0]
    if how == "truncated":
        del data[len(data) // 2 :]
    else:  # a byte of the first member's data flipped: its CRC-32 fails
        data[first.header_offset + 30 + len(first.filename) + 4] ^= 0xFF
    model.write_bytes(bytes(data))
    return first.filename


@pytest.mark.parametrize("how", ["truncated", "damaged"])
def test_a_corrupt_task_checkpoint_is_named(tiny_run, tmp_path, capsys, how):
    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    model = run_dir / "task_02" / "gan.keras"
    member = _damage(model, how)
    damaged = model.read_bytes()
    command = ["evaluate", str(run_dir), "--samples=2", "--no-fid", "--no-kid"]
    assert cli.main([*command, "--no-precision-recall"]) == 1
    reason = {
        "truncated": "truncated or overwritten (not a whole .keras archive)",
        "damaged": f"{member} fails its CRC-32 check",
    }[how]
    assert capsys.readouterr().err == (
        f"keras-mergan evaluate: error: task 2's checkpoint is corrupt ({model}): "
        f"{reason}\n"
    )
    # Reported before any work: nothing written, the file left for inspection.
    assert not (run_dir / "evaluation.json").exists()
    assert model.read_bytes() == damaged


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sample"], "the following arguments are required: EXPORT_DIR"),
        (["sample", "runs/x", "--bogus"], "unrecognized arguments: --bogus"),
        (["serve", "runs/x", "--port", "x"], "--port"),
        (["export", "runs/x", "--bogus"], "--bogus"),
        (["evaluate"], "run_dir"),
    ],
)
def test_every_command_reports_bad_usage_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"keras-mergan {argv[0]}: error: ") and message in line
