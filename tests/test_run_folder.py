"""Tests of keras_mergan.run_folder: layout, finished tasks, atomic writes, hashes."""

import json
import subprocess
import sys

import pytest

from keras_mergan import run_folder
from keras_mergan.run_folder import (
    RunFolderError,
    atomic_open,
    atomic_path,
    finished_tasks,
    read_run_info,
    sha256_bytes,
    sha256_file,
    task_dir,
    task_folders,
    write_json,
)

pytestmark = pytest.mark.backend_independent


def _finish(run_dir, number):
    write_json(task_dir(run_dir, number) / run_folder.METRICS_FILE, {"task": number})


def test_finished_tasks_stop_at_the_first_unfinished_task(tmp_path):
    assert finished_tasks(tmp_path) == []
    for number in (1, 2, 4):
        _finish(tmp_path, number)
    # task 3 has a model but no metrics.json: still training when it stopped
    task_dir(tmp_path, 3).mkdir()
    (task_dir(tmp_path, 3) / run_folder.MODEL_FILE).write_bytes(b"partial")
    assert finished_tasks(tmp_path) == [1, 2]
    assert run_folder.read_task_metrics(tmp_path, 2) == {"task": 2}


def test_task_folders_lists_every_task_with_its_marker(tmp_path):
    for name in ("task_03", "task_01", "task_02", "resume", ".task_04.tmp-ab"):
        (tmp_path / name).mkdir()
    for name in ("task_03", "task_01", ".task_04.tmp-ab"):
        (tmp_path / name / "manifest.json").write_text("{}")
    assert task_folders(tmp_path, "manifest.json") == {
        1: tmp_path / "task_01",
        3: tmp_path / "task_03",
    }


def test_read_run_info_errors_name_the_file(tmp_path):
    with pytest.raises(RunFolderError, match="run.json not found"):
        read_run_info(tmp_path)
    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(RunFolderError, match="JSON object"):
        read_run_info(tmp_path)
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(RunFolderError, match="not valid JSON"):
        read_run_info(tmp_path)
    write_json(tmp_path / "run.json", {"tasks": [[0]]})
    with pytest.raises(RunFolderError, match="lacks class_names, dataset, method"):
        read_run_info(tmp_path)
    record = {"method": "sft", "dataset": "d", "class_names": ["a"], "tasks": [[0]]}
    write_json(tmp_path / "run.json", record)
    assert read_run_info(tmp_path).tasks == [[0]]


@pytest.mark.parametrize("fsync", [False, True])
def test_a_failing_writer_leaves_the_old_file_and_no_partial_one(tmp_path, fsync):
    target = tmp_path / "metrics.json"
    write_json(target, {"old": True}, fsync=fsync)
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_open(target, fsync=fsync) as f:
            f.write('{"new": ')
            raise RuntimeError("writer died")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failing_directory_writer_leaves_nothing(tmp_path):
    target = tmp_path / "saved_model"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as staging:
            staging.mkdir()
            (staging / "variables").write_bytes(b"half")
            raise RuntimeError("writer died")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target, fsync=True) as staging:
        staging.mkdir()
        (staging / "variables").write_bytes(b"whole")
    assert (target / "variables").read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["saved_model"]


def test_atomic_path_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    with atomic_path(tmp_path / "gan.keras") as tmp:
        assert tmp.suffix == ".keras" and tmp.name.startswith(".")
        tmp.write_bytes(b"zip")
    assert (tmp_path / "gan.keras").read_bytes() == b"zip"


def test_sha256_known_answers(tmp_path):
    # FIPS 180-2 test vectors
    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    (tmp_path / "abc").write_bytes(b"abc")
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "abc") == sha256_bytes(b"abc") == abc
    assert sha256_file(tmp_path / "empty") == empty
    # larger than one read block
    big = bytes(range(256)) * 8193
    (tmp_path / "big").write_bytes(big)
    assert sha256_file(tmp_path / "big") == sha256_bytes(big)


def test_importing_it_imports_no_ml_framework():
    script = (
        "import sys, keras_mergan.run_folder\n"
        "banned = ('keras', 'tensorflow', 'jax', 'torch')\n"
        "sys.exit(any(m.split('.')[0] in banned for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == 0
