"""``keras-mergan export RUN_DIR [--out DIR] [--tasks 1 3 5-7] [--triton REPO]``.

Exports every task (or the chosen 1-based tasks) of a training run to
SavedModel + ONNX with a manifest, and prints one line per task. With
``--triton`` it then writes a Triton model repository of every task in the
export directory (:mod:`keras_mergan.export.triton`).
Exit status: 0 on success, 1 if any task failed (the others are published),
2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from keras_mergan.run_folder import EXPORT_FOLDER
from keras_mergan.usage import OneLineErrors

from .core import export_run
from .errors import ExportError
from .manifest import MANIFEST
from .triton import MODEL_NAME, check_model_name, write_triton_repository


def parse_tasks(values: list[str]) -> list[int]:
    """``["1", "3,4", "6-8"]`` -> ``[1, 3, 4, 6, 7, 8]``."""
    tasks: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            first, sep, last = part.partition("-")
            try:
                low = int(first)
                high = int(last) if sep else low
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"tasks are 1-based integers or ranges like 2-5, got {part!r}"
                ) from None
            if low < 1 or high < low:
                raise argparse.ArgumentTypeError(f"bad task range {part!r}")
            tasks.extend(range(low, high + 1))
    return sorted(set(tasks))


def main(
    argv: list[str] | None = None, prog: str = "python -m keras_mergan.export"
) -> int:
    parser = OneLineErrors(
        prog=prog,
        description="Export each task's conditional generator to SavedModel and ONNX.",
    )
    parser.add_argument("run_dir", type=Path, help="training run directory (run.json)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="export directory (default RUN_DIR/export)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help="1-based tasks: 1 3 5-7 or 1,3 (default all)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the parity check before publishing",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="export again the tasks whose export already comes from their "
        "present gan.keras (by default those are kept byte for byte)",
    )
    parser.add_argument(
        "--python",
        default=None,
        help="interpreter with tensorflow and tf2onnx that runs the export "
        "(default: this one)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds the whole export may take (default: no limit)",
    )
    parser.add_argument(
        "--triton",
        type=Path,
        default=None,
        metavar="REPOSITORY",
        help="also write a Triton model repository: REPOSITORY/NAME/config.pbtxt "
        "and REPOSITORY/NAME/<task>/model.onnx",
    )
    parser.add_argument(
        "--triton-name",
        default=MODEL_NAME,
        help=f"model name in the Triton repository (default {MODEL_NAME})",
    )
    args = parser.parse_args(argv)
    try:
        tasks = parse_tasks(args.tasks) if args.tasks else None
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    try:
        check_model_name(args.triton_name)
    except ExportError as error:
        parser.error(f"--triton-name: {error}")
    start = time.perf_counter()
    try:
        paths = export_run(
            args.run_dir,
            args.out,
            tasks,
            verify=not args.no_verify,
            opset=args.opset,
            python=args.python,
            timeout=args.timeout,
            force=args.force,
        )
    except ExportError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    for path in paths:
        manifest = json.loads((path / MANIFEST).read_text())
        names = ",".join(c["name"] for c in manifest["categories"])
        check = manifest.get("verification") or {}
        diff = check.get("onnx_max_abs_diff")
        parity = f" onnx-vs-keras {diff:.1e}" if diff is not None else ""
        print(f"{path}  task {manifest['task']}  categories [{names}]{parity}")
    print(f"exported {len(paths)} task(s) in {time.perf_counter() - start:.1f}s")
    if args.triton is not None:
        export_dir = args.out if args.out is not None else args.run_dir / EXPORT_FOLDER
        try:
            model = write_triton_repository(export_dir, args.triton, args.triton_name)
        except (ExportError, OSError) as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 1
        versions = sorted(int(p.name) for p in model.iterdir() if p.is_dir())
        print(f"{model}  Triton model, versions {versions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
