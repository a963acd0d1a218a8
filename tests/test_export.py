"""Export of per-task generators: ONNX/SavedModel parity, batch independence, atomicity.

Runs are "trained" for one step per task under each of the three backends in
subprocesses (cached in pytest's cache directory, keyed by the source code),
so these tests run under any KERAS_BACKEND. The Keras reference outputs are
computed by the training backend itself (``reference.npz``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import keras_mergan.export.core
import keras_mergan.export.publish
import numpy as np
import onnxruntime as ort
import pytest
from keras_mergan.export import ExportError, export_run, export_task, recover
from keras_mergan.export.__main__ import parse_tasks
from synthetic_run import cached_run

from keras_mergan.run_folder import sha256_file

BACKENDS = ("tensorflow", "jax", "torch")
PRECISIONS = ("float32", "bfloat16")
TOLERANCE = 1e-4
CURRENT_BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
# Every training backend is covered by `exported`; export itself runs in TF.
pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]


@pytest.fixture(
    scope="module",
    params=[(b, p) for b in BACKENDS for p in PRECISIONS],
    ids=lambda case: "-".join(case),
)
def exported(request, run_cache, tmp_path_factory):
    """A 2-task run trained under each backend and precision, exported once."""
    backend, precision = request.param
    run_dir = cached_run(run_cache, backend, precision=precision)
    out = tmp_path_factory.mktemp(f"export_{backend}_{precision}")
    start = time.perf_counter()
    paths = export_run(run_dir, out)
    return SimpleNamespace(
        backend=backend,
        precision=precision,
        run_dir=run_dir,
        out=out,
        paths=paths,
        seconds=time.perf_counter() - start,
    )


@pytest.fixture(scope="module")
def current_run(run_cache) -> Path:
    return cached_run(run_cache, CURRENT_BACKEND)


@pytest.fixture(scope="module")
def previous_export(current_run, tmp_path_factory) -> Path:
    """Task 1 exported once; atomicity tests copy it as their 'previous export'."""
    out = tmp_path_factory.mktemp("previous")
    export_task(current_run, 1, out)
    return out


class SimulatedCrash(BaseException):
    """Like SIGKILL for the code under test: no `except Exception` catches it."""


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session, z, labels):
    return session.run(["image"], {"z": z, "label": labels.astype(np.int32)})[0]


def _reference(exported, task_dir: Path):
    return np.load(exported.run_dir / task_dir.name / "reference.npz")


def _snapshot(task_dir: Path) -> dict:
    """Every file's sha256 under a task export, by relative path."""
    return {
        p.relative_to(task_dir).as_posix(): sha256_file(p)
        for p in sorted(task_dir.rglob("*"))
        if p.is_file()
    }


def _assert_intact(task_dir: Path, before: dict) -> None:
    assert _snapshot(task_dir) == before
    manifest = json.loads((task_dir / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        assert sha256_file(task_dir / name) == entry["sha256"], name


# --- parity -----------------------------------------------------------------


def test_export_writes_every_task(exported):
    assert [p.name for p in exported.paths] == ["task_01", "task_02"]
    for path in exported.paths:
        assert (path / "model.onnx").is_file()
        assert (path / "saved_model" / "saved_model.pb").is_file()
        assert (path / "manifest.json").is_file()
    leftovers = [p.name for p in exported.out.iterdir() if p.name.startswith(".task")]
    assert leftovers == []


def test_onnx_matches_keras_at_batch_64_and_1(exported):
    for task_dir in exported.paths:
        reference = _reference(exported, task_dir)
        z, labels = reference["z"], reference["labels"]
        session = _session(task_dir / "model.onnx")
        batch = _run(session, z, labels)
        assert batch.shape == (64, 32, 32, 1) and batch.dtype == np.float32
        assert np.abs(batch - reference["batch"]).max() <= TOLERANCE
        for i in range(len(reference["single"])):
            single = _run(session, z[i : i + 1], labels[i : i + 1])
            assert single.shape == (1, 32, 32, 1)
            assert np.abs(single[0] - reference["single"][i]).max() <= TOLERANCE
            assert np.abs(single[0] - reference["batch"][i]).max() <= TOLERANCE
        # The fixture makes classes normalise differently; a label-blind
        # export would pass the checks above only by accident.
        assert reference["batch"].std() > 0.1


def test_bfloat16_trained_generator_exports_in_float32(exported):
    """Exports compute in float32 with the trained float32 weights.

    The references are a float32 rebuild of the generator; a bfloat16-trained
    generator's own images differ from them by bfloat16 rounding, which an
    export that kept the training precision would reproduce.
    """
    reference = _reference(exported, exported.paths[-1])
    onnx = _run(
        _session(exported.paths[-1] / "model.onnx"),
        reference["z"],
        reference["labels"],
    )
    trained_error = np.abs(reference["trained_batch"] - reference["batch"]).max()
    assert np.abs(onnx - reference["batch"]).max() <= TOLERANCE
    if exported.precision == "bfloat16":
        assert 10 * TOLERANCE < trained_error < 0.2
    else:
        assert trained_error <= TOLERANCE


def test_reloaded_saved_model_matches_keras(exported, tmp_path):
    script = textwrap.dedent(
        """
        import sys, numpy as np, tensorflow as tf
        reference = np.load(sys.argv[1])
        model = tf.saved_model.load(sys.argv[2])
        serve = model.signatures["serving_default"]
        z, labels = tf.constant(reference["z"]), tf.constant(reference["labels"])
        out = serve(z=z, label=labels)
        single = serve(z=tf.constant(reference["z"][:1]),
                       label=tf.constant(reference["labels"][:1]))
        np.save(sys.argv[3], out["image"].numpy())
        np.save(sys.argv[4], single["image"].numpy())
        """
    )
    task_dir = exported.paths[-1]
    reference_path = exported.run_dir / task_dir.name / "reference.npz"
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(reference_path),
            str(task_dir / "saved_model"),
            str(tmp_path / "batch.npy"),
            str(tmp_path / "single.npy"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reference = np.load(reference_path)
    assert (
        np.abs(np.load(tmp_path / "batch.npy") - reference["batch"]).max() <= TOLERANCE
    )
    assert (
        np.abs(np.load(tmp_path / "single.npy")[0] - reference["batch"][0]).max()
        <= TOLERANCE
    )


def test_onnx_is_batch_independent(exported):
    session = _session(exported.paths[-1] / "model.onnx")
    rng = np.random.default_rng(1)
    z = rng.standard_normal((64, 128)).astype(np.float32)
    labels = rng.integers(0, 2, 64).astype(np.int32)
    batch = _run(session, z, labels)
    alone = np.concatenate(
        [_run(session, z[i : i + 1], labels[i : i + 1]) for i in range(64)]
    )
    np.testing.assert_allclose(alone, batch, rtol=0, atol=1e-5)
    # Same rows among different company: other labels, other order, odd size.
    order = rng.permutation(64)
    shuffled = _run(session, z[order], labels[order])
    np.testing.assert_allclose(shuffled, batch[order], rtol=0, atol=1e-5)
    other = _run(session, z[:5], np.zeros(5, np.int32))
    mixed = _run(
        session, np.concatenate([z[:5], z[:5]]), np.r_[np.zeros(5), np.ones(5)]
    )
    np.testing.assert_allclose(mixed[:5], other, rtol=0, atol=1e-5)
    assert np.abs(mixed[5:] - other).max() > 1e-2  # the label does matter


def test_onnx_signature_is_dynamic_in_batch(exported):
    session = _session(exported.paths[0] / "model.onnx")
    inputs = {i.name: i for i in session.get_inputs()}
    assert set(inputs) == {"z", "label"}
    assert inputs["z"].type == "tensor(float)" and inputs["z"].shape[1] == 128
    assert inputs["label"].type == "tensor(int32)" and len(inputs["label"].shape) == 1
    assert not isinstance(inputs["z"].shape[0], int)
    (output,) = session.get_outputs()
    assert output.name == "image" and output.shape[1:] == [32, 32, 1]
    for n in (1, 3, 17):
        z = np.zeros((n, 128), np.float32)
        assert _run(session, z, np.zeros(n, np.int32)).shape == (n, 32, 32, 1)


def test_manifest_describes_the_export(exported):
    manifest = json.loads((exported.paths[-1] / "manifest.json").read_text())
    assert manifest["task"] == 2
    assert manifest["seen_classes"] == [0, 1] and manifest["task_classes"] == [1]
    assert manifest["categories"] == [
        {"index": 0, "name": "0"},
        {"index": 1, "name": "class_1"},
    ]
    assert manifest["latent_dim"] == 128 and manifest["image_shape"] == [32, 32, 1]
    assert manifest["value_range"] == [-1.0, 1.0]
    assert manifest["inputs"]["label"]["dtype"] == "int32"
    assert manifest["trained_with"] == {
        "backend": exported.backend,
        "keras_version": "3.15.1",
    }
    assert (
        manifest["exported_with"]["tensorflow"] and manifest["exported_with"]["tf2onnx"]
    )
    assert manifest["folded_batch_norm_layers"] == 3
    assert manifest["verification"]["onnx_max_abs_diff"] <= TOLERANCE
    files = manifest["files"]
    assert "model.onnx" in files and "saved_model/saved_model.pb" in files
    for name, entry in files.items():
        path = exported.paths[-1] / name
        assert sha256_file(path) == entry["sha256"]
        assert path.stat().st_size == entry["bytes"]
    source = exported.run_dir / manifest["source"]["path"]
    assert sha256_file(source) == manifest["source"]["sha256"]
    first = json.loads((exported.paths[0] / "manifest.json").read_text())
    assert first["seen_classes"] == [0]


def test_rgb_run_exports_and_serves(run_cache, tmp_path):
    run_dir = cached_run(run_cache, "torch", channels=3)
    (path,) = export_run(run_dir, tmp_path, tasks=[2])
    reference = np.load(run_dir / "task_02" / "reference.npz")
    session = _session(path / "model.onnx")
    images = _run(session, reference["z"], reference["labels"])
    assert images.shape == (64, 32, 32, 3)
    assert np.abs(images - reference["batch"]).max() <= TOLERANCE
    single = _run(session, reference["z"][:1], reference["labels"][:1])
    assert np.abs(single[0] - reference["batch"][0]).max() <= TOLERANCE

    from keras_mergan.serve import Sampler

    sample = Sampler(tmp_path).sample("class_1", 3, seed=0)
    assert sample.shape == (3, 32, 32, 3) and sample.dtype == np.uint8


# --- atomicity ----------------------------------------------------------------


def test_failure_before_publishing_keeps_previous_export(
    previous_export, current_run, tmp_path, monkeypatch
):
    out = tmp_path / "export"
    shutil.copytree(previous_export, out)
    before = _snapshot(out / "task_01")

    def crash(directory, manifest):
        # The new export is fully written into staging at this point.
        assert (Path(directory) / "model.onnx").is_file()
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(keras_mergan.export.core, "write_manifest", crash)
    with pytest.raises(ExportError, match="disk full"):
        export_task(current_run, 1, out)
    _assert_intact(out / "task_01", before)
    assert sorted(p.name for p in out.iterdir()) == [".export.lock", "task_01"]


def test_crash_between_renames_is_recovered(
    previous_export, current_run, tmp_path, monkeypatch
):
    """Without an atomic exchange, publish moves the old export aside first."""
    out = tmp_path / "export"
    shutil.copytree(previous_export, out)
    before = _snapshot(out / "task_01")
    monkeypatch.setattr(keras_mergan.export.publish, "_exchange", lambda a, b: False)
    real_rename = os.rename
    calls = []

    def rename(source, target):
        calls.append((source, target))
        if len(calls) == 2:  # old export moved aside; die before the new one lands
            raise SimulatedCrash("killed")
        return real_rename(source, target)

    monkeypatch.setattr(keras_mergan.export.publish.os, "rename", rename)
    with pytest.raises(SimulatedCrash):
        export_task(current_run, 1, out)
    monkeypatch.setattr(keras_mergan.export.publish.os, "rename", real_rename)
    assert not (out / "task_01").exists()
    aside = [p for p in out.iterdir() if ".old-" in p.name]
    assert len(aside) == 1 and aside[0].name.startswith(".")
    recover(out)
    _assert_intact(out / "task_01", before)
    assert [p.name for p in out.iterdir() if p.name.startswith(".task")] == []


def test_killed_export_leaves_previous_export_intact(
    previous_export, current_run, tmp_path
):
    out = tmp_path / "export"
    shutil.copytree(previous_export, out)
    before = _snapshot(out / "task_01")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "export",
            str(current_run),
            "--out",
            str(out),
            "--tasks",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: we kill it with its worker
    )
    killed = False
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            staged = list(out.glob(".task_01.tmp-*/saved_model/saved_model.pb"))
            if staged:
                os.killpg(process.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.02)
    finally:
        if process.poll() is None and not killed:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert killed, "the export finished or stalled before it could be killed"
    _assert_intact(out / "task_01", before)
    staging = [p for p in out.iterdir() if p.name.startswith(".task_01.tmp-")]
    assert staging  # the half-written export stays hidden under a dot name

    from keras_mergan.serve import ExportDirectory

    assert ExportDirectory(out).tasks() == [1]
    recover(out)
    assert not [p for p in out.iterdir() if p.name.startswith(".task_01.tmp-")]
    _assert_intact(out / "task_01", before)


def test_reexport_replaces_previous_export(previous_export, current_run, tmp_path):
    out = tmp_path / "export"
    shutil.copytree(previous_export, out)
    old = json.loads((out / "task_01" / "manifest.json").read_text())
    (path,) = export_run(current_run, out, tasks=[1], verify=False)
    new = json.loads((path / "manifest.json").read_text())
    assert new["created"] >= old["created"] and new["task"] == old["task"]
    z = np.random.default_rng(0).standard_normal((4, 128)).astype(np.float32)
    labels = np.zeros(4, np.int32)
    after = _run(_session(path / "model.onnx"), z, labels)
    before = _run(_session(previous_export / "task_01" / "model.onnx"), z, labels)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    assert new["verification"] is None
    assert sorted(p.name for p in out.iterdir()) == [".export.lock", "task_01"]


# --- arguments and errors -----------------------------------------------------


def test_parse_tasks():
    assert parse_tasks(["1", "3,4", "6-8"]) == [1, 3, 4, 6, 7, 8]
    assert parse_tasks(["2", "2-3"]) == [2, 3]
    for bad in (["x"], ["0"], ["3-1"], ["1-x"]):
        with pytest.raises(Exception, match="task"):
            parse_tasks(bad)


def test_a_failing_task_does_not_block_the_others(current_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(current_run, run)
    (run / "task_02" / "gan.keras").write_bytes(b"not a zip file")
    with pytest.raises(ExportError) as raised:
        export_run(run, tmp_path / "out")
    model = (run / "task_02" / "gan.keras").resolve()
    assert str(raised.value) == (
        f"task 2's checkpoint is corrupt ({model}): truncated or overwritten "
        "(not a whole .keras archive); published: 1"
    )
    assert (tmp_path / "out" / "task_01" / "manifest.json").is_file()
    assert not (tmp_path / "out" / "task_02").exists()
    assert not list((tmp_path / "out").glob(".task_*"))


def test_export_errors_are_clear(current_run, tmp_path):
    with pytest.raises(ExportError, match="run.json not found"):
        export_run(tmp_path)
    with pytest.raises(ExportError, match="task_07/gan.keras"):
        export_run(current_run, tmp_path / "out", tasks=[7])
    with pytest.raises(ExportError, match="1-based"):
        export_run(current_run, tmp_path / "out", tasks=[0])
    result = subprocess.run(
        [sys.executable, "-m", "keras_mergan.export", str(current_run), "--tasks", "9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "task_09/gan.keras" in result.stderr
