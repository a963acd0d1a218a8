import json
import warnings

import keras
import numpy as np
import pytest
from helpers import make_image_folder, numpy_copies, random_images, tiny_gan

from keras_mergan.cli import main
from keras_mergan.data import load_dataset
from keras_mergan.data.tasks import TaskSequence, TaskStream
from keras_mergan.methods import LifelongTwinGAN
from keras_mergan.models.vae_losses import (
    bernoulli_reconstruction_loss,
    gaussian_kl_divergence,
    negative_elbo,
)


def tiny_twins(**kwargs):
    kwargs.setdefault("student_width", 4)
    kwargs.setdefault("student_latent_dim", 4)
    return tiny_gan(LifelongTwinGAN, num_classes=10, **kwargs)


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _none_equal(a, b):
    return not any(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _fit_task(gan, stream, task):
    part = stream.starting_at(task)
    return gan.fit(
        part,
        initial_epoch=task,
        epochs=task + 1,
        steps_per_epoch=stream.steps_per_task,
        callbacks=[TaskSequence(part)],
        verbose=0,
    )


def test_both_twins_learn_the_first_task_then_the_teacher_is_frozen():
    gan = tiny_twins(n_critic=1, student=False)
    stream = TaskStream(
        random_images(40), np.arange(40) % 2, [[0], [1]], 2, 4, gan.n_critic
    )
    teacher_start = numpy_copies(gan.teacher.trainable_variables)
    assistant_start = numpy_copies(gan.assistant.trainable_variables)
    first = _fit_task(gan, stream, 0).history
    teacher_1 = numpy_copies(gan.teacher.trainable_variables)
    assistant_1 = numpy_copies(gan.assistant.trainable_variables)
    assert _none_equal(teacher_start, teacher_1)
    assert _none_equal(assistant_start, assistant_1)
    assert first["teacher_critic_loss"][0] != 0.0
    assert first["teacher_generator_loss"][0] != 0.0

    second = _fit_task(gan, stream, 1).history
    # Task 2: the last learner teaches, frozen; the former Teacher learns.
    assert _same(numpy_copies(gan.teacher.trainable_variables), assistant_1)
    assert _none_equal(numpy_copies(gan.assistant.trainable_variables), teacher_1)
    assert second["teacher_critic_loss"] == [0.0]
    assert second["teacher_generator_loss"] == [0.0]


def test_the_critics_unused_class_head_gets_zero_gradients_without_a_warning():
    # LT-GANs trains no class head: its gradient is zero on every backend,
    # not Keras' "Gradients do not exist" warning.
    gan = tiny_twins(n_critic=1, student=False)
    stream = TaskStream(random_images(8), np.arange(8) % 2, [[0]], 2, 4, 1)
    head = [v for v in gan.trainable_variables if "acgan_head" in v.path]
    before = numpy_copies(head)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit_task(gan, stream, 0)
    assert [str(w.message) for w in caught if "Gradients" in str(w.message)] == []
    assert head and _same(numpy_copies(head), before)


def test_roles_swap_at_every_task_boundary():
    gan = tiny_twins(student=False)
    for variable in gan.assistant.variables:
        variable.assign(variable + 1.0)
    first, second = gan.assistant.get_weights(), gan.teacher.get_weights()
    gan.begin_task(0, [0], [0])
    assert _same(gan.teacher.get_weights(), first)  # task 1: both alike
    gan.teacher.set_weights(second)
    gan.begin_task(1, [1], [0, 1])
    assert _same(gan.teacher.get_weights(), first)
    assert _same(gan.assistant.get_weights(), second)
    gan.begin_task(2, [2], [0, 1, 2])
    assert _same(gan.teacher.get_weights(), second)
    assert _same(gan.assistant.get_weights(), first)


def test_after_the_first_task_half_of_each_critic_batch_is_teacher_samples():
    gan = tiny_twins(n_critic=2, student=False)
    images, labels = random_images(16), np.arange(16) % 10
    gan.begin_task(0, [0], [0])
    mixed, _ = gan.mix_with_replay(images, labels)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mixed), images)
    gan.begin_task(1, [1], [0, 1])
    mixed, mixed_labels = (
        keras.ops.convert_to_numpy(t) for t in gan.mix_with_replay(images, labels)
    )
    kept = np.all(mixed == images, axis=(1, 2, 3))
    assert kept.tolist() == ([True] * 4 + [False] * 4) * 2
    assert (mixed_labels[~kept] == 0).all()
    assert np.abs(mixed[~kept]).max() <= 1.0  # the Teacher's tanh images


@pytest.mark.parametrize(("task", "real_rows"), [(1, 6), (2, 4), (3, 3), (5, 2)])
def test_balanced_mixing_gives_the_new_task_one_share_of_the_tasks_seen(
    task, real_rows
):
    gan = tiny_twins(n_critic=2, student=False, mixing_ratio="balanced")
    images, labels = random_images(24), np.arange(24) % 10
    gan.begin_task(task, [task], list(range(task + 1)))
    mixed = keras.ops.convert_to_numpy(gan.mix_with_replay(images, labels)[0])
    kept = np.all(mixed == images, axis=(1, 2, 3))
    assert kept.tolist() == ([True] * real_rows + [False] * (12 - real_rows)) * 2
    restored = LifelongTwinGAN.from_config(gan.get_config())
    assert restored.mixing_ratio == "balanced"


@pytest.mark.parametrize("bad", [0, 1.5, "half", float("nan")])
def test_mixing_ratio_is_checked(bad):
    with pytest.raises(ValueError, match="mixing_ratio must be in"):
        tiny_twins(mixing_ratio=bad)


def test_vae_losses_match_their_definitions():
    tensor = keras.ops.convert_to_tensor
    images = tensor(np.array([[[[-1.0], [1.0]]]], "float32"))  # pixels 0 and 1
    logits = tensor(np.array([[[[0.0], [2.0]]]], "float32"))
    expected = np.log(2.0) + np.log1p(np.exp(-2.0))
    reconstruction = bernoulli_reconstruction_loss(images, logits)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reconstruction), expected, rtol=1e-6
    )
    mean, log_variance = keras.ops.zeros((3, 4)), keras.ops.zeros((3, 4))
    kl = keras.ops.convert_to_numpy(gaussian_kl_divergence(mean, log_variance))
    assert kl == 0.0
    kl = gaussian_kl_divergence(mean + 1.0, log_variance)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kl), 2.0)  # 4 * 1/2
    assert negative_elbo(3.0, 2.0, beta=4.0) == 11.0


def test_student_elbo_decreases_while_learning_the_mix():
    digits = load_dataset("digits")
    keras.utils.set_random_seed(0)
    gan = tiny_twins(n_critic=1, student_width=8, student_beta=1.0)
    test = digits.x_test[np.isin(digits.y_test, [0, 1])]
    before = gan.student.negative_log_likelihood(test)
    steps = 30
    stream = TaskStream(digits.x_train, digits.y_train, [[0, 1], [2]], steps, 32, 1)
    history = gan.fit(
        stream,
        epochs=2,
        steps_per_epoch=steps,
        callbacks=[TaskSequence(stream)],
        verbose=0,
    ).history
    after = gan.student.negative_log_likelihood(test)
    assert after < 0.8 * before, (before, after)
    assert all(np.isfinite(history["student_loss"]))


@pytest.mark.skipif(
    keras.config.backend() == "jax",
    reason="backend-neutral flow; XLA compiles each predict shape (~25 s)",
)
def test_cli_trains_ltgan_on_whole_datasets_and_reports_the_student_nll(tmp_path):
    # Each task is a whole dataset, as in the LT-GANs paper (MNIST, then SVHN).
    scenes = make_image_folder(tmp_path / "scenes", rgb=True)
    argv = ["train", "--method", "ltgan", "--dataset", f"digits+{scenes}"]
    argv += ["--tasks", "digits/scenes", "--width", "8"]
    argv += ["--latent-dim", "16", "--iters-per-task", "2", "--batch-size", "8"]
    argv += ["--n-critic", "1", "--eval-samples", "0", "--verbose", "0"]
    argv += ["--student-beta", "4", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "task_01" / "metrics.json").read_text())
    assert metrics["student_nll"] > 0.0
    assert "accuracy" not in metrics  # unconditional: no per-class accuracy
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["model_config"]["student_beta"] == 4.0
    assert run["class_names"] == ["digits", "scenes"] and run["tasks"] == [[0], [1]]
    assert run["image_shape"] == [32, 32, 3]
