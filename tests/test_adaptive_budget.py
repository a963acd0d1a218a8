"""`--iters-per-task auto`: each task trains until its categories are learned."""

import csv
import json

import keras
import pytest
from helpers import TINY_RUN_CONFIG, wiring_test

from keras_mergan import cli
from keras_mergan.evaluation.accuracy import read_accuracy_curve
from keras_mergan.run.budget import AdaptiveBudget, _learned_share
from keras_mergan.run.config import RunConfig
from keras_mergan.run.plateau import PlateauRule
from keras_mergan.run.training import prepare_run
from keras_mergan.run_folder import CHECKPOINT_FOLDER, task_dir

# The rule's decisions on scripted scores are plain Python over the same
# step on every backend: run once (under TensorFlow in .ci/run). The resume
# test, on real scores, runs under each backend that trains quickly.
scripted_rule = pytest.mark.backend_independent

# Checks come every 50 iterations; a plateau is 4 checks without a gain.
AUTO_RUN = {
    **TINY_RUN_CONFIG,
    "iters_per_task": "auto",
    "min_iters_per_task": 100,
    "max_iters_per_task": 400,
    "eval_samples": 10,
}


def _scripted_scores(monkeypatch, new, old, confident=None):
    """Checks score `new(step)` (accuracy; confident share `confident(step)`,
    by default the same) and `old(step)` instead of the evaluator's (the
    rule, not the evaluator, is under test)."""
    confident = confident or new

    def scores(self):
        step = len(self.checks) * self.rule.check_every + self.rule.check_every
        accuracy, sure = new(step), confident(step)
        result = {
            "new_score": (accuracy + sure) / 2,
            "new_learned": _learned_share(accuracy, sure, [1.0, 1.0], self.rule),
            "new_accuracy": {str(c): accuracy for c in self._new_classes()},
            "new_confident": {str(c): sure for c in self._new_classes()},
        }
        if self._old_classes():
            result["old_score"] = old(step)
        return result

    monkeypatch.setattr(AdaptiveBudget, "_scores", scores)


def _metrics(run_dir, number):
    return json.loads((task_dir(run_dir, number) / "metrics.json").read_text())


def _train(config, run_dir, *callbacks):
    run = prepare_run(RunConfig(**config), run_dir, verbose=0)
    run.callbacks.extend(callbacks)
    run.fit()
    return run


@scripted_rule
def test_a_task_stops_once_learned_and_the_run_records_why(tmp_path, monkeypatch):
    # Accuracy over its bar (0.95), confident share over its lower one (0.8).
    _scripted_scores(
        monkeypatch,
        new=lambda step: 0.97,
        confident=lambda step: 0.85,
        old=lambda step: 0.9,
    )
    _train(AUTO_RUN, tmp_path)
    # Learned from the first check; the minimum (100) holds it until then.
    for number in (1, 2):
        metrics = _metrics(tmp_path, number)
        assert (metrics["iterations"], metrics["stop_reason"]) == (100, "learned")
        assert [c["iteration"] for c in metrics["budget"]["checks"]] == [50, 100]
    budget = _metrics(tmp_path, 2)["budget"]
    assert budget["summary"] == (
        "stopped at 100 iterations: 1 learned (97%), old categories steady"
    )
    assert (budget["rule"]["min_iterations"], budget["rule"]["patience"]) == (100, 4)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["iterations"], r["stop_reason"]) for r in rows] == [
        ("100", "learned"),
        ("100", "learned"),
    ]
    assert not (tmp_path / CHECKPOINT_FOLDER).exists()


@scripted_rule
@pytest.mark.parametrize(
    "accuracy, confident", [(0.7, 0.7), (0.95, 0.75)], ids=["both", "confident"]
)
def test_a_task_below_learned_stops_on_a_plateau(
    tmp_path, monkeypatch, accuracy, confident
):
    _scripted_scores(
        monkeypatch,
        new=lambda step: accuracy,
        confident=lambda step: confident,
        old=lambda step: 0.9,
    )
    _train(AUTO_RUN, tmp_path)
    # Five equal checks (50..250): the last four gained nothing over the first.
    for number in (1, 2):
        metrics = _metrics(tmp_path, number)
        assert (metrics["iterations"], metrics["stop_reason"]) == (250, "plateau")
    assert _metrics(tmp_path, 2)["budget"]["summary"] == (
        f"stopped at 250 iterations, on a plateau: 1 at {100 * accuracy:.0f}%, "
        "old categories steady"
    )


@scripted_rule
def test_the_summary_judges_as_the_rule_does(tmp_path, monkeypatch):
    # The confident share alternates 0.85 / 0.7: each odd check alone clears
    # its bar (0.8), the mean of two (the rule's view) never does.
    _scripted_scores(
        monkeypatch,
        new=lambda step: 0.97,
        confident=lambda step: 0.85 if (step // 50) % 2 else 0.7,
        old=lambda step: 0.9,
    )
    _train({**AUTO_RUN, "tasks": "0"}, tmp_path)
    metrics = _metrics(tmp_path, 1)
    assert (metrics["iterations"], metrics["stop_reason"]) == (250, "plateau")
    assert metrics["budget"]["checks"][-1]["new_confident"] == {"0": 0.85}
    assert metrics["budget"]["summary"] == (
        "stopped at 250 iterations, on a plateau: 0 at 97%"
    )


@scripted_rule
def test_rising_scores_train_to_the_cap(tmp_path, monkeypatch):
    _scripted_scores(monkeypatch, new=lambda step: step / 1000, old=lambda step: 0.9)
    _train({**AUTO_RUN, "tasks": "0"}, tmp_path)
    metrics = _metrics(tmp_path, 1)
    assert (metrics["iterations"], metrics["stop_reason"]) == (400, "cap")
    # The mean of the last two checks, 0.30 and 0.35.
    assert metrics["budget"]["summary"] == (
        "reached the 400-iteration cap: 0 at 32%, still rising"
    )


@scripted_rule
def test_falling_old_categories_keep_the_task_training(tmp_path, monkeypatch):
    # The new category is learned at once; the old one falls 5 points a check.
    _scripted_scores(
        monkeypatch, new=lambda step: 0.97, old=lambda step: 1 - 0.05 * step / 50
    )
    _train(AUTO_RUN, tmp_path)
    assert _metrics(tmp_path, 1)["iterations"] == 100
    second = _metrics(tmp_path, 2)
    assert (second["iterations"], second["stop_reason"]) == (400, "cap")
    assert second["budget"]["summary"] == (
        "reached the 400-iteration cap: 1 learned (97%), no longer rising, "
        "old categories falling"
    )


@scripted_rule
def test_the_minimum_holds_a_task_learned_early(tmp_path, monkeypatch):
    _scripted_scores(monkeypatch, new=lambda step: 0.97, old=lambda step: 0.9)
    _train({**AUTO_RUN, "tasks": "0", "min_iters_per_task": 320}, tmp_path)
    assert _metrics(tmp_path, 1)["iterations"] == 350


@scripted_rule
def test_the_forgetting_curve_counts_the_iterations_tasks_used(tmp_path, monkeypatch):
    _scripted_scores(monkeypatch, new=lambda step: 0.7, old=lambda step: 0.9)
    _train({**AUTO_RUN, "eval_every": 100}, tmp_path)
    iterations = sorted({row["iteration"] for row in read_accuracy_curve(tmp_path)})
    # Task 1: 100, 200, its end at 250; task 2 from 250: 350, 450, end 500.
    assert iterations == [100, 200, 250, 350, 450, 500]


class _Interrupt(Exception):
    pass


class _InterruptAt(keras.callbacks.Callback):
    """Raises at iteration `step` of `task` (0-based) of a fresh fit."""

    def __init__(self, task, step):
        super().__init__()
        self.task, self.step = task, step

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch == self.task and batch + 1 == self.step:
            raise _Interrupt


@wiring_test
def test_a_run_resumed_part_way_through_an_adaptive_task_stops_where_it_would_have(
    tmp_path,
):
    # Real scores from the packaged digits evaluator.
    config = {**AUTO_RUN, "checkpoint_every": 100}
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _train(config, whole)
    with pytest.raises(_Interrupt):
        _train(config, resumed, _InterruptAt(task=1, step=130))
    saved = json.loads((resumed / CHECKPOINT_FOLDER / "checkpoint.json").read_text())
    assert (saved["task"], saved["step"]) == (1, 100)
    _train(config, resumed)
    for number in (1, 2):
        got, want = _metrics(resumed, number), _metrics(whole, number)
        assert got["iterations"] == want["iterations"]
        assert got["budget"]["checks"] == want["budget"]["checks"]
        assert got["accuracy"] == want["accuracy"]
    first = [c["iteration"] for c in _metrics(whole, 2)["budget"]["checks"]]
    assert first[:2] == [50, 100]


@scripted_rule
def test_a_task_added_later_uses_the_same_rule(tmp_path, monkeypatch):
    _scripted_scores(monkeypatch, new=lambda step: 0.97, old=lambda step: 0.9)
    _train({**AUTO_RUN, "tasks": "0"}, tmp_path)
    assert cli.main(["train", f"--out={tmp_path}", "--add-tasks=1", "--verbose=0"]) == 0
    added = _metrics(tmp_path, 2)
    assert (added["iterations"], added["stop_reason"]) == (100, "learned")


def test_auto_takes_short_settings_and_its_cap_as_the_task_length():
    config = RunConfig(method="jtr", iters_per_task="auto", max_iters_per_task=900)
    assert (config.preset, config.steps_per_task, config.warmup_iterations) == (
        "short",
        900,
        100,
    )
    assert config.learning_rate == 5e-4
    assert RunConfig(method="jtr", iters_per_task="300").steps_per_task == 300
    # Any preset's values work with it: none assumes a task's length.
    paper = RunConfig(method="jtr", preset="paper", iters_per_task="auto")
    assert (paper.learning_rate, paper.warmup_iterations) == (1e-4, 0)


@wiring_test
@pytest.mark.parametrize("method", ["ltgan", "dgr"])
def test_the_unconditional_and_solver_methods_are_scored_too(tmp_path, method):
    # LT-GANs' generator takes no class: its checks score the share of its
    # samples the evaluator confidently puts in each category.
    config = {
        **AUTO_RUN,
        "method": method,
        "min_iters_per_task": 50,
        "max_iters_per_task": 120,
    }
    _train(config, tmp_path)
    second = _metrics(tmp_path, 2)
    checks = second["budget"]["checks"]
    assert [c["iteration"] for c in checks] == [50, 100][: len(checks)]
    assert set(checks[0]["new_accuracy"]) == {"1"}
    rule = PlateauRule()
    highest = 1 / min(rule.learned_accuracy, rule.learned_confident)
    assert 0 <= checks[0]["new_learned"] <= highest
    assert 0 <= checks[0]["old_score"] <= 1
    assert second["stop_reason"] in ("learned", "plateau", "cap")
