"""The run folder's layout, and the atomic writes and hashes its files rely on.

Training writes one folder per run::

    RUN_DIR/run.json              # what was trained, on what (written first)
    RUN_DIR/task_01/gan.keras     # the model after task 1
    RUN_DIR/task_01/grid.png      # its sample grid
    RUN_DIR/task_01/metrics.json  # written last: the task is finished
    RUN_DIR/task_02/...
    RUN_DIR/resume/               # mid-task checkpoints (keras_mergan.run.resume)
    RUN_DIR/export/task_01/manifest.json  # an export (keras_mergan.export)

This module is the only code that knows these names. It imports no ML
framework (Keras is imported inside `load_task_model` only), because the
serving package, which must run on onnxruntime alone, uses its task names
and hashing too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

RUN_INFO = "run.json"
MODEL_FILE = "gan.keras"
GRID_FILE = "grid.png"
METRICS_FILE = "metrics.json"
#: One row per finished task: losses, time, mean accuracy.
METRICS_TABLE = "metrics.csv"
#: Accuracy per seen class every `eval_every` iterations.
ACCURACY_CURVE = "accuracy_curve.csv"
#: Mid-task training states (`keras_mergan.run.resume`).
CHECKPOINT_FOLDER = "resume"
#: Written by `keras-mergan evaluate`.
EVALUATION_FILE = "evaluation.json"
PLOTS_FOLDER = "plots"
TENSORBOARD_FOLDER = "tensorboard"
EXPORT_FOLDER = "export"
#: Written last into a task's export: the export is complete.
EXPORT_MANIFEST = "manifest.json"
_TASK_FOLDER = re.compile(r"^task_(\d+)$")
_HASH_BLOCK = 1 << 20


class RunFolderError(FileNotFoundError):
    """A folder is not a run folder, or its `run.json` is unreadable.

    Example:

    >>> try:
    ...     read_run_info("/nonexistent")
    ... except RunFolderError as error:
    ...     print("run.json not found" in str(error))
    True
    """


class CorruptCheckpointError(ValueError):
    """A task's `gan.keras` is there but damaged: truncated, or a part of it
    fails its checksum. The message names the task and the file.

    Example:

    >>> str(CorruptCheckpointError(2, Path("run/task_02/gan.keras"), "truncated"))
    "task 2's checkpoint is corrupt (run/task_02/gan.keras): truncated"
    """

    def __init__(self, task: int, path: Path, reason: str):
        super().__init__(f"task {task}'s checkpoint is corrupt ({path}): {reason}")
        self.task, self.path, self.reason = task, path, reason


def task_folder_name(number: int) -> str:
    """Folder name of a 1-based task number.

    Example:

    >>> task_folder_name(3)
    'task_03'
    """
    return f"task_{int(number):02d}"


def task_number(name: str) -> int | None:
    """The task number a folder name stands for, or None if it names no task.

    Example:

    >>> task_number("task_12"), task_number("resume")
    (12, None)
    """
    match = _TASK_FOLDER.match(name)
    return int(match.group(1)) if match else None


def task_dir(run_dir: str | os.PathLike, number: int) -> Path:
    """Folder of task `number` (1-based) inside a run (or export) folder.

    Example:

    >>> task_dir("runs/sft", 2).as_posix()
    'runs/sft/task_02'
    """
    return Path(run_dir) / task_folder_name(number)


def model_path(run_dir: str | os.PathLike, number: int) -> Path:
    """The `gan.keras` saved at the end of task `number`.

    Example:

    >>> model_path("runs/sft", 2).as_posix()
    'runs/sft/task_02/gan.keras'
    """
    return task_dir(run_dir, number) / MODEL_FILE


@dataclass(frozen=True)
class RunInfo:
    """What `run.json` records: what a run trained, on what, and how.

    `config` is the resolved `RunConfig` (`RunConfig.to_dict()`); the other
    fields are what the run found: the data's categories and image shape,
    the task layout, the engine, and the model's own configuration. Settings
    live in `config` alone; the properties below read the ones that other
    tools (export, plots) need.

    Example:

    >>> info = RunInfo(method="sft", dataset="digits", class_names=["0", "1"],
    ...                tasks=[[0], [1]], latent_dim=128, image_shape=[32, 32, 1])
    >>> RunInfo.from_dict(info.to_dict()) == info
    True
    >>> info.seen_classes(2)
    [0, 1]
    """

    method: str
    dataset: str
    class_names: list[str]
    tasks: list[list[int]]
    latent_dim: int
    image_shape: list[int]
    #: The tasks as trained: cumulative for joint training.
    training_tasks: list[list[int]] = field(default_factory=list)
    #: The dataset each task's data came from (a run extended with new data).
    task_datasets: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    precision: str = "float32"
    backend: str = ""
    keras_version: str = ""
    devices: list[str] = field(default_factory=list)
    model_config: dict = field(default_factory=dict)
    #: The evaluator file the run was scored with ("" if none).
    evaluator: str = ""

    def __post_init__(self):
        if not self.training_tasks:
            object.__setattr__(self, "training_tasks", self.tasks)
        if not self.task_datasets:
            object.__setattr__(self, "task_datasets", [self.dataset] * len(self.tasks))

    @property
    def iters_per_task(self) -> int | None:
        """Iterations per task, from the config."""
        return self.config.get("iters_per_task")

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def seen_classes(self, number: int) -> list[int]:
        """Every class of tasks 1..`number` (1-based), in order of arrival."""
        return [c for task in self.tasks[:number] for c in task]

    def to_dict(self) -> dict:
        """The JSON-able `run.json` content."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunInfo:
        """A record from `run.json`'s content.

        Keys of older run folders that the config now holds (they repeated
        its settings at the top level) are ignored; a setting no config
        recorded is taken from them.
        """
        known = {f.name for f in fields(cls)}
        missing = {"method", "dataset", "class_names", "tasks"} - set(values)
        if missing:
            raise RunFolderError(f"run.json lacks {', '.join(sorted(missing))}")
        config = dict(values.get("config") or {})
        for name in ("iters_per_task", "batch_size", "seed"):
            if name in values:
                config.setdefault(name, values[name])
        given = {k: v for k, v in values.items() if k in known}
        given["config"] = config
        given.setdefault("latent_dim", config.get("latent_dim", 128))
        given.setdefault("image_shape", [32, 32, 1])
        return cls(**given)

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> RunInfo:
        """The record of the run in `run_dir`.

        Raises:
            RunFolderError: `run.json` is missing, not JSON, or not a record.
        """
        path = Path(run_dir) / RUN_INFO
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise RunFolderError(
                f"{path} not found: is {run_dir} a run folder?"
            ) from None
        except json.JSONDecodeError as error:
            raise RunFolderError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise RunFolderError(f"{path} must hold a JSON object")
        try:
            return cls.from_dict(values)
        except TypeError as error:
            raise RunFolderError(f"{path} is not a run record: {error}") from None

    def write(self, run_dir: str | os.PathLike) -> Path:
        """Writes `run.json` into `run_dir` atomically."""
        return write_json(Path(run_dir) / RUN_INFO, self.to_dict())


def default_run_dir(config) -> Path:
    """The run folder of a `RunConfig` given none: `runs/<method>-<dataset>`.

    Example:

    >>> from types import SimpleNamespace
    >>> default_run_dir(SimpleNamespace(method="jtr", dataset="data/cats.npz"))
    PosixPath('runs/jtr-cats')
    """
    return Path("runs") / f"{config.method}-{Path(config.dataset).stem}"


def check_out_folder(run_dir: str | os.PathLike) -> None:
    """Refuse a run folder that cannot hold a run: a file, a folder that
    cannot be written, or a non-empty folder holding no run.

    Raises:
        RunFolderError: one line naming the folder and the reason.

    Example:

    >>> check_out_folder("/nonexistent/new-run")  # a new folder is fine
    """
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"--out {path}: a file, not a folder")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"--out {path}: not writable")
    if path.is_dir() and not (path / RUN_INFO).exists() and any(path.iterdir()):
        raise RunFolderError(
            f"--out {path}: not empty and holds no run; choose an empty or new folder"
        )


def read_run_info(run_dir: str | os.PathLike) -> RunInfo:
    """The run's `run.json` as a `RunInfo` (`RunInfo.read`).

    Raises:
        RunFolderError: it is missing, not JSON, or not a run record.

    Example:

    >>> # read_run_info("runs/sft").class_names  ->  ['0', '1', ...]
    """
    return RunInfo.read(run_dir)


def finished_tasks(run_dir: str | os.PathLike) -> list[int]:
    """1-based numbers of the finished tasks: 1, 2, ... up to the first gap.

    A task is finished once its `metrics.json` exists: the recorder writes
    it after the task's model and grid, so its model and grid are whole.
    Tasks past a gap are ignored: training never leaves one, and a run
    continues after the last consecutive finished task.

    Example:

    >>> finished_tasks("/nonexistent")
    []
    """
    numbers = []
    while (task_dir(run_dir, len(numbers) + 1) / METRICS_FILE).is_file():
        numbers.append(len(numbers) + 1)
    return numbers


def task_folders(folder: str | os.PathLike, marker: str) -> dict[int, Path]:
    """Every `task_XX` folder of `folder` holding the file `marker`, by number.

    For folders whose tasks may come in any order (an export directory
    holds `task_XX/manifest.json` for the tasks exported so far); a missing
    `folder` has none.

    Example:

    >>> task_folders("/nonexistent", "manifest.json")
    {}
    """
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    found = {}
    for child in folder.iterdir():
        number = task_number(child.name)
        if number is not None and (child / marker).is_file():
            found[number] = child
    return dict(sorted(found.items()))


def read_task_metrics(run_dir: str | os.PathLike, number: int) -> dict:
    """`metrics.json` of task `number` (1-based).

    Example:

    >>> # read_task_metrics("runs/sft", 1)["seen_classes"]  ->  [0, 1]
    """
    return json.loads((task_dir(run_dir, number) / METRICS_FILE).read_text())


def task_accuracy(run_dir: str | os.PathLike, number: int) -> dict | None:
    """Evaluator accuracy by class of task `number`: None if unwritten or unscored.

    Example:

    >>> # task_accuracy("runs/sft", 2)  ->  {"0": 0.91, "1": 0.98}
    """
    if not (task_dir(run_dir, number) / METRICS_FILE).exists():
        return None
    return read_task_metrics(run_dir, number).get("accuracy") or None


def load_task_model(run_dir: str | os.PathLike, number: int, **options: Any):
    """The model saved at the end of task `number` (`keras.saving.load_model`).

    `options` go to `keras.saving.load_model`. Keras is imported here, not
    with the module; importing it registers the package's model classes
    (`keras_mergan/__init__.py`).

    Example:

    >>> # gan = load_task_model("runs/sft", 2); gan.generate(z, labels)

    Raises:
        CorruptCheckpointError: the file is truncated or damaged.
    """
    import keras

    return keras.saving.load_model(check_task_model(run_dir, number), **options)


def check_task_model(run_dir: str | os.PathLike, number: int) -> Path:
    """The path of task `number`'s `gan.keras`, once it is checked whole.

    A `.keras` file is a zip archive: a truncated one lacks its directory
    (which comes last), and a damaged one fails a member's CRC-32. Either
    raises `CorruptCheckpointError`, instead of Keras' "File not found" or a
    traceback that never names the file. A missing file is left to the
    loader, which says so.

    Example:

    >>> # check_task_model("runs/sft", 2)  ->  Path("runs/sft/task_02/gan.keras")
    """
    path = model_path(run_dir, number)
    if not path.is_file():
        return path
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except zipfile.BadZipFile as error:
        reason = str(error)
        if not zipfile.is_zipfile(path):
            reason = "truncated or overwritten (not a whole .keras archive)"
        raise CorruptCheckpointError(number, path, reason) from None
    except EOFError:
        reason = "a part of it is cut short"
        raise CorruptCheckpointError(number, path, reason) from None
    if damaged is not None:
        reason = f"{damaged} fails its CRC-32 check"
        raise CorruptCheckpointError(number, path, reason)
    return path


# --------------------------------------------------------------------------- #
# Atomic writes: a reader or a crash sees the old file or the new, never half.
# --------------------------------------------------------------------------- #


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """A temporary name beside `path`, renamed onto `path` if the block succeeds.

    Write a file (or create a directory) at the yielded path. On a clean
    exit it replaces `path` in one rename; on an exception it is removed
    and `path` is left as it was. The temporary name keeps `path`'s
    suffix, for writers that choose the format from it (`model.save`).
    With `fsync`, the data and the folder entry reach the disk before the
    function returns (for files that must survive a power cut).

    A directory can replace only a missing or empty one (`os.replace`).

    Example:

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "model.bin"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_bytes(b"weights")
    >>> target.read_bytes()
    b'weights'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.partial{path.suffix}")
    try:
        yield tmp
        if fsync:
            fsync_tree(tmp) if tmp.is_dir() else _fsync_file(tmp)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "w", *, fsync: bool = False, **options: Any
) -> Iterator[IO]:
    """`open(path, mode)` for writing, published only when the block succeeds.

    `options` go to `open` (`newline=""` for csv, an `encoding`).

    Example:

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "rows.csv"
    >>> with atomic_open(target, newline="") as f:
    ...     _ = f.write("a,b\\n")
    >>> target.read_text()
    'a,b\\n'
    """
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, mode, **options) as f:
        yield f


def write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> Path:
    """Write `text` to `path` atomically; returns `path`.

    Example:

    >>> # write_text("runs/sft/notes.txt", "first try")
    """
    with atomic_open(path, "w", fsync=fsync) as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write `data` to `path` atomically; returns `path`.

    Example:

    >>> # write_bytes("runs/sft/extra.bin", b"\\x00\\x01")
    """
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, *, fsync: bool = False) -> Path:
    """Write `data` as indented JSON to `path` atomically; returns `path`.

    Example:

    >>> # write_json("runs/sft/task_01/metrics.json", {"task": 1})
    """
    return write_text(path, json.dumps(data, indent=2) + "\n", fsync=fsync)


def save_model(model, path: str | os.PathLike, *, fsync: bool = False) -> Path:
    """`model.save(path)` atomically: a crash never leaves a truncated `.keras`.

    Example:

    >>> # save_model(gan, model_path("runs/sft", 1))
    """
    with atomic_path(path, fsync=fsync) as tmp:
        model.save(tmp)
    return Path(path)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory's entries (renames into it) to the disk, where possible.

    Example:

    >>> fsync_dir(".")
    """
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """Flush every file and directory under `root` to the disk.

    Example:

    >>> # fsync_tree("runs/sft/export/.task_03.tmp-1f2e")  # before renaming it
    """
    root = Path(root)
    for path in root.rglob("*"):
        if path.is_file():
            _fsync_file(path)
    for path in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fsync_dir(path)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


# --------------------------------------------------------------------------- #
# Hashes
# --------------------------------------------------------------------------- #


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks.

    Example:

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "abc"
    >>> _ = path.write_bytes(b"abc")
    >>> sha256_file(path)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes already in memory (what was hashed is what is used).

    Example:

    >>> sha256_bytes(b"abc")[:16]
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(data).hexdigest()
