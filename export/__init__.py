"""Export each task's conditional generator of a training run to SavedModel and ONNX.

Usage::

    python -m keras_mergan.export RUN_DIR [--out EXPORT_DIR] [--tasks 1 3 5-7]

or from Python (the training CLI calls :func:`export_task` at each task end)::

    from . import export_run, export_task
    export_run("runs/digits_ra")          # -> [.../export/task_01, ...]
    export_task("runs/digits_ra", 3)      # -> .../export/task_03

Importing this package does not import Keras or TensorFlow: the export runs
in a TensorFlow subprocess.
"""

from .core import export_run, export_task
from .errors import ExportError
from .manifest import MANIFEST
from .publish import recover

__all__ = [
    "MANIFEST",
    "ExportError",
    "export_run",
    "export_task",
    "recover",
]
