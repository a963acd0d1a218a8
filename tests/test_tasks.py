import numpy as np
import pytest
from helpers import random_images, tiny_gan

from keras_mergan.data.tasks import (
    TaskSequence,
    TaskStream,
    cumulative_tasks,
    split_tasks,
)


def test_split_and_cumulative_tasks():
    assert split_tasks(range(5), 2) == [[0, 1], [2, 3], [4]]
    assert cumulative_tasks([[0], [1], [2, 3]]) == [[0], [0, 1], [0, 1, 2, 3]]


def test_batches_follow_the_task_of_their_step_and_are_reproducible():
    labels = np.arange(40) % 4
    stream = TaskStream(random_images(40), labels, [[0], [1, 2], [3]], 5, 3, 2)
    for index, classes in [
        (0, {0}),
        (4, {0}),
        (5, {1, 2}),
        (9, {1, 2}),
        (10, {3}),
        (99, {3}),
    ]:
        images, batch_labels = stream[index]
        assert images.shape == (6, 32, 32, 1)
        assert set(batch_labels.tolist()) <= classes
        np.testing.assert_array_equal(stream[index][0], images)
    resumed = TaskStream(
        random_images(40), labels, [[0], [1, 2], [3]], 5, 3, 2, initial_task=2
    )
    assert set(resumed[0][1].tolist()) == {3}


def test_stream_rejects_bad_tasks():
    labels = np.arange(10) % 2
    with pytest.raises(ValueError, match="no images"):
        TaskStream(random_images(10), labels, [[0], [5]], 1)
    with pytest.raises(ValueError, match="at least one class"):
        TaskStream(random_images(10), labels, [[0], []], 1)
    with pytest.raises(ValueError, match="labels"):
        TaskStream(random_images(10), labels[:5], [[0]], 1)


def test_task_sequence_needs_one_epoch_per_task():
    gan = tiny_gan()
    stream = TaskStream(
        random_images(12), np.arange(12) % 3, [[0], [1]], 2, 2, gan.n_critic
    )
    with pytest.raises(ValueError, match="steps_per_task"):
        gan.fit(
            stream,
            epochs=2,
            steps_per_epoch=3,
            callbacks=[TaskSequence(stream)],
            verbose=0,
        )
    with pytest.raises(ValueError, match="more tasks"):
        gan.fit(
            stream,
            epochs=3,
            steps_per_epoch=2,
            callbacks=[TaskSequence(stream)],
            verbose=0,
        )
