from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image

from keras_mergan.data import ImageDataset, load_dataset
from keras_mergan.evaluator import Evaluator, build_classifier
from keras_mergan.methods import ConditionalWGANGP
from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
from keras_mergan.resume import fit_tasks
from keras_mergan.run import RunRecorder
from keras_mergan.tasks import TaskSequence, TaskStream

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
# The option wiring is the same on every backend; under JAX, compiling each
# fresh step takes minutes of a CPU, and the networks' training on JAX is
# tested in test_resnet.py and test_conditional_wgan_gp.py.
wiring_test = pytest.mark.skipif(
    keras.config.backend() == "jax",
    reason="the option wiring is the same on every backend and is run under "
    "TensorFlow and torch; JAX compiles each fresh step for minutes on a CPU",
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


@pytest.fixture
def make_tiny_gan():
    return tiny_gan


@pytest.fixture(scope="session")
def digits() -> ImageDataset:
    """The built-in digits, loaded once per test session; tests only read it."""
    return load_dataset("digits")


@pytest.fixture(scope="session")
def untrained_evaluator(digits) -> Evaluator:
    """The evaluator architecture, untrained: deterministic features and labels."""
    classifier = build_classifier(digits.image_shape, digits.num_classes, seed=0)
    return Evaluator(classifier, digits.class_names)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, digits, untrained_evaluator) -> Path:
    """A width-8 DCGAN trained as `keras-mergan train` does over `TINY_RUN_TASKS`.

    Scored by the untrained evaluator at every iteration: the scores are
    meaningless but fully determined. Shared by the evaluation and plotting
    tests, which copy it before writing into it.
    """
    run_dir = tmp_path_factory.mktemp("tiny_run")
    gan = tiny_gan(num_classes=digits.num_classes, n_critic=1)
    stream = TaskStream(
        digits.x_train,
        digits.y_train,
        TINY_RUN_TASKS,
        TINY_RUN_STEPS,
        batch_size=4,
        n_critic=1,
    )
    info = {
        "method": "sft",
        "dataset": "digits",
        "class_names": list(digits.class_names),
        "tasks": TINY_RUN_TASKS,
        "latent_dim": gan.latent_dim,
        "image_shape": list(digits.image_shape),
        "iters_per_task": TINY_RUN_STEPS,
    }
    recorder = RunRecorder(
        run_dir,
        stream,
        info,
        untrained_evaluator,
        TINY_RUN_SAMPLES,
        grid_columns=2,
        eval_every=1,
    )
    fit_tasks(gan, stream, run_dir, [recorder], checkpoint_every=0, verbose=0)
    return run_dir


@pytest.fixture(scope="session")
def run_cache(request, tmp_path_factory) -> Path:
    """Where synthetic runs (`keras_mergan.export.synthetic.cached_run`) are kept.

    Shared by the export and serving tests, so a run trained for one is
    reused by the other; kept across sessions in pytest's cache when it is on.
    """
    cache = getattr(request.config, "cache", None)
    if cache is None:  # -p no:cacheprovider
        return tmp_path_factory.mktemp("runs")
    return Path(cache.mkdir("keras_mergan_synthetic_runs"))


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
