"""An extended run: exported as a new version, served without a restart."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from keras_mergan.export import export_run
from keras_mergan.export.triton import write_triton_repository
from keras_mergan.serve.app import AppSettings, create_app
from keras_mergan.serve.server import start_in_thread
from synthetic_run import cached_run

from keras_mergan.run_folder import sha256_file

pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def _infer(label: int) -> dict:
    return {
        "inputs": [
            {"name": "z", "shape": [1, 128], "datatype": "FP32", "data": [0.0] * 128},
            {"name": "label", "shape": [1], "datatype": "INT32", "data": [label]},
        ]
    }


def test_exporting_an_extension_adds_a_version_that_a_running_server_serves(
    run_cache, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(cached_run(run_cache, BACKEND, num_tasks=3), run)
    out, triton = tmp_path / "export", tmp_path / "models"
    # The run as it was before its third task: two tasks exported and served.
    export_run(run, out, tasks=[1, 2])
    write_triton_repository(out, triton)
    before = {t: _hashes(out / f"task_0{t}") for t in (1, 2)}
    triton_before = {v: _hashes(triton / "generator" / str(v)) for v in (1, 2)}

    statuses: list[int] = []
    stop = threading.Event()
    with start_in_thread(create_app(out, AppSettings())) as server:

        def clients():
            while not stop.is_set():
                statuses.append(
                    _call(f"{server.url}/v2/models/generator/infer", _infer(0))[0]
                )
                statuses.append(
                    _call(
                        f"{server.url}/v2/models/generator/versions/1/infer", _infer(0)
                    )[0]
                )
                statuses.append(_call(f"{server.url}/v2/models/generator")[0])

        workers = [threading.Thread(target=clients) for _ in range(3)]
        for worker in workers:
            worker.start()
        try:
            assert _call(f"{server.url}/v2/models/generator")[1]["versions"] == [
                "1",
                "2",
            ]
            # What `keras-mergan export RUN` does after the run was extended.
            paths = export_run(run, out)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                versions = _call(f"{server.url}/v2/models/generator")[1]["versions"]
                if "3" in versions:
                    break
                time.sleep(0.1)
            assert versions == ["1", "2", "3"]
            status, reply = _call(
                f"{server.url}/v2/models/generator/versions/3/infer", _infer(2)
            )
            assert status == 200 and reply["model_version"] == "3"
            status, reply = _call(f"{server.url}/v2/models/generator/infer", _infer(2))
            assert status == 200 and reply["model_version"] == "3"
        finally:
            stop.set()
            for worker in workers:
                worker.join()
    assert [p.name for p in paths] == ["task_01", "task_02", "task_03"]
    assert {t: _hashes(out / f"task_0{t}") for t in (1, 2)} == before
    assert len(statuses) > 10 and set(statuses) == {200}
    write_triton_repository(out, triton)
    assert sorted(p.name for p in (triton / "generator").iterdir() if p.is_dir()) == [
        "1",
        "2",
        "3",
    ]
    for version, hashes in triton_before.items():
        assert _hashes(triton / "generator" / str(version)) == hashes
