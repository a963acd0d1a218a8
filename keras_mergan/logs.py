"""The project's messages: records of the `keras_mergan` logger.

A run's header, its task lines (and progress lines off a terminal), replay
health, the evaluator's line and `evaluate`'s progress are `logging` records
of `keras_mergan` and its child loggers, at INFO (problems at WARNING), so
that the program's logging settings govern them; `verbose=0` sends none.
For instance, to keep only the problems:

```python
import logging

logging.getLogger("keras_mergan").setLevel(logging.WARNING)
```

A program that configures no logging still sees them, as plain lines: INFO
on stdout, the rest on stderr as `Warning: ...`. Like Python's own
last-resort handler, the `PlainLines` handler this package installs writes a
record only when no other handler receives it: once the program has a
handler of its own (`logging.basicConfig`, say), the messages go there
alone, formatted its way. `keras-mergan` writes them plainly whatever the
logging settings (`console`).

Python warnings (`ReplayHealthWarning`, a callback that stops training
early) are attributed to the line of the program that called `fit` or
`train_run` (`warn`), not to the Keras file that ran the callback.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
import warnings
from collections.abc import Iterator

__all__ = ["PlainLines", "console", "logger", "warn"]

logger = logging.getLogger("keras_mergan")


class PlainLines(logging.Handler):
    """Writes records as plain lines, flushed at once: INFO and below to
    stdout, the rest to stderr after their level (`Warning: ...`).

    The streams are looked up at each record, so that a redirected
    `sys.stdout` receives the lines written after the redirection.

    Args:
        fallback: write only the records that no other handler receives
            (Python's last-resort rule, at every level).

    Example:

    >>> import logging
    >>> handler = PlainLines()
    >>> record = logging.makeLogRecord({"msg": "replay %s", "args": ("collapsed",),
    ...                                 "levelno": logging.WARNING,
    ...                                 "levelname": "WARNING"})
    >>> handler.format(record)
    'Warning: replay collapsed'
    """

    def __init__(self, fallback: bool = False):
        super().__init__()
        self.fallback = fallback

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno < logging.WARNING:
            return text
        return f"{record.levelname.capitalize()}: {text}"

    def emit(self, record: logging.LogRecord) -> None:
        if self.fallback and self._received_elsewhere(record):
            return
        try:
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)

    def _received_elsewhere(self, record: logging.LogRecord) -> bool:
        current: logging.Logger | None = logging.getLogger(record.name)
        while current is not None:
            if any(handler is not self for handler in current.handlers):
                return True
            if not current.propagate:
                return False
            current = current.parent
        return False


# The messages of a program that configures no logging are shown; a level
# the program set before importing the package is kept.
if not any(isinstance(h, PlainLines) and h.fallback for h in logger.handlers):
    logger.addHandler(PlainLines(fallback=True))
if logger.level == logging.NOTSET:
    logger.setLevel(logging.INFO)


@contextlib.contextmanager
def console() -> Iterator[None]:
    """Within it, the messages are written as plain lines whatever else
    receives them: a command line program's output.

    Example:

    >>> with console():
    ...     logger.info("Task 1/2: learning 0")
    Task 1/2: learning 0
    """
    handler = PlainLines()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn`, attributed to the first caller outside Keras and
    this package: the line of the program that called `fit` or `train_run`,
    rather than the Keras file that ran the callback.

    Example:

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn("task 2: replay collapsed")
    >>> caught[0].filename.endswith("logs.py")
    False
    """
    frame = inspect.currentframe().f_back
    level = 2
    while frame.f_back is not None and _in_a_library(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def _library_folders() -> tuple[str, ...]:
    folders = [os.path.dirname(__file__)]
    keras = sys.modules.get("keras")
    if keras is not None and keras.__file__:
        folders.append(os.path.dirname(keras.__file__))
    return tuple(folder + os.sep for folder in folders)


def _in_a_library(filename: str) -> bool:
    return filename.startswith(_library_folders())
