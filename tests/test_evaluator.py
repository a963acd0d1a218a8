"""Tests of evaluation.evaluator on the built-in digits (small training budget)."""

import numpy as np
import pytest

from keras_mergan.data import load_dataset
from keras_mergan.evaluation.evaluator import FEATURES_LAYER, Evaluator, default_epochs

EPOCHS = 2


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("evaluators")


@pytest.fixture(scope="module")
def evaluator(digits, cache_dir):
    return Evaluator.for_dataset(digits, cache_dir=cache_dir, epochs=EPOCHS)


def test_classifies_builtin_test_split(evaluator, digits):
    assert evaluator.image_shape == (32, 32, 1)
    assert evaluator.num_classes == 10
    acc = evaluator.accuracy(digits.x_test, digits.y_test)
    assert acc >= 0.93, acc  # measured 0.96-0.97 after 2 epochs
    pred = evaluator.predict(digits.x_test[:7])
    assert pred.shape == (7,) and np.issubdtype(pred.dtype, np.integer)


def test_features(evaluator, digits):
    f = evaluator.features(digits.x_test[:5])
    width = evaluator.classifier.get_layer(FEATURES_LAYER).units
    assert f.shape == (5, width) and f.dtype == np.float32
    assert np.isfinite(f).all() and (f >= 0).all()  # ReLU features


def test_cache_is_reused(evaluator, digits, cache_dir, monkeypatch):
    path = evaluator.cache_path
    assert path is not None and path.exists() and path.parent == cache_dir
    assert path.suffix == ".keras"
    assert [p.name for p in cache_dir.iterdir()] == [path.name]  # no temp files left
    mtime = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached evaluator should not be retrained")

    monkeypatch.setattr(Evaluator, "_train", staticmethod(no_training))
    again = Evaluator.for_dataset(digits, cache_dir=cache_dir, epochs=EPOCHS)
    assert again.cache_path == path
    assert path.stat().st_mtime_ns == mtime
    np.testing.assert_allclose(
        again.predict_proba(digits.x_test[:64]),
        evaluator.predict_proba(digits.x_test[:64]),
        atol=1e-5,
    )


def test_packaged_evaluator_of_the_builtin_digits(digits, tmp_path, monkeypatch):
    """The shipped evaluator matches today's data, architecture and recipe."""

    def no_training(*args, **kwargs):
        raise AssertionError(
            "the packaged digits evaluator no longer matches its cache key; "
            "rebuild it (see keras_mergan.evaluation.evaluator's docstring)"
        )

    monkeypatch.setattr(Evaluator, "_train", staticmethod(no_training))
    shipped = Evaluator.for_dataset(digits, cache_dir=tmp_path)
    assert shipped.cache_path.parent.name == "datasets"
    assert list(tmp_path.iterdir()) == []  # read in place, not copied
    assert shipped.accuracy(digits.x_test, digits.y_test) >= 0.98  # measured 0.983
    # Other settings are not served by it.
    monkeypatch.undo()
    other = Evaluator.for_dataset(digits, cache_dir=tmp_path, epochs=1)
    assert other.cache_path.parent == tmp_path


def test_cache_key_depends_on_data_and_settings(digits):
    key = Evaluator.cache_key(digits, EPOCHS, 0)
    assert key == Evaluator.cache_key(digits, EPOCHS, 0)
    assert key != Evaluator.cache_key(digits, EPOCHS + 1, 0)
    assert key != Evaluator.cache_key(digits, EPOCHS, 1)
    small = load_dataset("digits", image_size=28)
    assert key != Evaluator.cache_key(small, EPOCHS, 0)


def test_default_cache_dir_from_environment(monkeypatch, tmp_path):
    from keras_mergan.evaluation.evaluator import default_cache_dir

    monkeypatch.setenv("KERAS_MERGAN_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("KERAS_MERGAN_CACHE")
    assert default_cache_dir().parts[-2:] == ("keras_mergan", "evaluators")
    assert default_epochs(60000) == 3 and default_epochs(6000) == 20


def test_accuracy_per_class(evaluator, digits):
    by_class = {c: digits.x_test[digits.y_test == c] for c in range(10)}
    calls = []

    def real(c, n):  # real test images of the asked class, cycling through them
        calls.append(n)
        imgs = by_class[c]
        return imgs[np.arange(n) % len(imgs)]

    acc = evaluator.accuracy_per_class(real, [0, 1, 7], n_per_class=150, batch_size=64)
    assert set(acc) == {0, 1, 7}
    assert min(acc.values()) >= 0.9, acc
    assert calls == [64, 64, 22] * 3  # batches of at most batch_size

    def wrong(c, n):  # always images of the next class
        return by_class[(c + 1) % 10][:n]

    acc = evaluator.accuracy_per_class(wrong, [0, 1, 7], n_per_class=100)
    assert max(acc.values()) <= 0.05, acc


def test_confident_share_shows_noise_that_argmax_counts_as_a_class():
    import keras

    # A classifier that calls everything class 0 with probability 0.6 (and,
    # for images whose mean is above 0.5, class 1 with 0.95).
    images = keras.Input((32, 32, 1))
    brightness = keras.layers.GlobalAveragePooling2D()(images)
    logits = keras.layers.Dense(
        2,
        kernel_initializer=keras.initializers.Constant([[-40.0, 40.0]]),
        bias_initializer=keras.initializers.Constant([np.log(0.6), np.log(0.4)]),
    )(brightness)
    classifier = keras.Model(images, keras.layers.Softmax()(logits))
    evaluator = Evaluator(classifier, ["zero", "one"])

    def noise(c, n):
        return np.zeros((n, 32, 32, 1), "float32")

    accuracy, confident = evaluator.scores_per_class(noise, [0, 1], n_per_class=10)
    assert accuracy == {0: 1.0, 1: 0.0}  # argmax: all of it "zero"
    assert confident == {0: 0.0, 1: 0.0}  # but never with p >= 0.9

    def bright(c, n):
        return np.ones((n, 32, 32, 1), "float32")

    accuracy, confident = evaluator.scores_per_class(bright, [1], n_per_class=10)
    assert accuracy == {1: 1.0} and confident == {1: 1.0}
    # The threshold is the caller's: at 0.5, class 0's 0.6 counts.
    assert evaluator.scores_per_class(noise, [0], 10, threshold=0.5)[1] == {0: 1.0}


def test_input_validation(evaluator, digits):
    # [N, S, S] grayscale without the channel axis is accepted
    np.testing.assert_array_equal(
        evaluator.predict(digits.x_test[:4, ..., 0]),
        evaluator.predict(digits.x_test[:4]),
    )
    with pytest.raises(ValueError, match="expected images of shape"):
        evaluator.predict(np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        evaluator.accuracy_per_class(lambda c, n: digits.x_test[:n], [10], 10)
    with pytest.raises(ValueError, match="outputs"):
        Evaluator(evaluator.classifier, ["a", "b"])


# The bar is the package's callback around Keras' fit: the same on every backend.
@pytest.mark.backend_independent
def test_training_shows_one_bar_over_the_epochs_on_a_terminal(
    digits, tmp_path, capsys, monkeypatch
):
    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    Evaluator.for_dataset(digits, cache_dir=tmp_path, epochs=2)
    out = capsys.readouterr().out
    assert "2/2" in out and "epoch" in out
    assert "Epoch 1/2" not in out  # not Keras' line per epoch
