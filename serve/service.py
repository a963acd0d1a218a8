"""What the HTTP endpoints do, without HTTP: checking, batching, sampling, encoding.

Every method raises :class:`~keras_mergan.serve.errors.ServeError` on bad input; the
routes in :mod:`.app` and :mod:`.oip` turn that into responses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from io import BytesIO
from urllib.parse import parse_qsl

import numpy as np
from starlette.concurrency import run_in_threadpool

from .batching import MAX_BATCH, MAX_WAIT, ByteBudget, DynamicBatcher, Lease
from .errors import InvalidParameterError, ServeError
from .images import make_grid, png_bytes, to_uint8
from .sampler import ExportDirectory, Sampler

MAX_GRID = 256
MAX_SAMPLES = 1024
MEMORY_BUDGET = 256 * 2**20
# [0-9], not \d: \d also matches other scripts' digits (full-width "１"),
# which int() would then accept.
_INTEGER = re.compile(r"^[+-]?[0-9]{1,19}$")
# Bytes the server holds per value while writing JSON: the text plus, for
# the values of the chunk being encoded, Python's list slot (8) and, for
# floats, the float object (24). Small ints are shared objects.
_JSON_TEXT = {"uint8": 4, "float32": 26}
_JSON_HELD = {"uint8": 4 + 8, "float32": 26 + 8 + 24}
# Flat float32 JSON is written in the shortest form that reads back to the
# same float32 (numpy's str of a float32), _SHORTEST_PIECE values at a time
# through a '<U32' array (128 bytes a value) and a list of its strings
# (about 60 + 8): the text of the chunk plus one piece's worth.
_SHORTEST_PIECE = 2048
_SHORTEST_HELD = 26 + 8
# Responses below this are encoded in one piece; larger ones are streamed
# in chunks of about this size, so their encoding never holds more.
_CHUNK_BYTES = 256 * 2**10
# Encoding smaller payloads on the event loop costs less than a thread hop.
_INLINE_BYTES = 64 * 2**10


@dataclass
class Payload:
    """A response body (bytes, or chunks to stream) and the memory it holds.

    ``lease`` must be released once the body is sent (or dropped).

    Example:

    >>> Payload(b"{}", "application/json").body
    b'{}'
    """

    body: bytes | Iterator[bytes]
    media_type: str
    lease: Lease | None = None
    headers: dict[str, str] | None = None


def parse_query(text: str) -> dict[str, str]:
    """A query string as a dict; repeated, malformed or too many fields are refused.

    Example:

    >>> parse_query("category=3&n=16")
    {'category': '3', 'n': '16'}
    """
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=32
        )
    except ValueError:
        # parse_qsl's message quotes the whole field: never echo input back.
        raise InvalidParameterError(
            "malformed query string: expected name=value pairs joined by &, at most 32"
        ) from None
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query:
            raise InvalidParameterError(f"parameter {key[:64]!r} given twice", key[:64])
        query[key] = value
    return query


def _integer(query: dict, name: str, default: int, low: int, high: int) -> int:
    value = query.get(name)
    if value is None:
        return default
    if not _INTEGER.match(value.strip()):
        raise InvalidParameterError(
            f"{name} must be an integer, got {value[:64]!r}", name
        )
    number = int(value)
    if not low <= number <= high:
        raise InvalidParameterError(
            f"{name} must be in {low}..{high}, got {number}", name
        )
    return number


class GeneratorService:
    """Sampling exported generators for concurrent requests with bounded memory.

    Requests for one task share a :class:`~keras_mergan.serve.batching.DynamicBatcher`
    (one onnxruntime call for many requests) and all requests share a
    :class:`~keras_mergan.serve.batching.ByteBudget`: each takes the most memory its
    response can need before it runs.

    Args:
        exports: the export directory to serve.
        max_grid: most samples in one PNG grid.
        max_samples: most samples in one ``/api/samples`` or inference request.
        max_batch: most rows in one merged onnxruntime call.
        max_wait: seconds a batch may wait for more requests.
        memory_budget: bytes all requests in flight may hold together.
        executor: where onnxruntime runs (default: the event loop's).
        observe: called as ``observe(task, rows, seconds)`` after every
            onnxruntime call (metrics and statistics).

    Example:

    >>> # service = GeneratorService(ExportDirectory("runs/x/export"))
    >>> # payload = await service.grid_png({"category": "3", "n": "16"})
    """

    def __init__(
        self,
        exports: ExportDirectory,
        *,
        max_grid: int = MAX_GRID,
        max_samples: int = MAX_SAMPLES,
        max_batch: int = MAX_BATCH,
        max_wait: float = MAX_WAIT,
        memory_budget: int = MEMORY_BUDGET,
        executor: Executor | None = None,
        observe: Callable[[int, int, float], None] | None = None,
    ):
        self.exports = exports
        self.max_grid = max_grid
        self.max_samples = max_samples
        self.budget = ByteBudget(memory_budget)
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._batching = {"max_batch": max_batch, "max_wait": max_wait}
        self._executor = executor
        self._observe = observe
        # Set when the server is asked to stop: readiness turns false at once.
        self.draining = False
        self._batchers: dict[int, tuple[Sampler, DynamicBatcher]] = {}

    # --- catalogue ----------------------------------------------------------

    def health(self) -> dict:
        """``ok``; ``degraded`` with the tasks that cannot be loaded; else not ok.

        Not ok (``unavailable``, with an ``error``) when nothing can be
        served: the export directory is gone or holds no task, or every task
        is broken; ``draining`` once the server is stopping.
        """
        status = self.exports.status()
        tasks = sorted(status)
        broken = [task for task in tasks if status[task] is not None]
        health: dict = {
            "status": "degraded" if broken else "ok",
            "tasks": tasks,
            "latest": tasks[-1] if tasks else None,
            "broken": broken,
        }
        if not self.exports.root.is_dir():
            health["status"] = "unavailable"
            health["error"] = "the export directory is missing"
        elif len(broken) == len(tasks):
            health["status"] = "unavailable"
            health["error"] = "no task can be loaded" if tasks else "no exported task"
        if self.draining:
            health["status"] = "draining"
            health["error"] = "the server is shutting down"
        return health

    def tasks(self) -> dict:
        """Every task with its categories; a task that cannot load, with why."""
        entries = []
        for task in self.exports.tasks():
            try:
                manifest = self.exports.manifest(task)
            except ServeError as error:
                entries.append({"task": task, "error": error.message})
                continue
            entries.append(
                {
                    "task": task,
                    "categories": manifest["categories"],
                    "new_categories": [
                        c
                        for c in manifest["categories"]
                        if c["index"] in manifest.get("task_classes", [])
                    ],
                    "latent_dim": manifest["latent_dim"],
                    "image_shape": manifest["image_shape"],
                    "value_range": manifest["value_range"],
                }
            )
        latest = entries[-1]["task"] if entries else None
        limits = {"max_grid": self.max_grid, "max_samples": self.max_samples}
        return {"tasks": entries, "latest": latest, "limits": limits}

    def task(self, value: str) -> dict:
        return self.exports.manifest(value)

    # --- generation ---------------------------------------------------------

    def batcher(self, sampler: Sampler) -> DynamicBatcher:
        """The batcher of ``sampler``'s task (a new one when the export changed)."""
        cached = self._batchers.get(sampler.task)
        if cached is None or cached[0] is not sampler:
            observe = None
            if self._observe is not None:
                report, task = self._observe, sampler.task

                def observe(rows: int, seconds: float) -> None:
                    report(task, rows, seconds)

            cached = (
                sampler,
                DynamicBatcher(
                    sampler.generate,
                    executor=self._executor,
                    observe=observe,
                    **self._batching,
                ),
            )
            self._batchers[sampler.task] = cached
        return cached[1]

    async def generate(
        self,
        sampler: Sampler,
        z: np.ndarray,
        labels: np.ndarray,
        timings: dict | None = None,
    ) -> np.ndarray:
        """Raw generator output for ``z`` and ``labels``, batched with others."""
        return await self.batcher(sampler).generate(z, labels, timings)

    @property
    def queued(self) -> int:
        """Requests waiting for a batch or for memory, over every task."""
        waiting = sum(batcher.queued for _, batcher in self._batchers.values())
        return waiting + self.budget.waiting

    async def _sample(
        self, query: dict, allowed: set[str], max_n: int, cost
    ) -> tuple[Sampler, np.ndarray, dict, Lease]:
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise InvalidParameterError(
                f"unknown parameter {unknown[0][:64]!r}; "
                f"allowed: {', '.join(sorted(allowed))}",
                unknown[0][:64],
            )
        if "category" not in query or not query["category"].strip():
            raise InvalidParameterError(
                "category is required (a name or an index)", "category"
            )
        sampler = self.exports.sampler(query.get("task"))
        index = sampler.category_index(query["category"])
        n = _integer(query, "n", 16, 1, max_n)
        seed = _integer(query, "seed", 0, 0, 2**63 - 1)
        lease = await self.budget.acquire(cost(n, math.prod(sampler.image_shape)))
        try:
            z = sampler.latent(n, seed)
            images = await self.generate(sampler, z, np.full(n, index))
        except BaseException:
            lease.release()
            raise
        return sampler, images, {"task": sampler.task, "n": n, "seed": seed}, lease

    async def grid_png(self, query: dict) -> Payload:
        """A PNG grid of ``n`` samples of one category."""
        allowed = {"task", "category", "n", "seed", "scale", "columns"}
        scale = _integer(query, "scale", 2, 1, 8)
        columns = _integer(query, "columns", 0, 0, MAX_GRID)

        def cost(n: int, pixels: int) -> int:
            # output, uint8 copy, then the grid and its PNG (padding included).
            return n * pixels * (4 + 1) + 2 * 2 * n * pixels * scale * scale

        sampler, images, _, lease = await self._sample(
            query, allowed, self.max_grid, cost
        )
        name = sampler.category_name(sampler.category_index(query["category"]))
        try:
            body = await run_in_threadpool(
                _grid_png, images, sampler.value_range, columns, scale, name
            )
        except BaseException:
            lease.release()
            raise
        return Payload(body, "image/png", lease)

    async def samples(self, query: dict) -> Payload:
        """Samples as ``.npy`` or JSON, uint8 or the generator's float32."""
        allowed = {"task", "category", "n", "seed", "format", "dtype"}
        form = query.get("format", "npy")
        if form not in ("npy", "json"):
            raise InvalidParameterError("format must be npy or json", "format")
        dtype = query.get("dtype", "uint8")
        if dtype not in ("uint8", "float32"):
            raise InvalidParameterError("dtype must be uint8 or float32", "dtype")
        size = 1 if dtype == "uint8" else 4

        def cost(n: int, pixels: int) -> int:
            values = n * pixels
            if form == "npy":  # output, the array to send, its .npy bytes
                return values * (4 + 2 * size)
            return values * (4 + 1) + json_held(values, pixels, dtype)

        sampler, images, meta, lease = await self._sample(
            query, allowed, self.max_samples, cost
        )
        try:
            args = (images, sampler.value_range, meta, form, dtype)
            if images.size * size > _INLINE_BYTES:
                body = await run_in_threadpool(_encode_samples, *args)
            else:
                body = _encode_samples(*args)
        except BaseException:
            lease.release()
            raise
        kind = "application/json" if form == "json" else "application/octet-stream"
        return Payload(body, kind, lease)


def _encode_samples(
    images: np.ndarray, value_range, meta: dict, form: str, dtype: str
) -> bytes | Iterator[bytes]:
    if dtype == "uint8":
        images = to_uint8(images, value_range)
    if form == "npy":
        return _npy_bytes(images)
    head = dict(meta, shape=list(images.shape), dtype=str(images.dtype))
    return json_body(json.dumps(head)[:-1] + ', "data": [', images, "]}", nested=True)


def _grid_png(images, value_range, columns: int, scale: int, name: str) -> bytes:
    grid = make_grid(
        to_uint8(images, value_range), columns or None, scale=scale, row_labels=name
    )
    return png_bytes(grid)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def json_held(values: int, pixels: int, dtype: str, *, flat: bool = False) -> int:
    """Most bytes the JSON encoding of ``values`` numbers holds at once.

    ``flat``: as :func:`json_body` writes it with ``nested=False``.
    """
    shortest = flat and dtype == "float32"
    held = _SHORTEST_HELD if shortest else _JSON_HELD[dtype]
    pieces = _SHORTEST_PIECE * (128 + 68) if shortest else 0
    text = values * _JSON_TEXT[dtype]
    if text <= _CHUNK_BYTES:
        return values * held + pieces
    per_chunk = max(pixels, _CHUNK_BYTES // _JSON_TEXT[dtype])
    return per_chunk * held + pieces


def _shortest_floats(rows: np.ndarray) -> str:
    """float32 values joined by commas, each in its shortest round-trip form.

    Python's float of a float32 prints up to 17 digits ("0.10000000149011612");
    numpy's str of the float32 prints the fewest that read back to the same
    float32 ("0.1"): about half the bytes.
    """
    flat = rows.reshape(-1).astype(np.float32, copy=False)
    if not np.isfinite(flat).all():  # "nan" and "inf" are not JSON
        raise ValueError("the generator's output is not finite")
    return ",".join(
        ",".join(flat[start : start + _SHORTEST_PIECE].astype(str).tolist())
        for start in range(0, len(flat), _SHORTEST_PIECE)
    )


def json_body(
    prefix: str, array: np.ndarray, suffix: str, *, nested: bool
) -> bytes | Iterator[bytes]:
    """``prefix`` + the rows of ``array`` as JSON + ``suffix``, whole or streamed.

    ``nested`` writes each row as nested lists, else flattened (row-major);
    rows are joined by commas either way. Small bodies come back as bytes;
    large ones as an iterator of chunks of about ``_CHUNK_BYTES``.
    """
    dtype = "uint8" if array.dtype == np.uint8 else "float32"
    per_row = math.prod(array.shape[1:]) or 1
    rows_per_chunk = max(1, _CHUNK_BYTES // (per_row * _JSON_TEXT[dtype]))

    def rows_text(rows: np.ndarray) -> str:
        if dtype == "float32" and not nested:
            return _shortest_floats(rows)
        values = rows.tolist() if nested else rows.reshape(-1).tolist()
        return json.dumps(values, separators=(",", ":"))[1:-1]

    if len(array) <= rows_per_chunk:
        return (prefix + rows_text(array) + suffix).encode()

    def chunks() -> Iterator[bytes]:
        yield prefix.encode()
        for start in range(0, len(array), rows_per_chunk):
            text = rows_text(array[start : start + rows_per_chunk])
            yield (text if start == 0 else "," + text).encode()
        yield suffix.encode()

    return chunks()
