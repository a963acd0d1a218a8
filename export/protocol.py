"""The parent side of the export worker: start it, stream its results, time it out.

The worker (:mod:`keras_mergan.export._worker`) runs TensorFlow whatever
backend the caller uses; it prints one ``PROTOCOL_PREFIX`` line of JSON
per task on stdout, as each task finishes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import ExportError

PROTOCOL_PREFIX = "EXPORT-RESULT "


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


def run_worker(
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
                if line.startswith(PROTOCOL_PREFIX):
                    yield json.loads(line[len(PROTOCOL_PREFIX) :])
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
