"""Export a run's per-task generators to SavedModel + ONNX + manifest, atomically.

Layout written for a run with tasks 1..T::

    EXPORT_DIR/task_01/manifest.json     # written last, lists every file's sha256
    EXPORT_DIR/task_01/model.onnx
    EXPORT_DIR/task_01/saved_model/...
    EXPORT_DIR/task_02/...

Each task is exported into a staging directory, checked, hashed
(:mod:`.manifest`) and swapped in whole (:mod:`.publish`). The heavy lifting
happens in a TensorFlow subprocess (:mod:`.protocol`,
:mod:`keras_mergan.export._worker`), whatever backend trained the run and
whatever backend the calling process uses.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from keras_mergan.run_folder import (
    EXPORT_FOLDER,
    CorruptCheckpointError,
    RunFolderError,
    RunInfo,
    check_task_model,
    finished_tasks,
    model_path,
    read_run_info,
    sha256_file,
    task_dir,
    task_folders,
)

from .errors import ExportError
from .manifest import MANIFEST, build_manifest, seen_classes, write_manifest
from .protocol import run_worker
from .publish import exclusive, publish, recover, staging_dir

DEFAULT_OPSET = 17


def export_task(
    run_dir: str | Path, task_number: int, out_dir: str | Path | None = None, **options
) -> Path:
    """Export one task (1-based) of a run; returns its export directory.

    This is what the training CLI calls at each task end with ``--export``.
    ``options`` are those of :func:`export_run`.

    Example:

    >>> # export_task("runs/digits_ra", 3)  ->  runs/digits_ra/export/task_03
    """
    return export_run(run_dir, out_dir, tasks=[task_number], **options)[0]


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    tasks: Iterable[int] | None = None,
    *,
    verify: bool = True,
    opset: int = DEFAULT_OPSET,
    python: str | None = None,
    timeout: float | None = None,
    force: bool = False,
) -> list[Path]:
    """Export every task of a run (or the 1-based ``tasks``); returns their directories.

    Args:
        run_dir: directory written by the training CLI (``run.json``,
            ``task_XX/gan.keras``).
        out_dir: where ``task_XX`` export directories go; default
            ``run_dir/export``.
        tasks: 1-based task numbers; default every finished task.
        verify: compare the ONNX model (batch 16 and 1) and the reloaded
            SavedModel with the Keras generator before publishing; a
            difference above 1e-4 fails the task.
        opset: ONNX opset.
        python: interpreter of the TensorFlow subprocess (one with
            tensorflow, tf2onnx and keras_mergan); default this one.
        timeout: seconds after which the subprocess is killed.
        force: with ``tasks`` None, export every task again even where its
            published export already comes from the same `gan.keras`.

    With ``tasks`` None, a task whose published export was made from the very
    `gan.keras` it has now (the manifest's source hash) is kept as it is,
    byte for byte, unless `force`: exporting a run extended with new tasks
    publishes only those, and a server watching the folder sees no change to
    the earlier versions. Tasks named in ``tasks`` are always exported.

    Tasks are exported by one subprocess and published one by one as they
    finish. If any task fails (a corrupt `gan.keras` is found before the
    subprocess starts), the others are still published and
    :class:`ExportError` is raised at the end naming the failures.

    Example:

    >>> # export_run("runs/digits_ra")  # every task, into runs/digits_ra/export
    """
    run_dir = Path(run_dir).resolve()
    try:
        run = read_run_info(run_dir)
    except RunFolderError as error:
        raise ExportError(str(error)) from None
    available = finished_tasks(run_dir)
    if tasks is None:
        selected = available
    else:
        selected = sorted({_task_number(t) for t in tasks})
        missing = [t for t in selected if t not in available]
        if missing:
            raise ExportError(
                f"no {', '.join(model_path('', t).as_posix() for t in missing)} "
                f"in {run_dir} (tasks with a model: {available or 'none'})"
            )
    if not selected:
        raise ExportError(f"{run_dir} has no finished task to export")
    out_dir = run_dir / EXPORT_FOLDER if out_dir is None else Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    # Asked for every task, those already published from their present
    # gan.keras are kept; tasks asked for by number are exported again.
    keep = tasks is None and not force
    current = _current_exports(run_dir, out_dir, selected) if keep else {}
    selected = [t for t in selected if t not in current]
    if not selected:
        return [current[t] for t in sorted(current)]

    published: dict[int, Path] = {}
    # Task -> what went wrong, as a phrase that names the task.
    failures: dict[int, str] = {}
    for task in selected:
        try:
            check_task_model(run_dir, task)
        except CorruptCheckpointError as error:
            failures[task] = str(error)
    selected = [t for t in selected if t not in failures]
    with exclusive(out_dir):
        recover(out_dir)
        staging = {t: staging_dir(out_dir, t) for t in selected}
        log_tail: list[str] = []
        try:
            jobs = [_job(run_dir, run, t, staging[t]) for t in selected]
            request = {"jobs": jobs, "verify": verify, "opset": opset}
            messages = (
                contextlib.closing(run_worker(request, python, timeout, log_tail))
                if jobs
                else contextlib.nullcontext([])
            )
            # closing(): an exception here must stop the worker now, not at GC.
            with messages as stream:
                for message in stream:
                    task = int(message["task"])
                    if not message.get("ok"):
                        error = message.get("error", "unknown error")
                        failures[task] = f"task {task} failed: {error}"
                        continue
                    try:
                        manifest = build_manifest(run_dir, run, task, message)
                        write_manifest(staging[task], manifest)
                        target = task_dir(out_dir, task)
                        published[task] = publish(staging[task], target)
                    except (OSError, ExportError) as error:
                        name = type(error).__name__
                        failures[task] = f"task {task} failed: {name}: {error}"
        finally:
            for path in staging.values():
                shutil.rmtree(path, ignore_errors=True)
    for task in selected:
        if task not in published and task not in failures:
            failures[task] = f"task {task}: the export subprocess ended before it"
    if failures:
        details = "; ".join(failures[t] for t in sorted(failures))
        done = ", ".join(str(t) for t in sorted(published)) or "none"
        log = (
            f"\n--- export subprocess log (tail) ---\n{log_tail[0]}" if log_tail else ""
        )
        raise ExportError(f"{details}; published: {done}{log}")
    done = {**current, **published}
    return [done[t] for t in sorted(done)]


def _current_exports(run_dir: Path, out_dir: Path, tasks: list[int]) -> dict[int, Path]:
    """The tasks whose published export was made from their present `gan.keras`."""
    found = task_folders(out_dir, MANIFEST)
    current = {}
    for task in tasks:
        if task not in found:
            continue
        try:
            manifest = json.loads((found[task] / MANIFEST).read_text())
            source = manifest["source"]["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if source == sha256_file(model_path(run_dir, task)):
            current[task] = found[task]
    return current


def _task_number(task) -> int:
    if isinstance(task, bool) or not isinstance(task, int | str):
        raise ExportError(f"task numbers are integers >= 1, got {task!r}")
    try:
        number = int(task)
    except ValueError:
        raise ExportError(f"task numbers are integers >= 1, got {task!r}") from None
    if number < 1:
        raise ExportError(f"task numbers are 1-based, got {task!r}")
    return number


def _job(run_dir: Path, run: RunInfo, task: int, out: Path) -> dict:
    task_classes, seen = seen_classes(run_dir, run, task)
    return {
        "task": task,
        "source": str(model_path(run_dir, task)),
        "out": str(out),
        "seen_classes": seen,
        "task_classes": task_classes,
    }
