"""The manifest of a task's export: what it holds, where it came from, its hashes.

``manifest.json`` is written last into an export's staging directory and
lists every other file with its sha256, so a reader can check the export
it loads (:mod:`keras_mergan.serve` does) and a missing manifest means an
unfinished export.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timezone
from pathlib import Path

from keras_mergan.run_folder import EXPORT_MANIFEST as MANIFEST
from keras_mergan.run_folder import (
    METRICS_FILE,
    RunInfo,
    model_path,
    read_task_metrics,
    sha256_file,
    task_dir,
    write_json,
)

from .errors import ExportError

FORMAT = "keras_mergan.generator"
FORMAT_VERSION = 1
VALUE_RANGE = (-1.0, 1.0)


def seen_classes(run_dir: Path, run: RunInfo, task: int) -> tuple[list[int], list[int]]:
    """(task classes, classes seen up to and including ``task``)."""
    metrics_path = task_dir(run_dir, task) / METRICS_FILE
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        metrics = read_task_metrics(run_dir, task)
        if "seen_classes" in metrics:
            return (
                [int(c) for c in metrics.get("task_classes", [])],
                [int(c) for c in metrics["seen_classes"]],
            )
    groups = run.tasks
    if not groups or task > len(groups):
        raise ExportError(
            f"cannot tell which classes task {task} has seen: no seen_classes in "
            f"{metrics_path} and no task {task} in run.json's tasks"
        )
    seen: list[int] = []
    for group in groups[:task]:
        seen += [int(c) for c in group if int(c) not in seen]
    return [int(c) for c in groups[task - 1]], seen


def build_manifest(run_dir: Path, run: RunInfo, task: int, message: dict) -> dict:
    """The manifest of ``task``'s export, from the run and the worker's ``message``."""
    info = message["info"]
    task_classes, seen = seen_classes(run_dir, run, task)
    names = [str(n) for n in run.class_names]
    latent_dim, image_shape = info["latent_dim"], info["image_shape"]
    recorded = {"latent_dim": run.latent_dim, "image_shape": list(run.image_shape)}
    for key, value in (("latent_dim", latent_dim), ("image_shape", image_shape)):
        if recorded[key] != value:
            raise ExportError(
                f"run.json says {key}={recorded[key]} but task {task}'s generator "
                f"has {value}"
            )
    source = model_path(run_dir, task)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": task,
        "num_tasks": run.num_tasks,
        "task_classes": task_classes,
        "seen_classes": seen,
        "categories": [
            {"index": c, "name": names[c] if c < len(names) else str(c)} for c in seen
        ],
        "class_names": names,
        "latent_dim": latent_dim,
        "image_shape": image_shape,
        "value_range": list(VALUE_RANGE),
        "inputs": {
            "z": {"dtype": "float32", "shape": [None, latent_dim]},
            "label": {"dtype": info["label_dtype"], "shape": [None]},
        },
        "outputs": {"image": {"dtype": "float32", "shape": [None, *image_shape]}},
        "onnx": {"path": "model.onnx", "opset": info["opset"]},
        "saved_model": {"path": "saved_model", "signature": "serving_default"},
        "batch_independent": True,
        "folded_batch_norm_layers": info["folded_layers"],
        "trained_with": {
            "backend": run.backend,
            "keras_version": run.keras_version,
        },
        "exported_with": message.get("versions", {}),
        "run": {
            "method": run.method,
            "dataset": run.task_datasets[task - 1],
            "seed": run.config.get("seed"),
            "iters_per_task": run.iters_per_task,
            "batch_size": run.config.get("batch_size"),
        },
        "source": {
            "path": str(source.relative_to(run_dir)),
            "sha256": sha256_file(source),
        },
        "verification": info.get("verification"),
        "export_seconds": info.get("seconds"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_manifest(directory: Path, manifest: dict) -> Path:
    """Hash every file of ``directory`` into ``manifest["files"]`` and write it last."""
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative != MANIFEST:
            files[relative] = {
                "sha256": sha256_file(path),
                "bytes": path.stat().st_size,
            }
    return write_json(directory / MANIFEST, dict(manifest, files=files))
