"""`benchmarks/accelerator_table1.sh`, the one-call Table 1 run, at a tiny budget.

The script is meant for a GPU machine at 4000 iterations x 10 tasks; here it
runs on the CPU with 1 iteration x 2 tasks and two rows, through the same
steps: the concurrent rows, the report and grids in the results folder, and
the copies in `$OUT`.
"""

import json
import os
import subprocess
import sys
import tarfile

import pytest
from helpers import BENCHMARKS

pytestmark = pytest.mark.backend_independent


def test_the_script_trains_the_rows_side_by_side_and_reports_them(tmp_path):
    out, results = tmp_path / "out", tmp_path / "results"
    env = {
        **os.environ,
        "OUT": str(out),
        "TABLE1_PYTHON": sys.executable,
        "TABLE1_BACKEND": "torch",
        "TABLE1_ITERS": "1",
        "TABLE1_TASKS": "0-1",
        "TABLE1_METHODS": "sft,jtr+ra",
        "TABLE1_EVAL_SAMPLES": "4",
        "TABLE1_DATASET": "digits",
        "TABLE1_RUNS": str(tmp_path / "runs"),
        "TABLE1_RESULTS": str(results),
        "TABLE1_STAGE": str(tmp_path / "stage"),
    }
    completed = subprocess.run(
        ["bash", str(BENCHMARKS / "accelerator_table1.sh")],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr
    # Both rows ran at once: each line of theirs names its run.
    assert "[sft] " in completed.stdout and "[jtr_ra] " in completed.stdout
    report = json.loads((results / "table1_paper_1_torch.json").read_text())
    rows = {row["variant"]: row for row in report["rows"]}
    assert {v: r["tasks_completed"] for v, r in rows.items()} == {
        "sft": 2,
        "jtr+ra": 2,
    }
    assert set(rows["sft"]["accuracy_per_task"]) == {"1", "2"}
    grids = {
        "table1_paper_1_torch_sft_task02_grid.png",
        "table1_paper_1_torch_jtr_ra_task02_grid.png",
    }
    assert grids <= {path.name for path in results.iterdir()}
    assert sorted(path.name for path in out.iterdir()) == [
        "accelerator_table1.log.gz",
        "table1_paper_1_torch.json",
        "table1_paper_1_torch.md",
        "table1_paper_1_torch_grids.tar.gz",
    ]
    with tarfile.open(out / "table1_paper_1_torch_grids.tar.gz") as archive:
        assert set(archive.getnames()) == grids
