"""What a new user meets: a quiet, fast start, progress in tasks, grids, TensorBoard."""

import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from helpers import TINY_CLI_RUN, wiring_test
from PIL import Image

from keras_mergan.data.tasks import TaskStream
from keras_mergan.image_grid import SEPARATOR, make_grid
from keras_mergan.run.progress import TaskProgress
from keras_mergan.run_folder import task_dir


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


@pytest.mark.backend_independent
def test_help_starts_no_ml_framework():
    done = _python(
        """
        import sys
        from keras_mergan import cli
        for argv in (["--help"], ["train", "--help"]):
            try:
                cli.main(argv)
            except SystemExit:
                pass
        banned = ("keras", "tensorflow", "jax", "torch")
        print(sorted(m for m in sys.modules if m.split(".")[0] in banned))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("[]")
    assert "--iters-per-task" in done.stdout


def _stream(steps=10):
    labels = np.arange(30) % 3
    images = np.zeros((30, 32, 32, 1), "float32")
    return TaskStream(images, labels, [[0], [1], [2]], steps, batch_size=2)


def _fake_task(progress, epoch, steps, run_dir=None, accuracy=None):
    progress.on_epoch_begin(epoch)
    for batch in range(steps):
        progress.on_train_batch_begin(batch)
        progress.on_train_batch_end(batch, {"critic_loss": -1.5, "generator_loss": 2})
    if accuracy is not None:
        folder = task_dir(run_dir, epoch + 1)
        folder.mkdir(parents=True)
        metrics = {"accuracy": accuracy, "mean_accuracy": 0.0}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    progress.on_epoch_end(epoch)


def test_progress_speaks_in_tasks_with_lines_off_a_terminal(tmp_path):
    output, logged = io.StringIO(), []
    stream = _stream(steps=10)
    names = ["zero", "one", "two"]
    progress = TaskProgress(
        stream, names, tmp_path, every=5, output=output, log=logged.append
    )
    _fake_task(progress, 0, 10, tmp_path, {"0": 0.5})
    _fake_task(progress, 1, 10, tmp_path, {"0": 0.25, "1": 1.0})

    assert logged[0] == "Task 1/3: learning zero (seen: zero)"
    assert logged[4] == "Task 2/3: learning one (seen: zero, one)"
    assert logged[7].startswith("Task 2/3 done in ")
    assert logged[7].endswith(": accuracy zero 25.0%, one 100.0%; mean 62.5%")
    lines = [line for line in logged if line.startswith("  iteration")]
    assert output.getvalue() == "" and len(lines) == 4
    assert lines[0].startswith("  iteration 5/10 - ")
    assert lines[0].endswith(" - critic_loss -1.5 - generator_loss 2")


def test_progress_says_once_per_fit_that_the_step_is_compiling(tmp_path):
    logged = []
    progress = TaskProgress(
        _stream(steps=3),
        ["zero", "one", "two"],
        output=io.StringIO(),
        log=logged.append,
    )
    progress.on_train_begin()
    _fake_task(progress, 0, 3)
    _fake_task(progress, 1, 3)
    compiling = [line for line in logged if "compil" in line]
    if keras.config.backend() == "torch":
        assert compiling == []  # eager: nothing is compiled
        return
    assert compiling[0].startswith("  compiling the training step")
    assert compiling[1].startswith("  compiled; first iteration done in ")
    assert len(compiling) == 2
    assert logged.index(compiling[0]) == 1  # right after the first header


def test_progress_after_a_resume_numbers_tasks_and_iterations_as_the_run(tmp_path):
    output, logged = io.StringIO(), []
    progress = TaskProgress(
        _stream(steps=10),
        ["zero", "one", "two"],
        start_task=1,
        start_step=6,
        every=2,
        output=output,
        log=logged.append,
    )
    _fake_task(progress, 1, 4)
    _fake_task(progress, 2, 10)

    resumed = "Task 2/3: learning one (seen: zero, one), resumed at iteration 6"
    tasks = [line for line in logged if line.startswith("Task")]
    assert tasks[0] == resumed
    assert tasks[1].startswith("Task 2/3 done in ") and "accuracy" not in tasks[1]
    assert tasks[2] == "Task 3/3: learning two (seen: zero, one, two)"
    iterations = [line.split()[1] for line in logged if line.startswith("  ")]
    assert iterations[:2] == ["8/10", "10/10"] and iterations[2] == "2/10"


def test_grid_rows_are_labelled_and_cells_separated():
    images = np.zeros((4, 8, 8, 1), np.uint8)
    plain = make_grid(images, columns=2, padding=1)
    assert plain[0, 0, 0] == plain[4, 9, 0] == SEPARATOR  # between black cells
    labelled = make_grid(images, columns=2, padding=1, row_labels=["zero", "one"])
    margin = labelled.shape[1] - plain.shape[1]
    assert labelled.shape[0] == plain.shape[0] and margin > 10
    np.testing.assert_array_equal(labelled[:, margin:], plain)
    # the label is drawn: light text on the margin's gray
    assert labelled[:, :margin].max() > SEPARATOR
    rgba = make_grid(np.full((2, 8, 8, 4), 200, np.uint8), row_labels="x")
    assert rgba.shape[2] == 4 and rgba[0, 0, 3] == 255
    with pytest.raises(ValueError, match="3 row labels for 2 rows"):
        make_grid(images, columns=2, row_labels=["a", "b", "c"])


def _event_tags(folder):
    import tensorflow as tf

    tags = {}
    for path in folder.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


@wiring_test
def test_a_command_line_run_is_quiet_labelled_and_logs_to_tensorboard(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_mergan.cli",
            "train",
            "--method=jtr",
            "--tasks=0-1",
            "--iters-per-task=4",
            "--batch-size=4",
            "--n-critic=1",
            "--latent-dim=16",
            "--width=4",
            "--eval-samples=0",
            "--checkpoint-every=0",
            "--tensorboard",
            f"--out={out}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "KERAS_BACKEND": keras.config.backend()},
    )
    assert done.returncode == 0, done.stderr
    # no C++ start-up logs, no Keras epochs: tasks
    for noise in ("oneDNN", "absl", "cpu_feature_guard"):
        assert noise not in done.stderr
    assert "Epoch" not in done.stdout and "\r" not in done.stdout
    assert "Task 2/2: learning 1 (seen: 0, 1)" in done.stdout
    assert "  iteration 4/4 - " in done.stdout

    # files follow the umask, as exports do
    umask = os.umask(0)
    os.umask(umask)
    for name in ("run.json", "task_01/metrics.json", "task_02/grid.png"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name

    grid = np.asarray(Image.open(out / "task_02" / "grid.png"))
    # two rows (digits 0 and 1) of 8 cells and a label margin on the left
    assert grid.shape[0] == 2 * 32 + 3 * 2 and grid.shape[1] > 8 * 34 + 2

    tags = _event_tags(out / "tensorboard")
    assert {"batch_critic_loss", "batch_generator_loss"} <= set(tags)
    assert len(tags["batch_critic_loss"]) == 8  # every iteration of both tasks
    assert tags["samples"] == [4, 8]  # each task's grid at the run's iteration
    assert "accuracy/mean" not in tags  # no evaluator in this run


@pytest.mark.backend_independent
@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="needs the torch backend"
)
def test_training_on_another_backend_hides_tensorflows_start_up_lines(tmp_path):
    # Keras seeds TensorFlow too wherever it is installed: its C++ start-up
    # lines must not show under --backend torch (or jax) either.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_mergan",
            *TINY_CLI_RUN,
            "--backend=torch",
            "--tasks=0",
            "--verbose=1",
            f"--out={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for noise in ("oneDNN", "absl", "cpu_feature_guard"):
        assert noise not in done.stderr
    assert "backend torch" in done.stdout


@pytest.mark.backend_independent
@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None
    or importlib.util.find_spec("tensorflow") is None,
    reason="needs the jax backend and TensorFlow",
)
def test_every_command_hides_tensorflows_start_up_lines_on_another_backend():
    # `evaluate` and `plot` on JAX load no TensorFlow of their own, but
    # Keras' serialization (loading or cloning a model) does.
    done = _python(
        """
        import keras
        from keras_mergan import cli
        cli._start_backend(1)
        keras.saving.serialize_keras_object(keras.layers.Dense(1))
        """,
        KERAS_BACKEND="jax",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for noise in ("oneDNN", "absl", "cpu_feature_guard"):
        assert noise not in done.stderr


@pytest.mark.backend_independent
def test_tensorflows_python_warnings_show_only_at_verbose_2():
    # TensorFlow's hints (a tf.function retraced, say) are its own, not the
    # run's.
    shown = {}
    for verbose in (1, 2):
        done = _python(
            f"""
            from keras_mergan import cli
            cli._start_backend({verbose})
            import tensorflow as tf
            tf.get_logger().warning("5 calls triggered tf.function retracing")
            """,
            KERAS_BACKEND="tensorflow",
        )
        assert done.returncode == 0, done.stderr[-3000:]
        shown[verbose] = "retracing" in done.stderr
    assert shown == {1: False, 2: True}
