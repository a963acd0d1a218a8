"""Tests of run scoring (evaluation.run_scores), the accuracy curve and the CLI.

They read the tiny run of conftest (`tiny_run`): scores that are meaningless
but fully determined, which is what these tests need.
"""

import csv
import json
import shutil

import numpy as np
import pytest
from helpers import (
    TINY_CLI_RUN,
    TINY_RUN_SAMPLES,
    TINY_RUN_STEPS,
    TINY_RUN_TASKS,
    tiny_gan,
    wiring_test,
)

from keras_mergan import cli
from keras_mergan.data.tasks import TaskStream
from keras_mergan.evaluation.accuracy import read_accuracy_curve
from keras_mergan.evaluation.evaluator import Evaluator
from keras_mergan.evaluation.run_scores import evaluate_run, reverse_accuracy
from keras_mergan.evaluation.tables import format_accuracy_table, format_evaluation
from keras_mergan.run.recorder import RunRecorder
from keras_mergan.run_folder import ACCURACY_CURVE, RunInfo


@pytest.fixture(scope="module")
def run_dir(tiny_run, tmp_path_factory):
    # a copy: the tests below write evaluation.json into it
    return shutil.copytree(tiny_run, tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def report(run_dir, digits, untrained_evaluator):
    return evaluate_run(
        run_dir,
        samples=TINY_RUN_SAMPLES,
        reverse=True,
        reverse_epochs=1,
        evaluator=untrained_evaluator,
        dataset=digits,
    )


def _metrics(run_dir, number):
    return json.loads((run_dir / f"task_{number:02d}" / "metrics.json").read_text())


def test_accuracy_curve_every_iteration(run_dir):
    with open(run_dir / ACCURACY_CURVE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["iteration"]), int(r["task"]), int(r["class"])) for r in rows] == [
        (1, 1, 0),
        (2, 1, 0),
        (3, 2, 0),
        (3, 2, 1),
        (4, 2, 0),
        (4, 2, 1),
    ]
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    curve = read_accuracy_curve(run_dir)
    assert [(p["iteration"], p["class"]) for p in curve] == [
        (int(r["iteration"]), int(r["class"])) for r in rows
    ]
    # the task-end rows are the scores of metrics.json
    for number in (1, 2):
        for label, value in _metrics(run_dir, number)["accuracy"].items():
            (point,) = [
                p
                for p in curve
                if p["iteration"] == number * TINY_RUN_STEPS
                and p["class"] == int(label)
            ]
            assert point["accuracy"] == pytest.approx(value, abs=1e-6)


def test_curve_falls_back_to_task_ends(run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / ACCURACY_CURVE).unlink()  # as written without eval_every
    curve = read_accuracy_curve(copy)
    assert [(p["iteration"], p["task"], p["class"]) for p in curve] == [
        (2, 1, 0),
        (4, 2, 0),
        (4, 2, 1),
    ]
    assert curve[-1]["accuracy"] == _metrics(run_dir, 2)["accuracy"]["1"]


def test_resumed_recorder_drops_rows_past_the_resume_point(run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    shutil.rmtree(copy / "task_02")  # task 2 is the one resumed, unfinished
    info = RunInfo.read(copy)
    stream = TaskStream(
        np.zeros((2, 32, 32, 1)), np.arange(2), TINY_RUN_TASKS, TINY_RUN_STEPS
    )
    recorder = RunRecorder(copy, stream, info, evaluator=object(), eval_every=1)
    recorder.set_model(tiny_gan(num_classes=10))
    recorder.set_params({"steps": 1, "epochs": 2})  # resumed at task 2, step 1
    recorder.on_train_begin()
    recorder.on_epoch_begin(1)
    with open(copy / ACCURACY_CURVE, newline="") as f:
        assert [int(row["iteration"]) for row in csv.DictReader(f)] == [1, 2, 3, 3]


def test_eval_every_needs_an_evaluator(tmp_path):
    stream = TaskStream(
        np.zeros((2, 32, 32, 1)), np.arange(2), TINY_RUN_TASKS, TINY_RUN_STEPS
    )
    with pytest.raises(ValueError, match="evaluator"):
        RunRecorder(tmp_path, stream, {}, evaluator=None, eval_every=5)


def test_report(run_dir, report):
    assert json.loads((run_dir / "evaluation.json").read_text()) == report
    assert report["samples_per_class"] == TINY_RUN_SAMPLES
    assert [row["task"] for row in report["tasks"]] == [1, 2]
    first, second = report["tasks"]
    assert first["seen_classes"] == [0] and second["seen_classes"] == [0, 1]
    for number, row in enumerate(report["tasks"], start=1):
        # same z stream and sample count as during training: same scores
        recorded = _metrics(run_dir, number)
        assert row["accuracy"] == pytest.approx(recorded["accuracy"])
        assert row["mean_accuracy"] == pytest.approx(recorded["mean_accuracy"])
        # Training also records the share scored with confidence, per class.
        shares = recorded["confident_share"]
        assert set(shares) == set(recorded["accuracy"])
        assert all(0.0 <= s <= recorded["accuracy"][c] for c, s in shares.items())
        assert recorded["confidence_threshold"] == 0.9
        for key in ("fid", "kid", "precision_recall"):
            per_class = row[f"{key}_per_class"]
            assert set(per_class) == {str(c) for c in row["seen_classes"]}
        values = [row["fid"], *row["fid_per_class"].values()]
        assert all(np.isfinite(v) and v >= 0 for v in values)
        assert all(np.isfinite([row["kid"], *row["kid_per_class"].values()]))
        per_class = row["precision_recall_per_class"].values()
        for scores in [row["precision_recall"], *per_class]:
            assert set(scores) == {"precision", "recall", "density", "coverage"}
            assert 0 <= scores["precision"] <= 1 and 0 <= scores["recall"] <= 1
    # one seen class: the pooled sets are that class's
    for key in ("fid", "kid", "precision_recall"):
        assert first[key] == pytest.approx(first[f"{key}_per_class"]["0"])
    matrix = report["accuracy_matrix"]
    assert matrix["tasks"] == [1, 2] and matrix["classes"] == ["0", "1"]
    assert matrix["values"][0][1] is None
    assert matrix["values"][1] == [second["accuracy"]["0"], second["accuracy"]["1"]]
    assert report["continual"]["forgetting"] == {
        "0": pytest.approx(first["accuracy"]["0"] - second["accuracy"]["0"])
    }
    assert first["reverse_accuracy"] is None  # one class: nothing to tell apart
    assert 0.0 <= second["reverse_accuracy"] <= 1.0


def test_task_selection_and_errors(run_dir, digits, untrained_evaluator, tmp_path):
    options = dict(samples=4, fid=False, evaluator=untrained_evaluator, dataset=digits)
    with pytest.raises(ValueError, match=r"tasks \[3\]"):
        evaluate_run(run_dir, tasks=[3], **options)
    with pytest.raises(FileNotFoundError, match="run.json"):
        evaluate_run(tmp_path, samples=4, evaluator=untrained_evaluator)


def test_reverse_accuracy_of_real_images_is_high(digits):
    train = np.isin(digits.y_train, [3, 7])
    test = np.isin(digits.y_test, [3, 7])
    x, y = digits.x_train[train], digits.y_train[train]
    x_test, y_test = digits.x_test[test], digits.y_test[test]
    assert reverse_accuracy(x, y, x_test, y_test, epochs=2) >= 0.9
    swapped = np.where(y == 3, 7, 3)  # "generated" 3s that look like 7s
    assert reverse_accuracy(x, swapped, x_test, y_test, epochs=2) <= 0.1
    with pytest.raises(ValueError, match="test_labels"):
        reverse_accuracy(x, y, digits.x_test[:5], np.full(5, 9), epochs=1)


def test_tables(report, run_dir):
    names = report["class_names"]
    text = format_evaluation(report)
    header = text.splitlines()[0]
    seen = list(dict.fromkeys(c for task in report["tasks"] for c in task["accuracy"]))
    assert len(seen) < len(names)  # only the classes the run has seen get columns
    columns = " | ".join(names[int(c)] for c in seen)
    assert header == f"| task | {columns} | mean | FID | reverse acc. |"
    assert "FID on evaluator features" in text and "KID on evaluator" in text
    assert "Precision / recall" in text and "Average incremental accuracy" in text
    second = report["tasks"][1]
    row = [line for line in text.splitlines() if line.startswith("| 2 |")][0]
    assert f"{100 * second['reverse_accuracy']:.2f}" in row
    assert f"{second['fid']:.2f}" in row
    plain = format_accuracy_table([_metrics(run_dir, 1)], names)
    assert plain.splitlines()[0].endswith("| mean |")
    assert plain.splitlines()[2].startswith("| 1 | ")


def test_cli_evaluate(run_dir, untrained_evaluator, monkeypatch, capsys):
    monkeypatch.setattr(Evaluator, "for_dataset", lambda *a, **k: untrained_evaluator)
    argv = ["evaluate", str(run_dir), "--samples", "4", "--no-fid", "--tasks", "2"]
    argv += ["--no-precision-recall"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "| task | 0 | 1 |" in out and "FID" not in out and "KID" in out
    saved = json.loads((run_dir / "evaluation.json").read_text())
    assert saved["samples_per_class"] == 4
    (row,) = saved["tasks"]
    assert row["task"] == 2 and "fid" not in row and "reverse_accuracy" not in row
    assert "kid" in row and "precision_recall" not in row


def test_cli_options():
    parser = cli._build_parser()
    # train's options not given stay unset: the RunConfig and its preset fill them
    assert not hasattr(parser.parse_args(["train"]), "eval_every")
    assert parser.parse_args(["train", "--eval-every", "50"]).eval_every == 50
    args = parser.parse_args(["evaluate", "run", "--tasks", "5,10"])
    assert args.tasks == [5, 10] and args.fid and not args.reverse_accuracy
    assert args.kid and args.precision_recall
    assert not args.plots
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "run", "--tasks", "0"])


def test_score_tables_show_the_seen_classes_only(report):
    # The run learned digits 0 and 1 of ten: every table has those columns.
    text = format_evaluation(report)
    for title in ("FID on", "KID on", "Precision / recall"):
        table = text[text.index(title) :].split("\n\n")[1]
        assert table.splitlines()[0] == "| task | 0 | 1 | all |", title
        assert [line.count("|") for line in table.splitlines()] == [5] * 4


@wiring_test
def test_a_generator_without_classes_is_scored_by_class_shares(
    tmp_path, untrained_evaluator, monkeypatch, capsys
):
    # LT-GANs draws no class: no per-class accuracy, which for it would be
    # the share of all its samples that happen to look like that class.
    run_dir = tmp_path / "run"
    options = ["--method=ltgan", "--tasks=0-1", "--width=4", f"--out={run_dir}"]
    assert cli.main([*TINY_CLI_RUN, *options]) == 0
    monkeypatch.setattr(Evaluator, "for_dataset", lambda *a, **k: untrained_evaluator)
    argv = ["evaluate", str(run_dir), "--samples=4", "--no-precision-recall"]
    assert cli.main([*argv, "--reverse-accuracy"]) == 0
    out = capsys.readouterr().out
    saved = json.loads((run_dir / "evaluation.json").read_text())
    first, second = saved["tasks"]
    assert second["seen_classes"] == [0, 1]
    assert "accuracy" not in second and "kid_per_class" not in second
    shares = second["generated_classes"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert 0 <= second["seen_class_fraction"] <= shares["0"] + shares["1"] + 1e-9
    assert second["fid"] >= 0
    assert saved["accuracy_matrix"]["tasks"] == [] and saved["continual"] is None
    # 4 samples per seen class: 8 for task 2, whose shares are eighths.
    assert all((8 * share).is_integer() for share in shares.values())
    table = out[out.index("| task | 0 | 1 | seen, p >= 0.9 | FID |") :]
    assert table.splitlines()[3] == (
        f"| 2 | {100 * shares['0']:.1f} | {100 * shares['1']:.1f} | "
        f"{100 * second['seen_class_fraction']:.1f} | {second['fid']:.2f} |"
    )
    assert "Average accuracy" not in out
    assert cli.main([*argv, "--no-fid"]) == 0
    saved = json.loads((run_dir / "evaluation.json").read_text())
    assert "fid" not in saved["tasks"][1] and "FID" not in capsys.readouterr().out
