"""Export a run's per-task generators to SavedModel + ONNX + manifest, atomically.

Layout written for a run with tasks 1..T::

    EXPORT_DIR/task_01/manifest.json     # written last, lists every file's sha256
    EXPORT_DIR/task_01/model.onnx
    EXPORT_DIR/task_01/saved_model/...
    EXPORT_DIR/task_02/...

A task is exported into a hidden staging directory beside its final place
(``.task_03.tmp-XXXX``), checked, hashed and fsynced, and only then swapped
in with one rename, so a reader or a crash never sees a half-written export
under ``task_03``; the previous export stays in place until the new one is
complete. The heavy lifting happens in a TensorFlow subprocess
(:mod:`keras_mergan.export._worker`), whatever backend trained the run and whatever
backend the calling process uses.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

MANIFEST = "manifest.json"
FORMAT = "keras_mergan.generator"
FORMAT_VERSION = 1
DEFAULT_OPSET = 17
VALUE_RANGE = (-1.0, 1.0)
TASK_DIR = re.compile(r"^task_(\d+)$")
# As in export._worker, which is not imported here: it sets KERAS_BACKEND.
_PROTOCOL_PREFIX = "EXPORT-RESULT "
_STAGING = re.compile(r"^\.(task_\d+)\.(tmp|old)-[0-9a-f]+$")


class ExportError(RuntimeError):
    """An export could not be written; earlier exports are left untouched.

    Example:

    >>> try:
    ...     export_run("/nonexistent")
    ... except ExportError as error:
    ...     print("run.json not found" in str(error))
    True
    """


def task_dir_name(task: int) -> str:
    """Directory name of a 1-based task number, as the training CLI writes it."""
    return f"task_{int(task):02d}"


def read_run(run_dir: str | Path) -> dict:
    """The run's ``run.json`` as a dict, with a clear error when it is missing."""
    path = Path(run_dir) / "run.json"
    try:
        run = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(
            f"{path} not found: is {run_dir} a training run directory?"
        ) from None
    except json.JSONDecodeError as error:
        raise ExportError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(run, dict):
        raise ExportError(f"{path} must hold a JSON object")
    return run


def list_tasks(run_dir: str | Path) -> list[int]:
    """1-based numbers of the tasks of a run that have a saved ``gan.keras``."""
    found = []
    for child in Path(run_dir).iterdir():
        match = TASK_DIR.match(child.name)
        if match and (child / "gan.keras").is_file():
            found.append(int(match.group(1)))
    return sorted(found)


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
) -> list[Path]:
    """Export every task of a run (or the 1-based ``tasks``); returns their directories.

    Args:
        run_dir: directory written by the training CLI (``run.json``,
            ``task_XX/gan.keras``).
        out_dir: where ``task_XX`` export directories go; default
            ``run_dir/export``.
        tasks: 1-based task numbers; default every task with a ``gan.keras``.
        verify: compare the ONNX model (batch 16 and 1) and the reloaded
            SavedModel with the Keras generator before publishing; a
            difference above 1e-4 fails the task.
        opset: ONNX opset.
        python: interpreter of the TensorFlow subprocess (one with
            tensorflow, tf2onnx and keras_mergan); default this one.
        timeout: seconds after which the subprocess is killed.

    Tasks are exported by one subprocess and published one by one as they
    finish. If any task fails, the others are still published and
    :class:`ExportError` is raised at the end naming the failures.

    Example:

    >>> # export_run("runs/digits_ra")  # every task, into runs/digits_ra/export
    """
    run_dir = Path(run_dir).resolve()
    run = read_run(run_dir)
    available = list_tasks(run_dir)
    if tasks is None:
        selected = available
    else:
        selected = sorted({_task_number(t) for t in tasks})
        missing = [t for t in selected if t not in available]
        if missing:
            raise ExportError(
                f"no {', '.join(f'{task_dir_name(t)}/gan.keras' for t in missing)} "
                f"in {run_dir} (tasks with a model: {available or 'none'})"
            )
    if not selected:
        raise ExportError(f"{run_dir} has no task_XX/gan.keras to export")
    out_dir = Path(out_dir).resolve() if out_dir is not None else run_dir / "export"
    out_dir.mkdir(parents=True, exist_ok=True)

    published: dict[int, Path] = {}
    failures: dict[int, str] = {}
    with _exclusive(out_dir):
        recover(out_dir)
        staging = {t: _staging_dir(out_dir, t) for t in selected}
        log_tail: list[str] = []
        try:
            jobs = [_job(run_dir, run, t, staging[t]) for t in selected]
            request = {"jobs": jobs, "verify": verify, "opset": opset}
            messages = contextlib.closing(
                _run_worker(request, python, timeout, log_tail)
            )
            # closing(): an exception here must stop the worker now, not at GC.
            with messages as stream:
                for message in stream:
                    task = int(message["task"])
                    if not message.get("ok"):
                        failures[task] = message.get("error", "unknown error")
                        continue
                    try:
                        manifest = _manifest(run_dir, run, task, message)
                        write_manifest(staging[task], manifest)
                        target = out_dir / task_dir_name(task)
                        published[task] = publish(staging[task], target)
                    except (OSError, ExportError) as error:
                        failures[task] = f"{type(error).__name__}: {error}"
        finally:
            for path in staging.values():
                shutil.rmtree(path, ignore_errors=True)
    for task in selected:
        if task not in published and task not in failures:
            failures[task] = "the export subprocess ended before this task"
    if failures:
        details = "; ".join(f"task {t}: {e}" for t, e in sorted(failures.items()))
        done = ", ".join(str(t) for t in sorted(published)) or "none"
        log = (
            f"\n--- export subprocess log (tail) ---\n{log_tail[0]}" if log_tail else ""
        )
        raise ExportError(f"export failed for {details} (published: {done}){log}")
    return [published[t] for t in selected]


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


def _staging_dir(out_dir: Path, task: int) -> Path:
    path = out_dir / f".{task_dir_name(task)}.tmp-{uuid.uuid4().hex}"
    # mkdtemp would make it 0700; a published export should be readable by
    # the serving user like any other directory.
    path.mkdir(mode=0o755)
    return path


def _seen_classes(run_dir: Path, run: dict, task: int) -> tuple[list[int], list[int]]:
    """(task classes, classes seen up to and including ``task``)."""
    metrics_path = run_dir / task_dir_name(task) / "metrics.json"
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        metrics = json.loads(metrics_path.read_text())
        if "seen_classes" in metrics:
            return (
                [int(c) for c in metrics.get("task_classes", [])],
                [int(c) for c in metrics["seen_classes"]],
            )
    groups = run.get("tasks")
    if not groups or task > len(groups):
        raise ExportError(
            f"cannot tell which classes task {task} has seen: no seen_classes in "
            f"{metrics_path} and no task {task} in run.json's tasks"
        )
    seen: list[int] = []
    for group in groups[:task]:
        seen += [int(c) for c in group if int(c) not in seen]
    return [int(c) for c in groups[task - 1]], seen


def _job(run_dir: Path, run: dict, task: int, out: Path) -> dict:
    task_classes, seen = _seen_classes(run_dir, run, task)
    return {
        "task": task,
        "source": str(run_dir / task_dir_name(task) / "gan.keras"),
        "out": str(out),
        "seen_classes": seen,
        "task_classes": task_classes,
    }


def _manifest(run_dir: Path, run: dict, task: int, message: dict) -> dict:
    info = message["info"]
    task_classes, seen = _seen_classes(run_dir, run, task)
    names = [str(n) for n in run.get("class_names") or []]
    latent_dim, image_shape = info["latent_dim"], info["image_shape"]
    for key, value in (("latent_dim", latent_dim), ("image_shape", image_shape)):
        if key in run and run[key] != value:
            raise ExportError(
                f"run.json says {key}={run[key]} but task {task}'s generator "
                f"has {value}"
            )
    source = run_dir / task_dir_name(task) / "gan.keras"
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": task,
        "num_tasks": len(run["tasks"]) if run.get("tasks") else None,
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
            "backend": run.get("backend"),
            "keras_version": run.get("keras_version"),
        },
        "exported_with": message.get("versions", {}),
        "run": {
            key: run.get(key)
            for key in ("method", "dataset", "seed", "iters_per_task", "batch_size")
        },
        "source": {
            "path": str(source.relative_to(run_dir)),
            "sha256": sha256_file(source),
        },
        "verification": info.get("verification"),
        "export_seconds": info.get("seconds"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    manifest = dict(manifest, files=files)
    target = directory / MANIFEST
    partial = directory / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial, target)
    return target


def publish(staging: Path, target: Path) -> Path:
    """Make the complete ``staging`` directory appear as ``target`` in one step.

    Files are fsynced first so the rename cannot reach the disk before the
    data. An existing ``target`` is swapped out atomically where the kernel
    can exchange two paths (Linux ``renameat2``); elsewhere it is moved
    aside first and :func:`recover` puts it back if the process dies
    between the two renames.
    """
    _fsync_tree(staging)
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)
    else:
        aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
        os.rename(target, aside)
        os.rename(staging, target)
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_dir(target.parent)
    return target


def recover(out_dir: str | Path) -> None:
    """Undo an interrupted export: restore a moved-aside export, drop staging dirs."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return
    for path in sorted(out_dir.iterdir()):
        match = _STAGING.match(path.name)
        if not match:
            continue
        target = out_dir / match.group(1)
        if match.group(2) == "old" and not target.exists():
            os.rename(path, target)
        else:
            shutil.rmtree(path, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    result = renameat2(
        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    errno = ctypes.get_errno()
    # EINVAL/ENOSYS/EOPNOTSUPP: the filesystem or kernel cannot exchange.
    if errno in (22, 38, 95):
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for path in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """Serialise exporters of one directory (e.g. a trainer and a manual export)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, staging names are still unique
        yield
        return
    with open(out_dir / ".export.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _worker_env() -> dict:
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "tensorflow"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Export is CPU work; leave any GPU to the training process that called us.
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    # Let the worker import this checkout even when it is not pip-installed.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _run_worker(
    request: dict, python: str | None, timeout: float | None, log_tail: list[str]
) -> Iterator[dict]:
    """Start the TensorFlow worker and yield its per-task JSON messages.

    The worker's stderr goes to a temporary file (a pipe could fill up and
    block it); its tail is appended to ``log_tail`` when something failed.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [python or sys.executable, "-m", "keras_mergan.export._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=_worker_env(),
            text=True,
        )
        watchdog = _Watchdog(process, deadline)
        try:
            process.stdin.write(json.dumps(request))
            process.stdin.close()
            for line in process.stdout:
                if line.startswith(_PROTOCOL_PREFIX):
                    yield json.loads(line[len(_PROTOCOL_PREFIX) :])
            process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.returncode != 0:
                log.seek(0)
                log_tail.append(log.read()[-4000:])
        if watchdog.fired:
            raise ExportError(f"export subprocess killed after {timeout}s")
        if process.returncode not in (0, 1):
            raise ExportError(
                f"export subprocess exited with status {process.returncode}:\n"
                f"{log_tail[-1] if log_tail else ''}"
            )


class _Watchdog:
    """Kill the worker at the deadline without blocking the stdout reader."""

    def __init__(self, process: subprocess.Popen, deadline: float | None):
        import threading

        self.fired = False
        self._timer = None
        if deadline is not None:
            self._timer = threading.Timer(
                max(0.0, deadline - time.monotonic()), self._fire, args=(process,)
            )
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, process: subprocess.Popen) -> None:
        self.fired = True
        process.kill()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
