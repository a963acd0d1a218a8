"""The adaptive-budget benchmark driver: its commands, its resuming, and its
comparison of `auto` with the fixed budgets."""

import json
import subprocess
from pathlib import Path

import pytest
from helpers import TINY_CLI_RUN, load_benchmark, wiring_test

from keras_mergan import cli
from keras_mergan.run.plateau import PlateauRule
from keras_mergan.run_folder import RunInfo, task_dir, write_json


@pytest.fixture(scope="module")
def benchmark():
    return load_benchmark("adaptive_budget")


def _write_run(
    folder: Path, final_accuracy: float, iterations: list[int], stop: str = ""
) -> Path:
    """A run folder of len(`iterations`) finished tasks of 5, its mean
    accuracy falling to `final_accuracy` and each task stopped by `stop`
    (an auto run's budget record) or by its fixed budget."""
    RunInfo(
        method="jtr",
        dataset="digits",
        class_names=[str(c) for c in range(10)],
        tasks=[[c] for c in range(5)],
        latent_dim=128,
        image_shape=[32, 32, 1],
        config={"preset": "short"},
        precision="bfloat16",
        backend="tensorflow",
    ).write(folder)
    for number, used in enumerate(iterations, 1):
        metrics = {
            "task": number,
            "iterations": used,
            "seconds": used / 10,
            "accuracy": {str(c): final_accuracy for c in range(number)},
            "mean_accuracy": final_accuracy + (len(iterations) - number) / 1000,
            "mean_confident_share": final_accuracy - 0.1,
        }
        if stop:
            metrics["budget"] = {
                "stop_reason": stop,
                "summary": f"{stop} at {used}",
                "check_share": 0.02,
                "rule": PlateauRule(learned_accuracy=0.93).to_dict(),
            }
        write_json(task_dir(folder, number) / "metrics.json", metrics)
    return folder


def _report(benchmark, runs: Path, results: Path) -> dict:
    options = ["--report-only", f"--runs={runs}", f"--results={results}"]
    assert benchmark.main(options) == 0
    return json.loads((results / "adaptive_budget.json").read_text())


@pytest.mark.backend_independent
def test_auto_is_compared_with_both_fixed_budgets(benchmark, tmp_path):
    runs = tmp_path / "runs"
    for dataset, auto, fixed_500, fixed_1000, auto_iterations in (
        ("digits", 0.97, 0.95, 0.975, [300, 200, 400, 250, 350]),
        ("fashion", 0.85, 0.80, 0.87, [800, 900, 1000, 1200, 1100]),
    ):
        method = runs / dataset / "jtr"
        _write_run(method / "auto-max4000", auto, auto_iterations, "plateau")
        _write_run(method / "500", fixed_500, [500] * 5)
        _write_run(method / "1000", fixed_1000, [1000] * 5)
    record = _report(benchmark, runs, tmp_path / "results")["datasets"]

    digits, fashion = record["digits"]["jtr"], record["fashion"]["jtr"]
    assert list(digits["runs"]) == ["auto-max4000", "500", "1000"]
    assert digits["accuracy_gap_vs_fixed_1000"] == pytest.approx(0.5)
    assert digits["iteration_fraction_vs_fixed_1000"] == pytest.approx(0.3)
    assert digits["target_gap_and_fraction_met"]
    assert digits["accuracy_gain_vs_fixed_500"] == pytest.approx(2.0)
    assert "target_gain_met" not in digits  # a target on Fashion-MNIST only
    assert fashion["accuracy_gap_vs_fixed_1000"] == pytest.approx(2.0)
    assert fashion["iteration_fraction_vs_fixed_1000"] == pytest.approx(1.0)
    assert not fashion["target_gap_and_fraction_met"]
    assert fashion["accuracy_gain_vs_fixed_500"] == pytest.approx(5.0)
    assert fashion["target_gain_met"]

    auto = digits["runs"]["auto-max4000"]
    assert auto["total_iterations"] == 1500 and auto["seconds"] == 150.0
    assert auto["tasks"][0] == {
        "task": 1,
        "iterations": 300,
        "stop_reason": "plateau",
        "mean_accuracy": 97.4,
        "confident_share": 87.0,
        "seconds": 30.0,
        "budget_summary": "plateau at 300",
        "check_share": 0.02,
    }
    assert digits["runs"]["500"]["tasks"][-1]["stop_reason"] == "fixed"

    markdown = (tmp_path / "results" / "adaptive_budget.md").read_text()
    assert "backend and precision: tensorflow bfloat16" in markdown
    assert (
        "| digits | jtr | auto-max4000 | 97.4 | 97.3 | 97.2 | 97.1 | 97.0 "
        "| 300, 200, 400, 250, 350 | 1500 | plateau 5 | 87.0 | 150 |"
    ) in markdown
    assert "gap +0.50 points (positive: auto lower) with 30% of the" in markdown
    assert auto["rule"]["learned_accuracy"] == 0.93
    assert (
        "Rule of the auto runs: learned at 93% of the real images' accuracy and "
        "80% of their confident share; plateau when 4 checks gain less than 0.02"
    ) in markdown


@pytest.mark.backend_independent
def test_unfinished_runs_are_reported_without_a_comparison(benchmark, tmp_path):
    method = tmp_path / "runs" / "digits" / "jtr"
    _write_run(method / "auto-max4000", 0.9, [300, 200], "plateau")
    _write_run(method / "1000", 0.95, [1000] * 5)
    entry = _report(benchmark, tmp_path / "runs", tmp_path)["datasets"]["digits"]["jtr"]
    assert not entry["runs"]["auto-max4000"]["finished"]
    assert "accuracy_gap_vs_fixed_1000" not in entry


@pytest.mark.backend_independent
def test_only_unfinished_runs_are_trained(benchmark, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    _write_run(runs / "digits" / "jtr" / "500", 0.95, [500] * 5)
    _write_run(runs / "digits" / "jtr" / "auto-max2000", 0.9, [300, 200], "plateau")
    commands = []

    def fake_run(command, env):
        commands.append(command)
        return subprocess.CompletedProcess(command, returncode=0)

    monkeypatch.setattr(benchmark.subprocess, "run", fake_run)
    options = [f"--runs={runs}", f"--results={tmp_path}", "--datasets=digits"]
    assert (
        benchmark.main(
            [*options, "--budgets=auto,500", "--cpu=1", "--max-iters-per-task=2000"]
        )
        == 0
    )
    (command,) = commands
    assert command[:3] == ["taskset", "-c", "1"]
    assert command[4:7] == ["-m", "keras_mergan", "train"]
    line = " ".join(command)
    assert "--tasks 0,1,2,3,4 --iters-per-task auto --width 16 --precision auto" in line
    assert line.endswith(
        f"--out {runs}/digits/jtr/auto-max2000 --max-iters-per-task 2000"
    )

    commands.clear()
    assert benchmark.main([*options, "--budgets=1000", "--seed=3"]) == 0
    assert " ".join(commands[0]).endswith(f"--out {runs}/digits/jtr/1000 --seed 3")

    # A failed run is named and fails the script; the others still run.
    monkeypatch.setattr(
        benchmark.subprocess,
        "run",
        lambda command, env: subprocess.CompletedProcess(command, returncode=2),
    )
    assert benchmark.main([*options, "--budgets=1000"]) == 1


@wiring_test
def test_a_real_run_folder_is_read(benchmark, tmp_path):
    run = tmp_path / "digits" / "jtr" / "2"
    tiny = [*TINY_CLI_RUN, "--width=4", "--eval-samples=10", "--iters-per-task=2"]
    assert cli.main([*tiny, "--method=jtr", "--tasks=0-1", f"--out={run}"]) == 0
    collected = benchmark.collect(run)
    assert collected["finished"] and collected["total_iterations"] == 4
    assert [t["stop_reason"] for t in collected["tasks"]] == ["fixed", "fixed"]
    assert all(0 <= t["confident_share"] <= 100 for t in collected["tasks"])
    assert collected["seconds"] == pytest.approx(
        sum(t["seconds"] for t in collected["tasks"]), abs=0.1
    )


@pytest.mark.backend_independent
def test_seeds_are_summarised_side_by_side_with_their_means(benchmark, tmp_path):
    for seed, auto, fixed_500, fixed_1000 in (
        (0, 0.82, 0.80, 0.81),
        (1, 0.89, 0.83, 0.0),
    ):
        method = tmp_path / f"runs{seed}" / "fashion" / "jtr"
        _write_run(method / "auto-max4000", auto, [600] * 5, "learned")
        _write_run(method / "500", fixed_500, [500] * 5)
        if fixed_1000:
            _write_run(method / "1000", fixed_1000, [1000] * 5)
        _report(benchmark, tmp_path / f"runs{seed}", tmp_path / f"results{seed}")
    seeds = [f"{seed}={tmp_path / f'results{seed}'}" for seed in (0, 1)]
    out = tmp_path / "summary"
    assert benchmark.main(["--across-seeds", *seeds, f"--results={out}"]) == 0

    entry = json.loads((out / "adaptive_budget_seeds.json").read_text())["datasets"]
    entry = entry["fashion"]["jtr"]
    assert [row["seed"] for row in entry["seeds"]] == [0, 1]
    assert entry["mean_accuracy_gain_vs_fixed_500"] == pytest.approx(4.0)
    assert entry["seeds_with_accuracy_gain_vs_fixed_500"] == 2
    # Only seed 0 has a fixed-1000 run: its gap is the mean of one.
    assert entry["mean_accuracy_gap_vs_fixed_1000"] == pytest.approx(-1.0)
    assert entry["seeds_with_accuracy_gap_vs_fixed_1000"] == 1
    assert entry["target_gain_met"] and entry["target_gap_and_fraction_met"]
    markdown = (out / "adaptive_budget_seeds.md").read_text()
    assert (
        "| fashion | jtr | 1 | tensorflow bfloat16 | 89.00 | 3000 | - | - | +6.00 |"
        in (markdown)
    )
    assert "| fashion | jtr | mean of 1/2 | | | | -1.00 | 60% | +4.00 |" in markdown


@pytest.mark.backend_independent
def test_a_seed_record_names_its_seed(benchmark, capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--across-seeds", "benchmarks/results"])
    assert "expected SEED=FOLDER" in capsys.readouterr().err
