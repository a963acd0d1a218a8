import json

import keras
import numpy as np
import pytest
from helpers import numpy_copies, random_images, tiny_gan

from keras_mergan.cli import main
from keras_mergan.data import load_dataset
from keras_mergan.data.tasks import TaskSequence, TaskStream
from keras_mergan.evaluation.classifier_tasks import Protocol, run_method
from keras_mergan.methods import DeepGenerativeReplay
from keras_mergan.models.solver import build_solver

OLD, NEW = [0, 1], [2, 3]


def tiny_scholar(**kwargs):
    kwargs.setdefault("solver_width", 8)
    return tiny_gan(DeepGenerativeReplay, num_classes=10, **kwargs)


@pytest.mark.parametrize(
    ("task", "mixing_ratio", "real_rows"),
    [(0, "balanced", 12), (2, "balanced", 4), (2, None, 4), (3, 0.75, 9)],
)
def test_each_critic_batch_mixes_real_rows_and_replays_as_r_says(
    task, mixing_ratio, real_rows
):
    scholar = tiny_scholar(n_critic=2, mixing_ratio=mixing_ratio)
    scholar.begin_task(task, [task], list(range(task + 1)))
    images, labels = random_images(24), np.arange(24) % 10
    mixed, mixed_labels = (
        keras.ops.convert_to_numpy(t) for t in scholar.mix_with_replay(images, labels)
    )
    for batch in (slice(0, 12), slice(12, 24)):
        kept = np.all(mixed[batch] == images[batch], axis=(1, 2, 3))
        assert kept.tolist() == [True] * real_rows + [False] * (12 - real_rows)
        assert (mixed_labels[batch][:real_rows] == labels[batch][:real_rows]).all()
    # Replays are labelled by the previous solver.
    replayed = ~np.all(mixed == images, axis=(1, 2, 3))
    if replayed.any():
        previous = keras.ops.convert_to_numpy(scholar.replay_solver(mixed[replayed]))
        assert (mixed_labels[replayed] == previous.argmax(-1)).all()


def test_begin_task_snapshots_the_scholar_and_freezes_the_copy():
    scholar = tiny_scholar()
    solver_variables = scholar.solver.trainable_variables
    for variable in solver_variables:
        variable.assign(variable + 1.0)
    scholar.begin_task(1, [1], [0, 1])
    for now, snapshot in zip(
        numpy_copies(solver_variables),
        numpy_copies(scholar.replay_solver.variables),
        strict=True,
    ):
        np.testing.assert_array_equal(now, snapshot)
    trainable = {id(v) for v in scholar.trainable_variables}
    assert not any(id(v) in trainable for v in scholar.replay_solver.variables)
    assert scholar.real_fraction() == 0.5


@pytest.fixture(scope="module")
def scholar_after_two_tasks():
    """DGR trained on digits 0/1 then 2/3; `none`: its solver alone, the same way."""
    digits = load_dataset("digits")
    keras.utils.set_random_seed(0)
    scholar = DeepGenerativeReplay(
        *_tiny_networks(), latent_dim=16, n_critic=2, solver_width=8, seed=0
    )
    fast = {"learning_rate": 2e-3, "beta_1": 0.5, "beta_2": 0.9}
    scholar.compile(keras.optimizers.Adam(**fast), keras.optimizers.Adam(**fast))
    steps = 80
    stream = TaskStream(
        digits.x_train, digits.y_train, [OLD, NEW], steps, 32, scholar.n_critic
    )
    scholar.fit(
        stream,
        epochs=2,
        steps_per_epoch=steps,
        callbacks=[TaskSequence(stream)],
        verbose=0,
    )
    none = build_solver(digits.image_shape, 10, width=8)
    for task in (OLD, NEW):
        x, y = (
            a[np.isin(digits.y_train, task)] for a in (digits.x_train, digits.y_train)
        )
        none.compile(
            keras.optimizers.Adam(1e-3),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        none.fit(x, y, batch_size=64, epochs=steps * 64 // len(x), verbose=0)
    return scholar, none, digits


def _tiny_networks():
    from keras_mergan.models import build_dcgan_critic, build_dcgan_generator

    return build_dcgan_generator(10, 1, 16, width=8), build_dcgan_critic(10, width=8)


def _accuracy(predicted, labels):
    return float(np.mean(predicted == labels))


def test_generative_replay_keeps_the_old_task_where_the_solver_alone_forgets(
    scholar_after_two_tasks,
):
    scholar, none, digits = scholar_after_two_tasks
    old = np.isin(digits.y_test, OLD)
    x, y = digits.x_test[old], digits.y_test[old]
    replay = _accuracy(scholar.classify(x), y)
    alone = _accuracy(none.predict(x, verbose=0).argmax(-1), y)
    assert alone < 0.1
    assert replay > alone + 0.3, (replay, alone)
    new = np.isin(digits.y_test, NEW)
    assert _accuracy(scholar.classify(digits.x_test[new]), digits.y_test[new]) > 0.5


def test_generate_gives_images_the_solver_assigns_to_the_label(
    scholar_after_two_tasks,
):
    scholar = scholar_after_two_tasks[0]
    z = np.random.default_rng(1).standard_normal((24, 16)).astype("float32")
    labels = np.array(OLD + NEW).repeat(6)
    images = scholar.generate(z, labels)
    assert images.shape == (24, 32, 32, 1)
    assert (scholar.classify(images) == labels).mean() > 0.9
    np.testing.assert_array_equal(images, scholar.generate(z, labels))
    # A class the solver never saw still gets images (its most likely ones).
    assert scholar.generate(z[:3], [9, 9, 9], max_draws=2).shape == (3, 32, 32, 1)
    with pytest.raises(ValueError, match="labels"):
        scholar.generate(z[:2], [0, 10])


@pytest.mark.skipif(
    keras.config.backend() == "jax",
    reason="backend-neutral flow; XLA compiles each predict shape (~25 s)",
)
def test_cli_trains_dgr_and_reports_the_solver_accuracy(tmp_path):
    argv = ["train", "--method", "dgr", "--tasks", "0,1", "--width", "8"]
    argv += ["--latent-dim", "16", "--iters-per-task", "2", "--batch-size", "8"]
    argv += ["--n-critic", "1", "--eval-samples", "0", "--verbose", "0"]
    argv += ["--mixing-ratio", "0.4", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "task_01" / "metrics.json").read_text())
    assert 0.0 <= metrics["solver_accuracy"] <= 1.0
    assert set(metrics["losses"]) >= {"solver_loss", "solver_accuracy"}
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["model_config"]["mixing_ratio"] == 0.4


def test_permuted_protocol_shuffles_each_task_by_its_own_fixed_permutation():
    protocol = Protocol.create("permuted", 3, 32 * 32, 0)
    digits = load_dataset("digits")
    images = digits.x_test[:4]
    np.testing.assert_array_equal(protocol.transform(0, images), images)
    shuffled = [protocol.transform(t, images) for t in (1, 2)]
    assert not np.array_equal(shuffled[0], images)
    assert not np.array_equal(shuffled[0], shuffled[1])
    np.testing.assert_array_equal(shuffled[0], protocol.transform(1, images))
    np.testing.assert_array_equal(
        np.sort(shuffled[0].reshape(4, -1)), np.sort(images.reshape(4, -1))
    )
    test_images, test_labels = protocol.test_set(2, digits)
    assert len(test_images) == len(digits.x_test)
    assert set(test_labels.tolist()) == set(range(10))


@pytest.mark.skipif(
    keras.config.backend() == "jax",
    reason="backend-neutral flow; XLA compiles each predict shape",
)
def test_exact_replay_is_scored_on_every_permuted_task(digits):
    protocol = Protocol.create("permuted", 2, 32 * 32, 0)
    config = dict(iters_per_task=3, batch_size=4, n_critic=1, solver_width=4)
    config.update(solver_learning_rate=1e-3)
    result, samples = run_method("exact", digits, protocol, config, 0, None)
    assert samples is None
    assert len(result["average_accuracy"]) == 2
    assert np.shape(result["task_accuracy"]) == (2, 2)
    # after task 1 the average is over task 1's test images alone
    assert result["average_accuracy"][0] == result["task_accuracy"][0][0]
