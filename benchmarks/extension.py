"""Learning categories later: a run extended one category at a time, from
that category's data alone, against one uninterrupted run.

Usage::

    python benchmarks/extension.py --method jtr --mode extend   # one process
    python benchmarks/extension.py --method jtr --mode whole    # another
    python benchmarks/extension.py --report                     # the table

On the built-in digits, with the README's first command's model size
(``--width 16 --precision auto``) and the default preset for the budget
(``--preset auto``):

- ``whole``: one run over digits 0-9, ``--iters-per-task`` each;
- ``extend``: a run over digits 0-4, then extended five times with
  ``--add-tasks d`` (d = 5 ... 9), each from an ``.npz`` holding only digit
  ``d``. After every extension the run is exported while a server serves the
  export folder and three clients keep asking it for samples of the latest
  version; every answer's status is counted.

Each mode writes ``benchmarks/results/extension_<method>_<mode>.json`` as it
goes (after every task), and running it again resumes where it stopped.
``--report`` puts the modes side by side in ``extension.{json,md}``: the
accuracy after each task and the gap after the last.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from keras_mergan.run_folder import finished_tasks, read_task_metrics

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FIRST_TASKS = "0-4"
LATER_DIGITS = (5, 6, 7, 8, 9)
TARGET_GAP_POINTS = 2.0


def digit_only(digit: int, folder: Path) -> Path:
    """An ``.npz`` of the built-in digits holding only ``digit``."""
    path = folder / f"digit{digit}.npz"
    if path.exists():
        return path
    source = importlib.resources.files("keras_mergan") / "datasets" / "digits.npz"
    with importlib.resources.as_file(source) as local, np.load(local) as data:
        train, test = data["y_train"] == digit, data["y_test"] == digit
        np.savez(
            path,
            x_train=data["x_train"][train],
            y_train=data["y_train"][train],
            x_test=data["x_test"][test],
            y_test=data["y_test"][test],
        )
    return path


def accuracies(run_dir: Path) -> list[dict]:
    """Mean and per-digit accuracy (%) after each finished task."""
    rows = []
    for number in finished_tasks(run_dir):
        metrics = read_task_metrics(run_dir, number)
        rows.append(
            {
                "task": number,
                "mean": 100 * metrics.get("mean_accuracy", float("nan")),
                "per_class": {k: 100 * v for k, v in metrics["accuracy"].items()},
                "seconds": metrics["seconds"],
            }
        )
    return rows


class Clients:
    """Three threads asking a server for samples of its newest version."""

    def __init__(self, url: str):
        self.url = url
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop) for _ in range(3)]

    def _loop(self) -> None:
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "z",
                        "shape": [1, 128],
                        "datatype": "FP32",
                        "data": [0.0] * 128,
                    },
                    {"name": "label", "shape": [1], "datatype": "INT32", "data": [0]},
                ]
            }
        ).encode()
        while not self._stop.is_set():
            request = urllib.request.Request(
                f"{self.url}/v2/models/generator/infer",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    self.statuses.append(response.status)
            except urllib.error.HTTPError as error:
                self.statuses.append(error.code)
            except OSError:
                self.statuses.append(0)

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def run_extend(args, record: dict, save) -> None:
    from keras_mergan.export import export_run
    from keras_mergan.serve.app import AppSettings, create_app
    from keras_mergan.serve.server import start_in_thread

    from keras_mergan import RunConfig, train_run
    from keras_mergan.run.extension import extension_config
    from keras_mergan.run_folder import RunInfo

    run_dir = args.runs / f"{args.method}-extend"
    data = args.runs / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = RunConfig(
        method=args.method,
        tasks=FIRST_TASKS,
        iters_per_task=args.iters_per_task,
        width=16,
        precision="auto",
        seed=args.seed,
    )
    train_run(config, run_dir, verbose=0)
    record["accuracy"] = accuracies(run_dir)
    save()
    export = run_dir / "export"
    export_run(run_dir, export)
    reloads = record.setdefault("reloads", [])
    with start_in_thread(create_app(export, AppSettings())) as server:
        for digit in LATER_DIGITS:
            if digit < RunInfo.read(run_dir).num_tasks:
                continue
            start = time.perf_counter()
            train_run(
                extension_config(
                    run_dir, str(digit), dataset=str(digit_only(digit, data))
                ),
                run_dir,
                verbose=0,
            )
            trained = time.perf_counter() - start
            with Clients(server.url) as clients:
                export_run(run_dir, export)
                versions = _wait_for_version(server.url, digit + 1)
            reloads.append(
                {
                    "digit": digit,
                    "train_seconds": round(trained, 1),
                    "requests": len(clients.statuses),
                    "failed": sum(s != 200 for s in clients.statuses),
                    "versions_served": versions,
                }
            )
            record["accuracy"] = accuracies(run_dir)
            save()


def _wait_for_version(url: str, version: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    versions: list[str] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/v2/models/generator", timeout=30) as r:
            versions = json.loads(r.read())["versions"]
        if str(version) in versions:
            break
        time.sleep(0.2)
    return versions


def run_whole(args, record: dict, save) -> None:
    from keras_mergan import RunConfig, train_run

    run_dir = args.runs / f"{args.method}-whole"
    config = RunConfig(
        method=args.method,
        tasks="0-9",
        iters_per_task=args.iters_per_task,
        width=16,
        precision="auto",
        seed=args.seed,
    )
    train_run(config, run_dir, verbose=0)
    record["accuracy"] = accuracies(run_dir)
    save()


def report(iters_per_task: int) -> dict:
    """Both modes of every method measured so far, side by side."""
    rows = {}
    for path in sorted(RESULTS.glob(f"extension_*_{iters_per_task}_*.json")):
        record = json.loads(path.read_text())
        rows.setdefault(record["method"], {})[record["mode"]] = record
    summary = {"iters_per_task": iters_per_task, "methods": {}}
    lines = [
        f"# Learning categories later ({iters_per_task} iterations per task)",
        "",
        "Built-in digits, `--width 16 --precision auto`, default preset. "
        "`extend`: digits 0-4 in one run, then `--add-tasks d` for d = 5 ... 9, "
        "each from a file holding only digit d; `whole`: digits 0-9 in one run. "
        "Mean evaluator accuracy (%) over the digits seen after each task.",
        "",
        "| method | mode | " + " | ".join(f"task {t}" for t in range(1, 11)) + " |",
        "|---|---|" + "---:|" * 10,
    ]
    for method, modes in sorted(rows.items()):
        for mode in ("whole", "extend"):
            if mode not in modes:
                continue
            means = {row["task"]: row["mean"] for row in modes[mode]["accuracy"]}
            cells = [f"{means[t]:.2f}" if t in means else "" for t in range(1, 11)]
            lines.append(f"| {method} | {mode} | " + " | ".join(cells) + " |")
        finals = {
            mode: record["accuracy"][-1]["mean"]
            for mode, record in modes.items()
            if record["accuracy"] and record["accuracy"][-1]["task"] == 10
        }
        entry = {"final_accuracy": finals}
        if len(finals) == 2:
            entry["gap_points"] = finals["whole"] - finals["extend"]
            entry["target_met"] = abs(entry["gap_points"]) <= TARGET_GAP_POINTS
        reloads = modes.get("extend", {}).get("reloads", [])
        if reloads:
            entry["requests_during_reloads"] = sum(r["requests"] for r in reloads)
            entry["failed_requests"] = sum(r["failed"] for r in reloads)
        summary["methods"][method] = entry
    lines.append("")
    for method, entry in summary["methods"].items():
        if "gap_points" in entry:
            lines.append(
                f"- {method}: after the last task, whole "
                f"{entry['final_accuracy']['whole']:.2f}%, extended "
                f"{entry['final_accuracy']['extend']:.2f}% (gap "
                f"{entry['gap_points']:+.2f} points; target within "
                f"{TARGET_GAP_POINTS:g}: "
                f"{'met' if entry['target_met'] else 'not met'})."
            )
        if "failed_requests" in entry:
            lines.append(
                f"- {method}: {entry['requests_during_reloads']} requests to the "
                f"server during the five exports of new versions, "
                f"{entry['failed_requests']} failed."
            )
    stem = RESULTS / f"extension_{iters_per_task}"
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="jtr", choices=("jtr", "ra", "jtr+ra"))
    parser.add_argument("--mode", choices=("whole", "extend"), default="extend")
    parser.add_argument("--iters-per-task", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=Path.home() / "runs" / "extension")
    parser.add_argument("--report", action="store_true", help="only the table")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    if args.report:
        report(args.iters_per_task)
        return
    args.runs = args.runs / str(args.iters_per_task)
    name = args.method.replace("+", "_")
    path = RESULTS / f"extension_{name}_{args.iters_per_task}_{args.mode}.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    record.update(
        method=args.method, mode=args.mode, iters_per_task=args.iters_per_task
    )

    def save() -> None:
        path.write_text(json.dumps(record, indent=2) + "\n")

    (run_extend if args.mode == "extend" else run_whole)(args, record, save)
    save()
    report(args.iters_per_task)


if __name__ == "__main__":
    main()
