"""keras-mergan: continual learning of conditional GANs on Keras 3.

The public API, importable from the package root:

- `RunConfig`: every setting of a training run (`keras_mergan.run.config`);
- `train_run(config, run_dir)`: what `keras-mergan train` does;
- `prepare_run(config, run_dir)`: the model, task stream and callbacks, for
  users who call `model.fit` themselves;
- `METHODS`: the continual-learning methods by name;
- `load_dataset(source)`: the built-in digits, MNIST, `.npz`, SVHN or folders;
- `load_task_model(run_dir, task)`: the model a run saved after a task.

Importing the package loads no ML framework: the names above load their
modules on first use, so that serving (onnxruntime alone) and `--help` stay
light. Once Keras is imported, every model, layer and method class of the
package is registered with Keras, so that `keras.saving.load_model` reads a
run's `gan.keras` in a fresh process.

Example:

>>> import keras_mergan
>>> keras_mergan.RunConfig(method="jtr", iters_per_task=300).preset
'short'
"""

import importlib
import importlib.abc
import importlib.metadata
import importlib.util
import sys

# Installs the handler that shows the package's messages (keras_mergan.logs).
from keras_mergan import logs as _logs  # noqa: F401

try:
    __version__ = importlib.metadata.version("keras-mergan")
except importlib.metadata.PackageNotFoundError:  # run from a source tree
    __version__ = "0+unknown"

# Public name -> the module defining it.
_PUBLIC = {
    "RunConfig": "keras_mergan.run.config",
    "train_run": "keras_mergan.run.training",
    "prepare_run": "keras_mergan.run.training",
    "METHODS": "keras_mergan.methods",
    "load_dataset": "keras_mergan.data",
    "load_task_model": "keras_mergan.run_folder",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__():
    return sorted([*globals(), *_PUBLIC])


def _register_with_keras() -> None:
    from keras_mergan.methods import register_all

    register_all()


class _RegisterOnceKerasLoads(importlib.abc.MetaPathFinder):
    """Registers the package's classes once Keras is loaded.

    Importing them imports Keras, which this package must not do on its own;
    but a user who imports both expects `load_model` to know them, whichever
    was imported first. Registration waits until no module of the package is
    half-imported (one of them may be what imported Keras), then runs once.
    """

    def __init__(self):
        self.depth = 0

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras" and not fullname.startswith(f"{__name__}."):
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = None if finder is self or find is None else find(fullname, path)
            if spec is not None:
                break
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            self.depth += 1
            try:
                load(module)
            finally:
                self.depth -= 1
            if self.depth == 0 and "keras" in sys.modules and self in sys.meta_path:
                sys.meta_path.remove(self)
                _register_with_keras()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    _register_with_keras()
else:
    sys.meta_path.insert(0, _RegisterOnceKerasLoads())
