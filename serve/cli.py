"""Write a PNG grid of samples, or list the exported tasks.

::

    keras-mergan sample EXPORT_DIR --category 7 [--task 3] [--n 64] [--seed 0] \\
        [--scale 2] [--columns 8] --out grid.png
    keras-mergan sample EXPORT_DIR --list

``--task`` defaults to the latest exported task; ``--category`` is a class
name or index. ``--npy FILE`` also saves the uint8 images ``[n, H, W, C]``.
Exit status: 0 on success, 2 on a bad request (unknown task or category,
category not learned yet, bad n), 1 on other errors (``--list``: a task
that cannot be loaded, listed with its error; the others are listed too).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .errors import ServeError
from .images import make_grid, png_bytes
from .sampler import MAX_SAMPLES, ExportDirectory


def main(
    argv: list[str] | None = None, prog: str = "python -m keras_mergan.serve.cli"
) -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Sample an exported generator to a PNG grid.",
    )
    parser.add_argument("export_dir")
    parser.add_argument(
        "--task", default=None, help="task number or 'latest' (default)"
    )
    parser.add_argument("--category", help="class name or index")
    parser.add_argument("--n", type=int, default=16, help=f"samples, 1..{MAX_SAMPLES}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=1, help="pixel enlargement, 1..16")
    parser.add_argument("--columns", type=int, default=None)
    parser.add_argument("--out", help="PNG file to write")
    parser.add_argument("--npy", help="also save the images as .npy")
    parser.add_argument("--list", action="store_true", help="list tasks and categories")
    args = parser.parse_args(argv)
    try:
        exports = ExportDirectory(args.export_dir)
        if args.list:
            return _list(exports)
        if args.category is None or args.out is None:
            parser.error("--category and --out are required (or use --list)")
        if not 1 <= args.scale <= 16:
            parser.error("--scale must be in 1..16")
        sampler = exports.sampler(args.task)
        images = sampler.sample(args.category, args.n, args.seed)
        with open(args.out, "wb") as handle:
            handle.write(png_bytes(make_grid(images, args.columns, scale=args.scale)))
        if args.npy:
            np.save(args.npy, images, allow_pickle=False)
    except ServeError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2 if error.status < 500 else 1
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    name = sampler.category_name(sampler.category_index(args.category))
    print(f"wrote {args.out}: {args.n} samples of {name!r} from task {sampler.task}")
    return 0


def _list(exports: ExportDirectory) -> int:
    """One JSON line per task; a task that cannot load is listed with why (exit 1)."""
    status = 0
    for task in exports.tasks():
        try:
            manifest = exports.manifest(task)
        except ServeError as error:
            print(json.dumps({"task": task, "error": error.message}))
            status = 1
            continue
        names = [c["name"] for c in manifest["categories"]]
        print(json.dumps({"task": task, "categories": names}))
    return status


if __name__ == "__main__":
    sys.exit(main())
