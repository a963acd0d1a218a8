"""Runs one benchmark case in a subprocess and reads back its result.

A benchmark measures each case (backend, precision, device count) in a fresh
process, so that `KERAS_BACKEND` and the framework's thread pools and caches
start clean; the worker prints its result as one `RESULT <json>` line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RESULT_PREFIX = "RESULT "


def print_result(result: dict) -> None:
    """The worker's side: its result, as the line `run_worker` reads."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(command: list[str], env: dict, case: str, cwd: Path) -> dict:
    """Runs `command` and returns the result it printed; exits naming `case`
    (after the end of the worker's stderr) when it failed or printed none."""
    print(f"... {case}", file=sys.stderr, flush=True)
    process = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    lines = [x for x in process.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if process.returncode or not lines:
        sys.stderr.write(process.stderr[-4000:])
        raise SystemExit(f"{case} failed")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])
