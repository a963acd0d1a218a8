"""Tests of keras_mergan.evaluation.replay_health: scores and warnings of a replay."""

import json
import warnings

import keras
import numpy as np
import pytest
from helpers import tiny_gan

from keras_mergan.data.tasks import TaskStream
from keras_mergan.evaluation.replay_health import ReplayHealthWarning, replay_health
from keras_mergan.methods import JointTrainingWithReplay
from keras_mergan.run.callbacks import ReplayHealth
from keras_mergan.run_folder import task_dir


def test_a_replay_drawing_one_class_for_another_is_warned_of():
    # class 1 is replayed as 0 three times out of four; 2 is fine
    labels = np.repeat([0, 1, 2], 4)
    predicted = np.array([0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2])
    report = replay_health(predicted, labels, [0, 1, 2])
    assert report["accuracy"] == {"0": 1.0, "1": 0.25, "2": 1.0}
    assert report["class_share"] == pytest.approx(
        {"0": 7 / 12, "1": 1 / 12, "2": 4 / 12}
    )
    assert report["other_share"] == 0.0
    assert len(report["warnings"]) == 2
    assert all(w.startswith("class 1:") for w in report["warnings"])
    healthy = replay_health(labels, labels, [0, 1, 2])
    assert healthy["warnings"] == [] and healthy["accuracy"]["1"] == 1.0


def test_unlabelled_replay_is_scored_by_its_balance():
    # an LT-GAN-like replay: no labels, half of it no old class at all
    report = replay_health(np.array([0, 0, 5, 5]), None, [0, 1])
    assert "accuracy" not in report
    assert report["other_share"] == 0.5
    assert report["warnings"] == [
        "class 1: replay share 0.000 < 0.5 x even share 0.500"
    ]


class _BlankDetector:
    """Calls a blank image class 0 and any other image class 1."""

    def predict(self, images):
        return np.where(np.std(images, axis=(1, 2, 3)) < 1e-6, 0, 1)


def test_a_broken_replay_generator_raises_the_warning(tmp_path):
    gan = tiny_gan(JointTrainingWithReplay, num_classes=3)
    # broken: every weight zero, so every replayed image is the same gray
    gan.replay_generator.set_weights(
        [np.zeros_like(w) for w in gan.replay_generator.get_weights()]
    )
    stream = TaskStream(np.zeros((3, 32, 32, 1)), np.arange(3), [[0], [1], [2]], 1)
    metrics = task_dir(tmp_path, 3) / "metrics.json"
    metrics.parent.mkdir()
    metrics.write_text(json.dumps({"task": 3}))
    logged = []
    callback = ReplayHealth(tmp_path, stream, _BlankDetector(), logged.append, 4)
    callback.set_model(gan)

    with pytest.warns(ReplayHealthWarning, match="task 3: class 1") as caught:
        keras.callbacks.CallbackList([callback], model=gan).on_epoch_end(2)

    assert not [w for w in caught if "class 0" in str(w.message)]
    # Attributed to the code that ran the callbacks, not to Keras' file.
    ours = [w for w in caught if issubclass(w.category, ReplayHealthWarning)]
    assert {w.filename for w in ours} == {__file__}
    report = json.loads(metrics.read_text())["replay_health"]
    assert report["old_classes"] == [0, 1] and report["samples"] == 8
    assert report["accuracy"] == {"0": 1.0, "1": 0.0}
    # Shares with the warnings' three decimals, so that a figure and its warning
    # agree.
    assert logged == ["Task 3 replay health: class shares 0: 1.000, 1: 0.000"]
    named = ReplayHealth(
        tmp_path,
        stream,
        _BlankDetector(),
        logged.append,
        4,
        class_names=["cat", "dog", "bird"],
    )
    named.set_model(gan)
    with pytest.warns(ReplayHealthWarning, match="task 3: class dog: replay"):
        named.on_epoch_end(2)
    assert logged[-1] == "Task 3 replay health: class shares cat: 1.000, dog: 0.000"
    callback.on_epoch_end(0)  # the first task has nothing to replay
    assert not (task_dir(tmp_path, 1) / "metrics.json").exists()


def test_the_command_line_shows_a_replay_warning_as_one_plain_line(capsys, monkeypatch):
    from keras_mergan import cli

    others = []
    monkeypatch.setattr(warnings, "showwarning", lambda *a, **k: others.append(a))
    cli._show_replay_warnings_plainly()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        message = "task 3: class 1: replay accuracy 0.03 < 0.5"
        warnings.warn(message, ReplayHealthWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert "Warning: task 3: class 1: replay accuracy 0.03 < 0.5\n" in err
    assert "ReplayHealthWarning" not in err
    assert [(str(a[0]), a[1]) for a in others] == [("something else", UserWarning)]
