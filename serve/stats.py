"""Per-version inference statistics, in Triton's statistics extension's form.

``GET /v2/models[/{name}[/versions/{v}]]/stats`` answers
``{"model_stats": [...]}``: per version, successful inferences (samples),
executions (onnxruntime calls), and durations (count and nanoseconds) of
successful and failed requests, of their time queued for a batch, decoding
their inputs (``compute_input``), in the generator (``compute_infer``) and
encoding their output (``compute_output``); and per batch size (rows of
one onnxruntime call) the time in the generator. Decoding and encoding are
per request here, not per batch, so a batch's are reported as zero.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

_PHASES = ("compute_input", "compute_infer", "compute_output")


def _duration() -> dict[str, int]:
    return {"count": 0, "ns": 0}


class _VersionStats:
    def __init__(self) -> None:
        self.last_inference = 0
        self.inference_count = 0
        self.execution_count = 0
        self.inference = {
            key: _duration()
            for key in ("success", "fail", "queue", *_PHASES, "cache_hit", "cache_miss")
        }
        self.batches: dict[int, dict[str, dict[str, int]]] = defaultdict(
            lambda: {phase: _duration() for phase in _PHASES}
        )


class ModelStats:
    """Thread-safe counters of one model's versions (batches run on other threads).

    Example:

    >>> stats = ModelStats()
    >>> stats.request(2, rows=4, ok=True, seconds={"queue": 0.001})
    >>> stats.report("generator", [2])["model_stats"][0]["inference_count"]
    4
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[int, _VersionStats] = defaultdict(_VersionStats)

    def execution(self, version: int, rows: int, seconds: float) -> None:
        """One onnxruntime call of ``rows`` rows that took ``seconds``."""
        with self._lock:
            stats = self._versions[version]
            stats.execution_count += 1
            _add(stats.batches[rows]["compute_infer"], seconds)

    def request(
        self, version: int, *, rows: int, ok: bool, seconds: dict[str, float]
    ) -> None:
        """One inference request: ``seconds`` maps ``total``, ``queue`` and phases."""
        with self._lock:
            stats = self._versions[version]
            _add(stats.inference["success" if ok else "fail"], seconds.get("total", 0))
            if not ok:
                return
            stats.inference_count += rows
            stats.last_inference = int(time.time() * 1000)
            for key in ("queue", *_PHASES):
                if key in seconds:
                    _add(stats.inference[key], seconds[key])

    def report(self, name: str, versions: list[int]) -> dict:
        """The statistics response for ``versions`` of model ``name``."""
        entries = []
        with self._lock:
            for version in versions:
                stats = self._versions.get(version) or _VersionStats()
                entries.append(
                    {
                        "name": name,
                        "version": str(version),
                        "last_inference": stats.last_inference,
                        "inference_count": stats.inference_count,
                        "execution_count": stats.execution_count,
                        "inference_stats": {
                            key: dict(value) for key, value in stats.inference.items()
                        },
                        "batch_stats": [
                            {
                                "batch_size": size,
                                **{k: dict(v) for k, v in phases.items()},
                            }
                            for size, phases in sorted(stats.batches.items())
                        ],
                    }
                )
        return {"model_stats": entries}


def _add(duration: dict[str, int], seconds: float) -> None:
    duration["count"] += 1
    duration["ns"] += int(seconds * 1e9)
