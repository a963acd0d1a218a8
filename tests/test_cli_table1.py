"""Argument handling of the Table 1 benchmark driver (no training)."""

import json

import pytest
from helpers import load_benchmark, write_svhn_files

from keras_mergan.run_folder import RunInfo

pytestmark = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def table1():
    return load_benchmark("table1")


def test_svhn_files_select_svhns_iterations_and_paper_row(table1, tmp_path):
    train_file = write_svhn_files(tmp_path)
    for source in (train_file, tmp_path):
        args = table1.parse_args(["--dataset", str(source), "--budget", "paper"])
        assert (args.benchmark, table1.iterations(args)) == ("svhn", 8000)
    row = table1.collect(args, "dgr")
    assert row["paper"] == {"after_5": 61.29, "after_10": 47.28}
    assert table1.run_dir(args, "jtr+ra").parent.name == "svhn-paper-8000-tensorflow"


def test_mnist_keeps_its_iterations_and_a_missing_svhn_is_explained(
    table1, tmp_path, monkeypatch, capsys
):
    args = table1.parse_args(["--budget", "paper", "--methods", "dgr"])
    assert (args.benchmark, table1.iterations(args)) == ("mnist", 4000)
    assert table1.collect(args, "dgr")["paper"]["after_10"] == 85.40
    monkeypatch.setattr(table1, "SHARED_SVHN", tmp_path / "absent")
    with pytest.raises(SystemExit):
        table1.parse_args(["--dataset", "svhn"])
    assert "train_32x32.mat" in capsys.readouterr().err


def test_bfloat16_runs_keep_their_own_folder_and_report(table1, tmp_path):
    base = ["--runs", str(tmp_path), "--budget", "cpu"]
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
        results_file, [row("jtr-fast", 3), row("sft", 4), row("ra-fast", 0)]
    )
    # Rows recorded under the old "-short" names are read under the new ones.
    assert rows == [row("sft", 4), row("jtr-fast", 3), row("ra-fast", 10)]


def test_unconditional_runs_report_their_replay_scores(table1, tmp_path):
    args = table1.parse_args(["--runs", str(tmp_path), "--methods", "ltgan,dgr"])
    scores = {"seen_class_fraction": 0.5, "fid": 12.25, "student_nll": 80.0}
    for task in (1, 2):
        folder = table1.run_dir(args, "ltgan") / f"task_{task:02d}"
        folder.mkdir(parents=True)
        metrics = {"task": task, "seconds": 3.0, "losses": {}, **scores}
        metrics["generated_classes"] = {"0": 0.25, "1": 0.5 / task}
        (folder / "metrics.json").write_text(table1.json.dumps(metrics))
    dgr_scores = {"seen_class_fraction": 0.7, "fid": 20.0}
    dgr_scores.update(solver_accuracy=0.95, solver_agreement=0.99)
    folder = table1.run_dir(args, "dgr") / "task_01"
    folder.mkdir(parents=True)
    metrics = {"task": 1, "seconds": 3.0, "losses": {}, **dgr_scores}
    (folder / "metrics.json").write_text(table1.json.dumps(metrics))

    row = table1.collect(args, "ltgan")
    text = table1.markdown(args, [row, table1.collect(args, "dgr")])

    assert row["tasks_completed"] == 2 and row["accuracy_per_task"] == {}
    assert row["replay_report"][2] == scores
    assert "| ltgan | - | - | - | - | 2 | 6 |" in text
    assert "| ltgan | 2 | 50.00 | 12.25 | - | - | 80.00 |" in text
    assert "| dgr | 1 | 70.00 | 20.00 | 95.00 | 99.00 | - |" in text
    assert "| ltgan | 2 | 25.00 | 25.00 |" in text
    assert "Mean accuracy" not in text and "per class after" not in text


def test_seeds_and_class_orders_name_their_runs(table1, tmp_path):
    args = table1.parse_args(
        ["--runs", str(tmp_path), "--seeds", "0,1", "--class-orders", "2"]
    )
    assert table1.repetitions(args) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    orders = [table1.class_order("0-9", k) for k in (1, 2)]
    assert orders[0] != orders[1] and orders[0] == table1.class_order("0-9", 1)
    assert all(sorted(map(int, o.split(","))) == list(range(10)) for o in orders)
    assert table1.class_order("0-9", 0) == "0-9"
    assert table1.run_dir(args, "jtr-fast").name == "jtr-fast"
    assert table1.run_dir(args, "jtr+ra", 1, 2).name == "jtr_ra_seed1_order2"
    with pytest.raises(SystemExit):
        table1.parse_args(["--class-orders", "1", "--tasks", "0,1/2,3"])


def _write_run(folder, rows, class_names):
    folder.mkdir(parents=True)
    RunInfo(
        method="jtr",
        dataset="digits",
        class_names=class_names,
        tasks=[[c] for c in range(len(rows))],
        latent_dim=128,
        image_shape=[32, 32, 1],
    ).write(folder)
    for number, accuracy in enumerate(rows, start=1):
        task = folder / f"task_{number:02d}"
        task.mkdir()
        metrics = {"task": number, "seconds": 1.0, "losses": {}, "accuracy": accuracy}
        metrics["mean_accuracy"] = sum(accuracy.values()) / len(accuracy)
        (task / "metrics.json").write_text(json.dumps(metrics))


def test_runs_in_another_class_order_report_forgetting_by_class(table1, tmp_path):
    args = table1.parse_args(
        ["--runs", str(tmp_path), "--seeds", "0,1", "--tasks", "0-1"]
    )
    names = [str(c) for c in range(10)]
    # seed 0 learns 0 then 1; seed 1 (same order) forgets 0 completely
    _write_run(
        table1.run_dir(args, "sft", 0), [{"0": 1.0}, {"0": 0.5, "1": 1.0}], names
    )
    _write_run(
        table1.run_dir(args, "sft", 1), [{"0": 0.9}, {"0": 0.0, "1": 1.0}], names
    )
    runs = [table1.collect(args, "sft", seed) for seed in (0, 1)]
    assert runs[0]["continual"]["forgetting"] == {"0": 0.5}
    assert runs[1]["continual"]["backward_transfer"] == pytest.approx(-0.9)
    summary = table1.spread(runs)
    # after the last task: 75% and 50%; mean forgetting 50% and 90%
    assert summary["final"]["mean"] == pytest.approx(62.5)
    assert summary["final"]["std"] == pytest.approx(17.6776695)
    assert summary["mean_forgetting"]["mean"] == pytest.approx(70.0)
    assert "after_5" not in summary
    text = table1.repeated_markdown(args, ["sft"], runs)
    assert "| sft | - | - | 62.50 ± 17.68 (2) | " in text
    assert "| sft | 1 | 0 | 0-1 | - | - | 50.00 | " in text
