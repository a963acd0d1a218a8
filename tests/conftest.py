from pathlib import Path

import pytest
from helpers import TINY_RUN_SAMPLES, TINY_RUN_STEPS, TINY_RUN_TASKS, tiny_gan

from keras_mergan.data import ImageDataset, load_dataset
from keras_mergan.data.tasks import TaskStream
from keras_mergan.evaluation.evaluator import Evaluator, build_classifier
from keras_mergan.run.recorder import RunRecorder
from keras_mergan.run.resume import fit_tasks
from keras_mergan.run_folder import RunInfo


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
    info = RunInfo(
        method="sft",
        dataset="digits",
        class_names=list(digits.class_names),
        tasks=TINY_RUN_TASKS,
        latent_dim=gan.latent_dim,
        image_shape=list(digits.image_shape),
        config={"iters_per_task": TINY_RUN_STEPS},
    )
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
    """Where synthetic runs (`synthetic_run.cached_run`) are kept.

    Shared by the export and serving tests, so a run trained for one is
    reused by the other; kept across sessions in pytest's cache when it is on.
    """
    cache = getattr(request.config, "cache", None)
    if cache is None:  # -p no:cacheprovider
        return tmp_path_factory.mktemp("runs")
    return Path(cache.mkdir("keras_mergan_synthetic_runs"))
