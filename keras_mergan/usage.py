"""One error style for every command: `keras-mergan <command>: error: ...`."""

import argparse

__all__ = ["OneLineErrors"]


class OneLineErrors(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, exit code 2: the
    command, `error:`, the flag and what is wrong with it. `--help` shows the
    usage.

    Example:

    >>> parser = OneLineErrors(prog="keras-mergan sample")
    >>> _ = parser.add_argument("export_dir")
    """

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")
