# Over 400 lines on purpose: Sampler and ExportDirectory depend on each
# other (a Sampler given an export directory resolves its task through
# ExportDirectory, which caches Samplers); apart they would import each
# other in a cycle.
"""Sampling exported generators with onnxruntime (no Keras, TF, JAX or torch)."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from keras_mergan.run_folder import EXPORT_FOLDER, RUN_INFO, sha256_bytes, task_folders
from keras_mergan.run_folder import EXPORT_MANIFEST as MANIFEST

from .errors import (
    CategoryNotLearnedError,
    ExportIntegrityError,
    InvalidParameterError,
    ServeError,
    UnknownCategoryError,
    UnknownTaskError,
)
from .images import to_uint8

SUPPORTED_FORMAT = "keras_mergan.generator"
MAX_SAMPLES = 65536
# Rows per onnxruntime call: bounds memory for large n and gives the
# thread pool whole chunks to spread over cores.
CHUNK = 512
# ASCII digits only: \d would take other scripts' digits too.
_TASK_VALUE = re.compile(r"^[0-9]{1,6}$")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity on Linux)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class ExportDirectory:
    """The ``task_XX`` exports under one directory, re-scanned on every call.

    Tasks appear as the trainer publishes them; a replaced export is picked
    up because its manifest changes (the export is swapped in as a whole).

    Args:
        root: directory holding ``task_XX/manifest.json`` (the export
            directory), a single task's export directory, or a run folder
            (its ``export/``).
        **sampler_options: passed to every :class:`Sampler` it creates.

    Example:

    >>> # exports = ExportDirectory("runs/digits_ra/export")
    >>> # exports.tasks()  ->  [1, 2, 3]
    >>> # exports.sampler(2).sample("7", 16, seed=0).shape  ->  (16, 32, 32, 1)
    """

    def __init__(self, root: str | os.PathLike, **sampler_options):
        self.root = Path(root)
        if self.root.is_file():
            # Most often a run's run.json: its exports are in the run's export/.
            raise NotADirectoryError(
                f"{self.root} is a file; expected an export directory "
                "(task_XX/manifest.json), such as a run's export/ folder"
            )
        if not self.root.is_dir():
            raise FileNotFoundError(f"export directory {self.root} does not exist")
        if (self.root / RUN_INFO).is_file():
            run_dir, self.root = self.root, self.root / EXPORT_FOLDER
            if not self.root.is_dir():
                raise FileNotFoundError(
                    f"{run_dir} is a run with no export yet: "
                    f"keras-mergan export {run_dir}"
                )
        self._options = sampler_options
        self._lock = threading.Lock()
        # A task that cannot load is remembered with its error, so that
        # health checks and listings do not retry (and re-hash) it until its
        # export is replaced.
        self._samplers: dict[int, tuple[tuple, Sampler | ServeError]] = {}

    def _task_dirs(self) -> dict[int, Path]:
        if (self.root / MANIFEST).is_file():
            manifest = _read_manifest(self.root / MANIFEST)
            return {int(manifest["task"]): self.root}
        return task_folders(self.root, MANIFEST)

    def tasks(self) -> list[int]:
        """1-based numbers of the published tasks, ascending."""
        return sorted(self._task_dirs())

    def latest(self) -> int:
        return _latest(self.tasks())

    def resolve_task(self, task: int | str | None) -> int:
        """A task number from an int, a decimal string or ``None``/"latest"."""
        return self._resolve(task, self.tasks())

    def _resolve(self, task: int | str | None, available: list[int]) -> int:
        if task is None or (isinstance(task, str) and task.strip().lower() == "latest"):
            return _latest(available)
        if isinstance(task, bool):
            raise InvalidParameterError("task must be an integer or 'latest'", "task")
        if isinstance(task, str):
            if not _TASK_VALUE.match(task.strip()):
                raise InvalidParameterError(
                    f"task must be a positive integer or 'latest', got {task[:64]!r}",
                    "task",
                )
            task = int(task.strip())
        if not isinstance(task, int | np.integer):
            raise InvalidParameterError(
                f"task must be an integer, got {task!r}", "task"
            )
        task = int(task)
        if task not in available:
            raise UnknownTaskError(
                f"no export for task {task}; exported tasks: "
                f"{', '.join(map(str, available)) or 'none'}",
                "task",
            )
        return task

    def manifest(self, task: int | str | None = None) -> dict:
        return self.sampler(task).manifest

    def sampler(self, task: int | str | None = None) -> Sampler:
        """The (cached) sampler of a task, reloaded when its export was replaced.

        A task whose export cannot be loaded raises
        :class:`~keras_mergan.serve.errors.ExportIntegrityError` (a message without
        absolute paths) every time until its export changes.
        """
        found = self._task_dirs()
        number = self._resolve(task, sorted(found))
        directory = found[number]
        key = _stat_key(directory / MANIFEST)
        with self._lock:
            cached = self._samplers.get(number)
            if cached is None or cached[0] != key:
                try:
                    loaded: Sampler | ServeError = Sampler(directory, **self._options)
                except ServeError as error:
                    loaded = error
                self._samplers[number] = (key, loaded)
                # A replaced sampler is not closed: a request may still be
                # using it. Its idle pool threads exit when it is collected.
            loaded = self._samplers[number][1]
        if isinstance(loaded, ServeError):
            raise loaded
        return loaded

    def status(self) -> dict[int, str | None]:
        """Every published task with ``None`` if it loads, else why it does not."""
        status: dict[int, str | None] = {}
        for task in self.tasks():
            try:
                self.sampler(task)
            except UnknownTaskError:  # removed since the scan
                continue
            except ServeError as error:
                status[task] = error.message
            else:
                status[task] = None
        return status

    def first_task_with(self, class_index: int) -> int | None:
        """The first exported task whose generator knows ``class_index``, if any."""
        for task, directory in sorted(self._task_dirs().items()):
            manifest = _read_manifest(directory / MANIFEST)
            if class_index in manifest["seen_classes"]:
                return task
        return None


class Sampler:
    """Generate images of a learned category from one task's exported generator.

    Only onnxruntime, numpy and Pillow are used. Sampling is deterministic:
    ``sample(c, n, seed)`` draws ``z`` from ``numpy.random.default_rng(seed)``
    and, since the exported generator is batch independent, image ``i`` is
    the same whatever ``n`` (the first ``k`` of ``n`` equal ``sample(c, k)``).

    Args:
        export_dir: an export directory (``task_XX`` subfolders) or one
            task's directory (holding ``manifest.json``).
        task: 1-based task number, or ``None`` for the latest exported task.
        threads: CPU threads for inference (default: all available). Large
            batches are split into chunks run concurrently by single-threaded
            onnxruntime calls, which scales better on small CPUs than
            onnxruntime's intra-op threads for this small network.
        verify: check ``model.onnx`` against the manifest's sha256 first.

    Example:

    >>> sampler = Sampler("runs/digits_ra/export")        # doctest: +SKIP
    >>> sampler.categories                                # doctest: +SKIP
    [(0, '0'), (1, '1'), (2, '2')]
    >>> sampler.sample("2", n=8, seed=0).shape            # doctest: +SKIP
    (8, 32, 32, 1)
    """

    def __init__(
        self,
        export_dir: str | os.PathLike,
        task: int | str | None = None,
        *,
        threads: int | None = None,
        verify: bool = True,
    ):
        root = Path(export_dir)
        if (root / MANIFEST).is_file():
            directory = root
            manifest = _read_manifest(directory / MANIFEST)
            if task is not None and str(task) not in (str(manifest["task"]), "latest"):
                raise UnknownTaskError(
                    f"{root.name} holds task {manifest['task']}, not task {task}",
                    "task",
                )
        else:
            exports = ExportDirectory(root)
            number = exports.resolve_task(task)
            directory = exports._task_dirs()[number]
            manifest = _read_manifest(directory / MANIFEST)
        self.directory = directory
        self.manifest = manifest
        self.task = int(manifest["task"])
        self.latent_dim = int(manifest["latent_dim"])
        self.image_shape = tuple(int(d) for d in manifest["image_shape"])
        self.value_range = tuple(float(v) for v in manifest.get("value_range", (-1, 1)))
        self.class_names = [str(n) for n in manifest.get("class_names", [])]
        self.seen_classes = [int(c) for c in manifest["seen_classes"]]
        label_dtype = manifest["inputs"]["label"]["dtype"]
        self._label_dtype = np.dtype(label_dtype)
        self.threads = max(1, int(threads) if threads else available_cpus())

        # Messages name files relative to the export directory: they reach
        # HTTP clients, which have no business knowing the server's layout.
        model_name = f"{directory.name}/{manifest['onnx']['path']}"
        model_path = (directory / manifest["onnx"]["path"]).resolve()
        if directory.resolve() not in model_path.parents:
            raise ExportIntegrityError(f"{model_name}: model path leaves the export")
        try:
            model_bytes = model_path.read_bytes()
        except OSError as error:
            raise ExportIntegrityError(
                f"{model_name} cannot be read ({error.strerror})"
            ) from None
        if verify:
            expected = manifest.get("files", {}).get(manifest["onnx"]["path"], {})
            if expected.get("sha256") != sha256_bytes(model_bytes):
                raise ExportIntegrityError(
                    f"{model_name} does not match the sha256 in its manifest"
                )
        self._model_bytes = model_bytes
        # Small batches run on the caller's thread with this shared session.
        try:
            self._session = self._new_session()
        except Exception as error:  # onnxruntime raises its own exception types
            raise ExportIntegrityError(
                f"{model_name} cannot be loaded by onnxruntime ({type(error).__name__})"
            ) from error
        # Large batches are split over a pool whose threads each own a
        # session: concurrent run() calls on one session share its memory
        # arena and were ~8% slower at batch 64 on 2 cores (measured).
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def _new_session(self) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One intra-op thread per session: concurrency comes from running
        # chunks (and concurrent HTTP requests) side by side. ORT's own
        # intra-op pool reached 12k images/s at batch 64 on this 2-core CPU
        # against 15.7k for the split, and spins badly on a busy machine.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(
            self._model_bytes, options, providers=["CPUExecutionProvider"]
        )

    def _run_in_worker(self, feed: dict) -> np.ndarray:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._new_session()
        return session.run(["image"], feed)[0]

    @property
    def categories(self) -> list[tuple[int, str]]:
        """(index, name) of every category this task's generator has learned."""
        return [(c, self.category_name(c)) for c in self.seen_classes]

    def category_name(self, index: int) -> str:
        return self.class_names[index] if index < len(self.class_names) else str(index)

    def category_index(self, category: int | str) -> int:
        """Resolve a category given by name or by index; it must be learned already.

        A string is looked up as a class name first, then read as an index.
        """
        if isinstance(category, bool):
            raise InvalidParameterError(
                "category must be a name or an index", "category"
            )
        if isinstance(category, str):
            if category in self.class_names:
                index = self.class_names.index(category)
            elif re.fullmatch(r"\d{1,9}", category.strip()):
                index = int(category.strip())
            else:
                raise UnknownCategoryError(
                    f"unknown category {category[:64]!r}; categories of this run: "
                    f"{', '.join(self.class_names) or 'unnamed'}",
                    "category",
                )
        elif isinstance(category, int | np.integer):
            index = int(category)
        else:
            raise InvalidParameterError(
                f"category must be a name or an index, got {type(category).__name__}",
                "category",
            )
        num_classes = max(len(self.class_names), max(self.seen_classes, default=-1) + 1)
        if not 0 <= index < num_classes:
            raise UnknownCategoryError(
                f"unknown category index {index}; valid: 0..{num_classes - 1}",
                "category",
            )
        if index not in self.seen_classes:
            learned = ", ".join(f"{c} ({n})" for c, n in self.categories)
            raise CategoryNotLearnedError(
                f"category {self.category_name(index)!r} (index {index}) is not "
                f"learned "
                f"at task {self.task}; learned so far: {learned}",
                "category",
            )
        return index

    def generate(self, z: np.ndarray, labels: Sequence[int] | np.ndarray) -> np.ndarray:
        """Raw generator output, float32 ``[n, H, W, C]`` in ``value_range``."""
        z = np.ascontiguousarray(z, np.float32)
        labels = np.ascontiguousarray(labels, self._label_dtype).reshape(-1)
        if z.ndim != 2 or z.shape[1] != self.latent_dim or len(z) != len(labels):
            raise InvalidParameterError(
                f"expected z [n, {self.latent_dim}] and n labels, got {z.shape} and "
                f"{labels.shape}"
            )
        n = len(z)
        if n == 0:
            return np.zeros((0, *self.image_shape), np.float32)
        # Split into about one chunk per thread (at most CHUNK rows each).
        parts = max(1, min(self.threads, n // 8), -(-n // CHUNK))
        bounds = np.linspace(0, n, parts + 1).astype(int)
        feeds = [
            {"z": z[a:b], "label": labels[a:b]}
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        if self._pool is None or len(feeds) == 1:
            outputs = [self._session.run(["image"], feed)[0] for feed in feeds]
        else:
            # session.run releases the GIL, so chunks run in parallel.
            outputs = list(self._pool.map(self._run_in_worker, feeds))
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def latent(self, n: int, seed: int) -> np.ndarray:
        """The ``z`` used by ``sample(..., n, seed)``: ``[n, latent_dim]`` float32."""
        return np.random.default_rng(seed).standard_normal(
            (n, self.latent_dim), dtype=np.float32
        )

    def sample(
        self, category: int | str, n: int = 16, seed: int = 0, *, raw: bool = False
    ) -> np.ndarray:
        """``n`` images of ``category``: uint8 ``[n, H, W, C]`` (float32 if ``raw``)."""
        index = self.category_index(category)
        n = _check_int("n", n, 1, MAX_SAMPLES)
        seed = _check_int("seed", seed, 0, 2**63 - 1)
        images = self.generate(self.latent(n, seed), np.full(n, index))
        return images if raw else to_uint8(images, self.value_range)

    def close(self) -> None:
        """Stop the worker threads (pending chunks still finish)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}", name)
    if not low <= int(value) <= high:
        raise InvalidParameterError(
            f"{name} must be in {low}..{high}, got {value}", name
        )
    return int(value)


def _latest(tasks: list[int]) -> int:
    if not tasks:
        raise UnknownTaskError("no exported task yet", "task")
    return tasks[-1]


def _read_manifest(path: Path) -> dict:
    name = f"{path.parent.name}/{path.name}"
    try:
        manifest = json.loads(path.read_text())
    except OSError as error:
        raise ExportIntegrityError(f"cannot read {name} ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise ExportIntegrityError(f"cannot read {name}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != SUPPORTED_FORMAT:
        raise ExportIntegrityError(f"{name} is not a keras_mergan generator export")
    return manifest


def _stat_key(path: Path) -> tuple:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return ()
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)
