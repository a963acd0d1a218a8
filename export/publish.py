"""Publishing an export directory in one step, and recovering from a crash in it.

A task is exported into a hidden staging directory beside its final place
(``.task_03.tmp-XXXX``), and only once complete swapped in with one rename,
so a reader or a crash never sees a half-written export under ``task_03``;
the previous export stays in place until the new one is complete.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from keras_mergan.run_folder import fsync_dir, fsync_tree, task_folder_name

_STAGING = re.compile(r"^\.(task_\d+)\.(tmp|old)-[0-9a-f]+$")


def staging_dir(out_dir: Path, task: int) -> Path:
    """A new hidden directory beside ``task``'s export, that `recover` cleans up."""
    path = out_dir / f".{task_folder_name(task)}.tmp-{uuid.uuid4().hex}"
    # mkdtemp would make it 0700; a published export should be readable by
    # the serving user like any other directory.
    path.mkdir(mode=0o755)
    return path


def publish(staging: Path, target: Path) -> Path:
    """Make the complete ``staging`` directory appear as ``target`` in one step.

    Files are fsynced first so the rename cannot reach the disk before the
    data. An existing ``target`` is swapped out atomically where the kernel
    can exchange two paths (Linux ``renameat2``); elsewhere it is moved
    aside first and :func:`recover` puts it back if the process dies
    between the two renames.
    """
    fsync_tree(staging)
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)
    else:
        aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
        os.rename(target, aside)
        os.rename(staging, target)
        shutil.rmtree(aside, ignore_errors=True)
    fsync_dir(target.parent)
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


@contextlib.contextmanager
def exclusive(out_dir: Path) -> Iterator[None]:
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
