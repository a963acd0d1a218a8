"""Every fenced code block of README.md and docs/*.md runs.

Blocks are told apart by their language:

- ``python``: run in a fresh Python process; it must exit 0;
- ``bash``: run with bash; it must exit 0;
- ``console``: the lines after a ``$ `` prompt run with bash, the rest is
  their output;
- ``text``: output or a listing, not run.

A block in any other language, or in none, fails `test_blocks_name_a_language`.

Each document runs its blocks in order, in one fresh folder, so that a block
can use what an earlier one wrote (the README trains ``runs/demo``, then
exports and serves it). The pages of ``docs/`` start from a copy of the
README's ``runs/`` folder. A block that starts ``keras-mergan serve`` in the
background is followed by a wait until its port answers, and every process a
document started is stopped when the document ends.

Commands that take minutes run shrunk, through the substitution table
`SHRINK` below, never skipped: each entry must match its document, so an
example that changes fails here instead of running unshrunk.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parent.parent
README = "README.md"
PAGES = sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *PAGES]

RUN = ("python", "bash", "console")
NOT_RUN = ("text",)

# The tiny training of the examples: two iterations per task, one critic
# update per iteration (the critic loop is unrolled in the compiled step, so
# this is what keeps each task's compilation short).
_TINY_CLI = "--iters-per-task 2 --n-critic 1 --eval-samples 20"
_TINY_PYTHON = "iters_per_task=2, n_critic=1, width=8, eval_samples=0"
_CI_SYNTAX = f"bash -n {shlex.quote(str(ROOT / '.ci' / 'run'))}"

# (document, text in a block, what runs instead, why). Every entry must match
# at least once in its document.
SHRINK = [
    (
        README,
        "python3 -m venv .venv && . .venv/bin/activate && "
        'pip install -e ".[tensorflow]" && ',
        "",
        "the suite runs in the environment .ci/run installed: no second install",
    ),
    (
        README,
        "--iters-per-task 200",
        _TINY_CLI,
        "the first command trains for minutes; the rest of the README and the "
        "pages use its run folder",
    ),
    (
        README,
        "bash .ci/run",
        _CI_SYNTAX,
        "the CI command runs this very test: check its syntax only",
    ),
    (
        README,
        "keras-mergan evaluate runs/demo ",
        "keras-mergan evaluate runs/demo --samples 50 ",
        "1000 generated images per class take most of a minute",
    ),
    (
        README,
        "iters_per_task=300",
        _TINY_PYTHON,
        "the Python examples train in seconds",
    ),
    (
        "docs/getting-started.md",
        "--iters-per-task 200",
        _TINY_CLI,
        "the rerun must match the README's shrunk run to find it finished",
    ),
    (
        "docs/getting-started.md",
        "--max-iters-per-task 1000",
        "--max-iters-per-task 60 --min-iters-per-task 50 --n-critic 1 "
        "--eval-samples 20",
        "an adaptive task trains for minutes; 60 iterations still make one check",
    ),
    (
        "docs/getting-started.md",
        "steps, n_critic = 300, 5",
        "steps, n_critic = 2, 1",
        "the lower-level loop trains in seconds",
    ),
    (
        "docs/evaluation.md",
        "keras-mergan evaluate runs/demo --plots",
        "keras-mergan evaluate runs/demo --plots --samples 50 --tsne-samples 100",
        "1000 generated images per class and the t-SNE take most of a minute",
    ),
    (
        "docs/testing.md",
        "bash .ci/run",
        _CI_SYNTAX,
        "the CI command runs this very test: check its syntax only",
    ),
]

# The examples serve on port 8000; the tests take a free port instead.
DOCUMENTED_PORT = "8000"
SERVER_START = re.compile(r"keras-mergan serve [^\n]*&")

BLOCK_TIMEOUT = 600


@dataclass
class Block:
    document: str
    line: int
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


def blocks(document: str) -> list[Block]:
    """The fenced code blocks of `document`, with the line of their fence."""
    found, current = [], None
    lines = (ROOT / document).read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        fence = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", line)
        if current is None:
            if fence:
                current = (fence.group(1), number, fence.group(2), [])
        elif line.strip() == current[0]:
            found.append(Block(document, current[1], current[2], "\n".join(current[3])))
            current = None
        else:
            current[3].append(line)
    assert current is None, f"{document}:{current[1]}: unclosed code block"
    return found


def shrunk(block: Block, used: set[int], port: int) -> str:
    """The block's text with the `SHRINK` entries of its document applied."""
    text = block.text
    for index, (document, old, new, _why) in enumerate(SHRINK):
        if document == block.document and old in text:
            used.add(index)
            text = text.replace(old, new)
    text = text.replace(f"--port {DOCUMENTED_PORT}", f"--port {port}")
    return text.replace(f"127.0.0.1:{DOCUMENTED_PORT}", f"127.0.0.1:{port}")


def command(block: Block, text: str) -> list[str]:
    if block.language == "python":
        return [sys.executable, "-c", text]
    if block.language == "console":
        text = "\n".join(
            line[2:] for line in text.splitlines() if line.startswith("$ ")
        )
    return ["bash", "-euo", "pipefail", "-c", text]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def environment() -> dict:
    """This interpreter's environment, its `keras-mergan` and `python` first."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_document(document: str, folder: Path, logs: Path) -> None:
    """Runs `document`'s blocks in order in `folder`; fails at the first error."""
    port, used, groups = free_port(), set(), []
    env = environment()
    try:
        for number, block in enumerate(blocks(document)):
            if block.language not in RUN:
                continue
            text = shrunk(block, used, port)
            log = logs / f"{Path(document).stem}-{number}.log"
            with open(log, "w") as output:
                process = subprocess.Popen(
                    command(block, text),
                    cwd=folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its background jobs stay in its group
                )
                groups.append(process.pid)
                try:
                    status = process.wait(timeout=BLOCK_TIMEOUT)
                except subprocess.TimeoutExpired:
                    status = f"no exit within {BLOCK_TIMEOUT} s"
            if status == 0 and SERVER_START.search(text) and not wait_for_port(port):
                status = f"no server answered on port {port}"
            if status != 0:
                pytest.fail(
                    f"{block.where}: {block.language} block failed ({status}):\n"
                    f"{text}\n--- output ---\n{log.read_text()[-4000:]}",
                    pytrace=False,
                )
    finally:
        for group in groups:
            try:
                os.killpg(group, signal.SIGTERM)
            except ProcessLookupError:
                pass
    unused = [
        f"{old!r} ({why})"
        for index, (doc, old, _new, why) in enumerate(SHRINK)
        if doc == document and index not in used
    ]
    assert not unused, f"{document}: substitutions that no longer match: {unused}"


def test_blocks_name_a_language():
    unnamed = [
        f"{block.where}: {block.language or '(none)'}"
        for document in DOCUMENTS
        for block in blocks(document)
        if block.language not in RUN + NOT_RUN
    ]
    assert not unnamed, (
        "name every code block's language: python or bash to run it, text for "
        f"output: {unnamed}"
    )


@pytest.fixture(scope="module")
def readme_folder(tmp_path_factory) -> Path:
    """The folder the README's blocks ran in (its run is `runs/demo`)."""
    folder = tmp_path_factory.mktemp("readme")
    run_document(README, folder, tmp_path_factory.mktemp("logs"))
    return folder


def test_readme(readme_folder):
    assert (readme_folder / "runs" / "demo" / "export").is_dir()


@pytest.mark.parametrize("page", PAGES)
def test_page(page, readme_folder, tmp_path):
    folder = tmp_path / "work"
    shutil.copytree(readme_folder / "runs", folder / "runs", symlinks=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    run_document(page, folder, logs)
