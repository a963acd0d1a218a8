"""Helpers shared by the tests: tiny models, tiny runs, synthetic files.

Fixtures live in `conftest.py`; everything a test imports is here.
"""

import importlib.util
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image

from keras_mergan.data.tasks import TaskSequence, TaskStream
from keras_mergan.methods import ConditionalWGANGP
from keras_mergan.models import build_dcgan_critic, build_dcgan_generator

# The tiny run: digits 0 then 1, this many iterations per task, scored on
# this many generated images per class.
TINY_RUN_TASKS = [[0], [1]]
TINY_RUN_STEPS = 2
TINY_RUN_SAMPLES = 8

# `keras-mergan train` arguments of a run that trains for seconds.
TINY_CLI_RUN = [
    "train",
    "--iters-per-task=1",
    "--batch-size=4",
    "--n-critic=1",
    "--latent-dim=16",
    "--eval-samples=0",
    "--checkpoint-every=0",
    "--verbose=0",
]
# The same run from Python: `RunConfig` fields of a run that trains for seconds.
TINY_RUN_CONFIG = dict(
    method="jtr",
    tasks="0-1",
    iters_per_task=1,
    batch_size=4,
    n_critic=1,
    latent_dim=16,
    width=4,
    eval_samples=0,
    checkpoint_every=0,
)
# The option wiring is the same on every backend; under JAX, compiling each
# fresh step takes minutes of a CPU, and the networks' training on JAX is
# tested in test_resnet.py and test_conditional_wgan_gp.py.
wiring_test = pytest.mark.skipif(
    keras.config.backend() == "jax",
    reason="the option wiring is the same on every backend and is run under "
    "TensorFlow and torch; JAX compiles each fresh step for minutes on a CPU",
)


def fit_run(run, *callbacks):
    """The README's `model.fit` of a `prepare_run` result; `callbacks` run
    after the run's own."""
    run.model.fit(
        run.stream,
        epochs=run.stream.num_tasks,
        steps_per_epoch=run.stream.steps_per_task,
        shuffle=False,
        verbose=0,
        callbacks=[*run.fit_callbacks(), *callbacks],
    )


def tiny_gan(model_class=ConditionalWGANGP, num_classes=3, channels=1, **kwargs):
    """A DCGAN-32 of width 8 and 16-dim z: the real architecture, small and fast.

    Two critic updates per step keep the per-critic-batch logic under test
    while tracing and compiling (which unroll the critic loop) stay short.
    """
    kwargs.setdefault("latent_dim", 16)
    kwargs.setdefault("n_critic", 2)
    kwargs.setdefault("seed", 0)
    gan = model_class(
        build_dcgan_generator(num_classes, channels, kwargs["latent_dim"], width=8),
        build_dcgan_critic(num_classes, channels, width=8),
        **kwargs,
    )
    gan.compile()
    return gan


def random_images(n, channels=1, seed=0):
    return (
        np.random.default_rng(seed)
        .uniform(-1, 1, (n, 32, 32, channels))
        .astype("float32")
    )


def numpy_copies(variables):
    """Each variable's value as a NumPy array that later updates leave alone."""
    return [ops.convert_to_numpy(v).copy() for v in variables]


def fit_random_tasks(gan, tasks, steps, batch_size=4, **kwargs):
    """`fit` over `tasks` (one epoch each) on 60 random images, labels 0..k-1."""
    labels = np.arange(60) % gan.num_classes
    stream = TaskStream(
        random_images(60), labels, tasks, steps, batch_size, gan.n_critic
    )
    return gan.fit(
        stream,
        epochs=len(tasks),
        steps_per_epoch=steps,
        callbacks=[TaskSequence(stream), *kwargs.pop("callbacks", [])],
        verbose=0,
        **kwargs,
    )


def save_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_image_folder(root: Path, rgb: bool) -> Path:
    """A category-folder dataset: 5 bedroom and 3 kitchen 40x60 PNGs."""
    rng = np.random.default_rng(1)
    for name, count in (("bedroom", 5), ("kitchen", 3)):
        for i in range(count):
            shape = (40, 60, 3) if rgb else (40, 60)
            img = rng.integers(0, 256, shape, dtype=np.uint8)
            save_image(root / name / f"img{i}.png", img)
    return root


def write_svhn_files(folder, n_train=6, n_test=4):
    """SVHN's train/test `.mat` files in the official layout (label 10 = 0)."""
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # 10 = digit 0
        savemat(folder / name, {"X": x, "y": y})
    return folder / "train_32x32.mat"


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str):
    """The script `benchmarks/<name>.py` as a module (benchmarks are no package).

    A benchmark imports another's helpers by module name, as a script run
    from `benchmarks/` can: the folder goes on the import path.
    """
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
