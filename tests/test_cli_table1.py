"""Argument handling of the Table 1 benchmark driver (no training)."""

import importlib.util
from pathlib import Path

import pytest
from conftest import write_svhn_files

pytestmark = pytest.mark.backend_independent

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "table1.py"


@pytest.fixture(scope="module")
def table1():
    spec = importlib.util.spec_from_file_location("table1", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_svhn_files_select_svhns_iterations_and_paper_row(table1, tmp_path):
    train_file = write_svhn_files(tmp_path)
    for source in (train_file, tmp_path):
        args = table1.parse_args(["--dataset", str(source), "--preset", "paper"])
        assert (args.benchmark, table1.iterations(args)) == ("svhn", 8000)
    row = table1.collect(args, "dgr")
    assert row["paper"] == {"after_5": 61.29, "after_10": 47.28}
    assert table1.run_dir(args, "jtr+ra").parent.name == "svhn-paper-8000-tensorflow"


def test_mnist_keeps_its_iterations_and_a_missing_svhn_is_explained(
    table1, tmp_path, monkeypatch, capsys
):
    args = table1.parse_args(["--preset", "paper", "--methods", "dgr"])
    assert (args.benchmark, table1.iterations(args)) == ("mnist", 4000)
    assert table1.collect(args, "dgr")["paper"]["after_10"] == 85.40
    monkeypatch.setattr(table1, "SHARED_SVHN", tmp_path / "absent")
    with pytest.raises(SystemExit):
        table1.parse_args(["--dataset", "svhn"])
    assert "train_32x32.mat" in capsys.readouterr().err


def test_bfloat16_runs_keep_their_own_folder_and_report(table1, tmp_path):
    base = ["--runs", str(tmp_path), "--preset", "cpu"]
    float32 = table1.parse_args(base)
    bfloat16 = table1.parse_args([*base, "--precision", "bfloat16"])
    assert table1.run_dir(float32, "sft").parent.name == "cpu-1000-tensorflow"
    assert table1.run_dir(bfloat16, "sft").parent.name == "cpu-1000-tensorflow-bfloat16"
    assert table1.label(bfloat16, "_") == "cpu_1000_tensorflow_bfloat16"


def test_a_report_keeps_the_variants_measured_by_earlier_runs(table1, tmp_path):
    def row(variant, tasks_completed):
        return {"variant": variant, "tasks_completed": tasks_completed}

    results_file = tmp_path / "table1.json"
    results_file.write_text(
        table1.json.dumps({"rows": [row("ra-short", 10), row("sft", 10)]})
    )
    rows = table1.merge_rows(
        results_file, [row("jtr-short", 3), row("sft", 4), row("ra-short", 0)]
    )
    assert rows == [row("sft", 4), row("jtr-short", 3), row("ra-short", 10)]


def test_unconditional_runs_report_their_replay_scores(table1, tmp_path):
    args = table1.parse_args(["--runs", str(tmp_path), "--methods", "ltgan,dgr"])
    scores = {"seen_class_fraction": 0.5, "fid": 12.25, "student_nll": 80.0}
    for task in (1, 2):
        folder = table1.run_dir(args, "ltgan") / f"task_{task:02d}"
        folder.mkdir(parents=True)
        metrics = {"task": task, "seconds": 3.0, "losses": {}, **scores}
        metrics["generated_classes"] = {"0": 0.25, "1": 0.5 / task}
        (folder / "metrics.json").write_text(table1.json.dumps(metrics))

    row = table1.collect(args, "ltgan")
    text = table1.markdown(args, [row, table1.collect(args, "dgr")])

    assert row["tasks_completed"] == 2 and row["accuracy_per_task"] == {}
    assert row["replay_report"][2] == scores
    assert "| ltgan | - | - | - | - | 2 | 6 |" in text
    assert "| ltgan | 2 | 50.00 | 12.25 | - | 80.00 |" in text
    assert "| ltgan | 2 | 25.00 | 25.00 |" in text
    assert "Mean accuracy" not in text and "per class after" not in text
