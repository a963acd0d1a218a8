import numpy as np
import pytest
from helpers import fit_random_tasks, tiny_gan
from keras import ops

from keras_mergan.methods import JointTrainingWithReplay

REPLAY_TERMS = ("replay_critic_loss", "replay_critic_cls", "replay_generator_loss")


@pytest.mark.parametrize(
    ("task", "replay_batch", "expected"),
    [
        (0, 64, {}),
        (1, 64, {0: 64}),
        (3, 64, {0: 22, 1: 21, 2: 21}),
        (9, 64, {0: 8, **dict.fromkeys(range(1, 9), 7)}),
        (3, 2, {0: 1, 1: 1}),
    ],
)
def test_replay_batch_has_even_runs_of_each_old_class(task, replay_batch, expected):
    gan = tiny_gan(JointTrainingWithReplay, num_classes=10, replay_batch=replay_batch)
    gan.begin_task(task, [task], list(range(task + 1)))
    labels = gan.replay_labels()
    classes, counts = np.unique(labels, return_counts=True)
    assert dict(zip(classes.tolist(), counts.tolist(), strict=True)) == expected
    assert list(labels) == sorted(labels)  # one run per class
    assert task not in labels


def _cbn_gamma(generator):
    gamma = next(v for v in generator.weights if v.path == "generator_cbn0/gamma")
    return ops.convert_to_numpy(gamma)


def test_replay_joins_training_from_the_second_task():
    gan = tiny_gan(JointTrainingWithReplay, replay_batch=8, n_critic=1)
    history = fit_random_tasks(gan, [[0], [1]], steps=1)
    for name in REPLAY_TERMS:
        first, second = history.history[name]
        assert first == 0.0 and np.isfinite(second) and second != 0.0, name
    # Task 2's real and generated batches hold only class 1, so only the
    # replays of class 0 move class 0's CBN row away from the task-2 snapshot.
    moved = ~np.isclose(_cbn_gamma(gan.generator), _cbn_gamma(gan.replay_generator))
    assert moved[0].any() and moved[1].any() and not moved[2].any()


@pytest.mark.parametrize(("scaling", "expected"), [("reference", 3), ("mean", 1)])
def test_replay_scaling_weighs_the_old_classes(scaling, expected):
    gan = tiny_gan(JointTrainingWithReplay, num_classes=10, replay_scaling=scaling)
    gan.begin_task(3, [3], [0, 1, 2, 3])
    assert float(ops.convert_to_numpy(gan.terms[0].weight(gan))) == expected
    loaded = JointTrainingWithReplay.from_config(gan.get_config())
    assert loaded.get_config()["replay_scaling"] == scaling


def test_unknown_replay_scaling_is_refused():
    with pytest.raises(ValueError, match="replay_scaling"):
        tiny_gan(JointTrainingWithReplay, replay_scaling="sum")
