"""Write a grid of samples to an image file, or list the exported tasks.

::

    keras-mergan sample EXPORT_DIR --category 7 [--task 3] [--n 64] [--seed 0] \\
        [--scale 2] [--columns 8] --out grid.png
    keras-mergan sample EXPORT_DIR --list

``EXPORT_DIR`` is an export directory or a run folder (its ``export/``).
``--task`` defaults to the latest exported task; ``--category`` is a class
name or index; ``--out`` is written in the format its suffix names (.png,
.jpg, .webp, ...). ``--npy FILE`` also saves the uint8 images
``[n, H, W, C]``. Exit status: 0 on success, 2 on a bad request (unknown task
or category, category not learned yet, bad n, an --out that cannot be
written), 1 on other errors (``--list``: a task that cannot be loaded,
listed with its error; the others are listed too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from keras_mergan.usage import OneLineErrors

from .errors import ServeError
from .images import image_format, make_grid, save_image
from .sampler import MAX_SAMPLES, ExportDirectory


def main(
    argv: list[str] | None = None, prog: str = "python -m keras_mergan.serve.cli"
) -> int:
    parser = OneLineErrors(
        prog=prog,
        usage=f"{prog} EXPORT_DIR (--category CATEGORY --out FILE | --list) [options]",
        description="Sample an exported generator to an image grid.",
    )
    parser.add_argument(
        "export_dir",
        metavar="EXPORT_DIR",
        help="a run's export directory (keras-mergan export), one task's export, "
        "or the run folder itself",
    )
    parser.add_argument(
        "--category",
        help="class name or index to draw (required unless --list)",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="image file to write, in the format its suffix names: .png, .jpg, "
        ".webp, ... (required unless --list)",
    )
    parser.add_argument(
        "--task", default=None, help="task number or 'latest' (default: latest)"
    )
    parser.add_argument(
        "--n", type=int, default=16, help=f"samples, 1..{MAX_SAMPLES} (default: 16)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the latent codes (default: 0)"
    )
    parser.add_argument(
        "--scale", type=int, default=1, help="pixel enlargement, 1..16 (default: 1)"
    )
    parser.add_argument(
        "--columns",
        type=int,
        default=None,
        help="images per row of the grid (default: a near-square grid)",
    )
    parser.add_argument("--npy", help="also save the uint8 images as .npy")
    parser.add_argument("--list", action="store_true", help="list tasks and categories")
    args = parser.parse_args(argv)

    def usage_error(message: str) -> int:
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2

    if not args.list:
        if args.category is None or args.out is None:
            return usage_error("--category and --out are required (or use --list)")
        if not 1 <= args.scale <= 16:
            return usage_error(f"--scale must be in 1..16, got {args.scale}")
        problem = _unwritable(Path(args.out))
        if problem:
            return usage_error(f"--out {args.out}: {problem}")
    try:
        exports = ExportDirectory(args.export_dir)
        if args.list:
            return _list(exports)
        sampler = exports.sampler(args.task)
        images = sampler.sample(args.category, args.n, args.seed)
        save_image(make_grid(images, args.columns, scale=args.scale), args.out)
        if args.npy:
            np.save(args.npy, images, allow_pickle=False)
    except ServeError as error:
        print(f"{prog}: error: {error.message}", file=sys.stderr)
        return 2 if error.status < 500 else 1
    except OSError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    name = sampler.category_name(sampler.category_index(args.category))
    print(f"wrote {args.out}: {args.n} samples of {name!r} from task {sampler.task}")
    return 0


def _unwritable(out: Path) -> str | None:
    """Why an image cannot be written at `out`, found before any sampling."""
    if out.is_dir():
        return "a folder, not a file"
    if not out.parent.is_dir():
        return f"the folder {out.parent} does not exist"
    try:
        image_format(out)
    except ValueError as error:
        return str(error)
    return None


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
