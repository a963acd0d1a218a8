"""A CNN classifier trained on real data that scores generated images.

Evaluation protocol (docs/design-notes.md, "Evaluation protocol"): for every
seen class ``c``, generate ``N`` images conditioned on ``c``; the accuracy of
class ``c`` is the fraction the evaluator labels ``c``. The evaluator's
penultimate-layer features serve as an offline feature space for FID and t-SNE.

Trained evaluators are cached as ``.keras`` files, keyed by a hash of the
dataset (name, shapes, a checksum of the pixels and labels), the architecture
version, the number of epochs and the seed. The cache directory is
``$KERAS_MERGAN_CACHE`` (when set) or ``~/.cache/keras_mergan/evaluators``.

The package ships the evaluator of its built-in digits under the same name in
``keras_mergan/datasets/`` (``PACKAGED_DIR``), so that a first run on them
spends its minutes on the GAN rather than on training a classifier. It was
made by the default recipe, with
``Evaluator.for_dataset(load_dataset("digits"), cache_dir=PACKAGED_DIR)``, and
stops matching (and is retrained as any other) when the data, the
architecture version, the epochs or the seed change.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from keras_mergan import inference
from keras_mergan.data import ImageDataset
from keras_mergan.run_folder import save_model

__all__ = [
    "ARCH_VERSION",
    "CONFIDENCE_THRESHOLD",
    "Evaluator",
    "build_classifier",
    "default_cache_dir",
]

#: A generated image counts as confidently of its class when the evaluator
#: gives the class at least this probability (`Evaluator.scores_per_class`).
CONFIDENCE_THRESHOLD = 0.9

#: Evaluators shipped with the package, looked up after the cache.
PACKAGED_DIR = importlib.resources.files("keras_mergan") / "datasets"

logger = logging.getLogger(__name__)

#: Bump when `build_classifier` or the training recipe changes: invalidates caches.
ARCH_VERSION = 1
FEATURES_LAYER = "features"
_BATCH_SIZE = 128
_TARGET_STEPS = 1400  # optimizer steps of the default schedule (3 epochs of MNIST)


def default_cache_dir() -> Path:
    """``$KERAS_MERGAN_CACHE`` or ``~/.cache/keras_mergan/evaluators``."""
    env = os.environ.get("KERAS_MERGAN_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "keras_mergan" / "evaluators"


def build_classifier(
    image_shape: Sequence[int], num_classes: int, seed: int = 0
) -> keras.Model:
    """The evaluator CNN: three conv blocks, a 256-unit feature layer, softmax.

    Three blocks ``conv3x3(f) -> maxpool2 -> batchnorm -> relu`` with f = 32, 64,
    128, then ``dense256 ("features") -> dropout(0.5) -> dense(num_classes,
    softmax)``. Inputs are images in ``[-1, 1]``.

    Example:
        >>> model = build_classifier((32, 32, 1), 10)
        >>> model.output_shape
        (None, 10)
    """
    init = keras.initializers.HeUniform
    inputs = keras.Input(shape=tuple(int(d) for d in image_shape), name="image")
    x = inputs
    for i, filters in enumerate((32, 64, 128)):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer=init(seed=seed + i),
            name=f"conv{i + 1}",
        )(x)
        # pool first: 4x less normalisation work (elementwise ops dominate a
        # training step on CPU under torch and jax)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(
        256,
        activation="relu",
        kernel_initializer=init(seed=seed + 3),
        name=FEATURES_LAYER,
    )(x)
    x = keras.layers.Dropout(0.5, seed=seed + 11, name="dropout_features")(x)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 4),
        name="probabilities",
    )(x)
    return keras.Model(inputs, outputs, name="evaluator")


def default_epochs(num_train: int, batch_size: int = _BATCH_SIZE) -> int:
    """Epochs for about 1400 optimizer steps, between 3 and 20."""
    steps_per_epoch = max(1, math.ceil(num_train / batch_size))
    return int(min(20, max(3, math.ceil(_TARGET_STEPS / steps_per_epoch))))


class _ShuffledBatches(keras.utils.PyDataset):
    """Full batches of (x, y) in a fresh seeded permutation every epoch.

    The remainder (< batch_size samples, different ones each epoch) is dropped
    so that every step has the same shape: one compilation under JAX.

    Shuffling here keeps training reproducible without touching global random
    state (``keras.utils.set_random_seed``) and without copying the arrays.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self._rng = np.random.default_rng(seed)
        self._perm = self._rng.permutation(len(x))

    def __len__(self) -> int:
        return max(1, len(self.x) // self.batch_size)

    def __getitem__(self, index: int):
        idx = np.sort(
            self._perm[index * self.batch_size : (index + 1) * self.batch_size]
        )
        return self.x[idx], self.y[idx]

    def on_epoch_end(self) -> None:
        self._perm = self._rng.permutation(len(self.x))


class _EpochBar(keras.callbacks.Callback):
    """A progress bar over the evaluator's training epochs."""

    def __init__(self, epochs: int):
        super().__init__()
        self.bar = keras.utils.Progbar(epochs, unit_name="epoch")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.update(epoch + 1, [(k, float(v)) for k, v in (logs or {}).items()])


class Evaluator:
    """Classifies images; scores class-conditional generators.

    Args:
        classifier: a Keras model mapping images ``[N, S, S, C]`` in ``[-1, 1]``
            to class probabilities ``[N, K]``; for :meth:`features` it needs a
            layer named ``"features"``.
        class_names: one name per output class.

    Example:
        >>> from keras_mergan.data import load_dataset
        >>> ds = load_dataset("digits")
        >>> ev = Evaluator.for_dataset(ds)  # doctest: +SKIP
        >>> ev.accuracy(ds.x_test, ds.y_test)  # doctest: +SKIP
        0.985
        >>> real = lambda c, n: ds.x_test[ds.y_test == c][:n]
        >>> ev.accuracy_per_class(real, [0, 1], n_per_class=50)  # doctest: +SKIP
        {0: 1.0, 1: 1.0}
    """

    def __init__(self, classifier: keras.Model, class_names: Sequence[str]):
        self.classifier = classifier
        self.class_names = tuple(str(n) for n in class_names)
        out = classifier.output_shape
        if isinstance(out, list):
            raise ValueError("the classifier must have a single output")
        if out[-1] != len(self.class_names):
            raise ValueError(
                f"the classifier has {out[-1]} outputs but {len(self.class_names)} "
                "class names were given"
            )
        self.image_shape = tuple(int(d) for d in classifier.input_shape[1:])
        self._feature_model: keras.Model | None = None
        self.cache_path: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def load(cls, path: str | os.PathLike, class_names: Sequence[str]) -> Evaluator:
        """A saved `.keras` classifier as the evaluator of `class_names`.

        Its input is images ``[N, H, W, C]`` in ``[-1, 1]``, as generated; its
        single output has one unit per class, in `class_names`' order
        (probabilities or logits: the argmax is what scores). Features for
        FID and KID come from its layer named ``"features"`` (this package's
        classifiers) or else from the layer before its last.

        Raises:
            ValueError: the file cannot be loaded or does not fit.

        Example:
            >>> # Evaluator.load("pool-classifier.keras", ["cat", "dog", "bird"])
        """
        try:
            classifier = keras.saving.load_model(path, compile=False)
        except Exception as error:
            raise ValueError(f"cannot load the evaluator {path}: {error}") from None
        outputs = classifier.output_shape
        if not isinstance(outputs, list) and outputs[-1] != len(class_names):
            raise ValueError(
                f"the evaluator {path} has {outputs[-1]} outputs; the run has "
                f"{len(class_names)} categories ({', '.join(class_names)})"
            )
        evaluator = cls(classifier, class_names)
        evaluator.cache_path = Path(path)
        return evaluator

    # ------------------------------------------------------------------ #
    # Construction
    # ------------------------------------------------------------------ #

    @staticmethod
    def cache_key(dataset: ImageDataset, epochs: int, seed: int) -> str:
        """Hash of dataset fingerprint, architecture version, epochs and seed."""
        h = hashlib.sha256()
        h.update(dataset.fingerprint().encode())
        h.update(f"arch={ARCH_VERSION};epochs={epochs};seed={seed}".encode())
        return h.hexdigest()[:20]

    @classmethod
    def _cache_files(
        cls, dataset: ImageDataset, cache_dir, epochs: int | None, seed: int
    ) -> tuple[int, Path, Path]:
        """(epochs, the cache's file, the packaged file) of `dataset`'s evaluator."""
        if epochs is None:
            epochs = default_epochs(len(dataset.x_train))
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in dataset.name)
        key = cls.cache_key(dataset, epochs, seed)
        file_name = f"evaluator-{name}-{key}.keras"
        return epochs, cache / file_name, PACKAGED_DIR / file_name

    @classmethod
    def is_ready(
        cls,
        dataset: ImageDataset,
        cache_dir: str | os.PathLike | None = None,
        epochs: int | None = None,
        seed: int = 0,
    ) -> bool:
        """Whether `for_dataset` finds its evaluator cached or shipped
        (nothing to train).

        Example:
            >>> from keras_mergan.data import load_dataset
            >>> Evaluator.is_ready(load_dataset("digits"))  # shipped
            True
        """
        _, path, packaged = cls._cache_files(dataset, cache_dir, epochs, seed)
        return path.is_file() or packaged.is_file()

    @classmethod
    def for_dataset(
        cls,
        dataset: ImageDataset,
        cache_dir: str | os.PathLike | None = None,
        epochs: int | None = None,
        seed: int = 0,
        verbose: int = 0,
    ) -> Evaluator:
        """Load the cached evaluator of `dataset`, or train and cache one.

        Args:
            dataset: training data (its train split) and class names.
            cache_dir: where ``.keras`` files are kept; default
                :func:`default_cache_dir`.
            epochs: training epochs; default: about 1400 steps of batch 128,
                3 to 20 epochs (3 for MNIST, 20 for the built-in digits).
            seed: seed of weight initialisation, dropout and shuffling.
            verbose: Keras ``fit`` verbosity.

        Example:
            >>> from keras_mergan.data import load_dataset
            >>> ev = Evaluator.for_dataset(load_dataset("digits"))  # doctest: +SKIP
        """
        epochs, path, packaged = cls._cache_files(dataset, cache_dir, epochs, seed)
        for candidate in (path, packaged):
            if not candidate.is_file():
                continue
            try:  # a .keras file loads under any backend, whichever wrote it
                with importlib.resources.as_file(candidate) as local:
                    model = keras.saving.load_model(local, compile=False)
                    evaluator = cls(model, dataset.class_names)
                    if evaluator.image_shape != dataset.image_shape:
                        raise ValueError("cached model has a different input shape")
                    evaluator.cache_path = Path(local)
                logger.debug("loaded evaluator from %s", candidate)
                return evaluator
            except Exception as e:  # corrupt or incompatible file: retrain
                logger.warning("ignoring unusable evaluator %s: %s", candidate, e)

        model = cls._train(dataset, epochs, seed, verbose)
        evaluator = cls(model, dataset.class_names)
        try:
            # an uncompiled copy: a .keras file of the compiled model would
            # also hold the optimizer state (3x the size)
            clean = build_classifier(
                dataset.image_shape, dataset.num_classes, seed=seed
            )
            clean.set_weights(model.get_weights())
            save_model(clean, path)
            evaluator.cache_path = path
            logger.debug("saved evaluator to %s", path)
        except OSError as e:
            logger.warning("could not cache the evaluator in %s: %s", path.parent, e)
        return evaluator

    @staticmethod
    def _train(
        dataset: ImageDataset, epochs: int, seed: int, verbose: int
    ) -> keras.Model:
        model = build_classifier(dataset.image_shape, dataset.num_classes, seed=seed)
        data = _ShuffledBatches(
            dataset.x_train, dataset.y_train, _BATCH_SIZE, seed=seed
        )
        schedule = keras.optimizers.schedules.CosineDecay(
            1e-3, decay_steps=epochs * len(data), alpha=0.01
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        # One bar over the epochs on a terminal, rather than Keras' line per
        # epoch, when the messages are wanted (keras_mergan.logs).
        bar = verbose == 0 and sys.stdout.isatty() and logger.isEnabledFor(logging.INFO)
        callbacks = [_EpochBar(epochs)] if bar else []
        model.fit(
            data, epochs=epochs, shuffle=False, verbose=verbose, callbacks=callbacks
        )
        return model

    # ------------------------------------------------------------------ #
    # Scoring
    # ------------------------------------------------------------------ #

    def _as_images(self, images) -> np.ndarray:
        if not isinstance(images, np.ndarray):
            images = keras.ops.convert_to_numpy(images)
        x = np.asarray(images, np.float32)
        shape = self.image_shape
        if shape[-1] == 1 and x.ndim == len(shape) and x.shape[1:] == shape[:-1]:
            x = x[..., None]  # grayscale batch without the channel axis
        elif x.shape == shape:  # a single image
            x = x[None]
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"expected images of shape [N, {', '.join(map(str, self.image_shape))}]"
                f", got {tuple(x.shape)}"
            )
        return x

    def predict_proba(self, images, batch_size: int = 500) -> np.ndarray:
        """Class probabilities ``[N, K]`` of images in ``[-1, 1]``."""
        return inference.predict(self.classifier, self._as_images(images), batch_size)

    def predict(self, images, batch_size: int = 500) -> np.ndarray:
        """Predicted class indices (int64 ``[N]``) of images in ``[-1, 1]``.

        Example:
            >>> ev.predict(ds.x_test[:3])  # doctest: +SKIP
            array([0, 0, 0])
        """
        return np.argmax(self.predict_proba(images, batch_size), axis=-1)

    def accuracy(self, images, labels, batch_size: int = 500) -> float:
        """Fraction of `images` classified as `labels` (an int or ``[N]`` ints)."""
        pred = self.predict(images, batch_size)
        labels = np.broadcast_to(np.asarray(labels).reshape(-1), pred.shape)
        return float(np.mean(pred == labels)) if len(pred) else float("nan")

    def accuracy_per_class(
        self,
        generate: Callable[[int, int], object],
        classes: Sequence[int],
        n_per_class: int = 1000,
        batch_size: int = 500,
    ) -> dict[int, float]:
        """Accuracy of a class-conditional generator, per class.

        For each class ``c`` in `classes`, calls ``generate(c, n)`` with
        ``n <= batch_size`` until `n_per_class` images were produced, and
        returns ``{c: fraction the evaluator labels c}``. The mean over the
        dict's values is the paper's accuracy metric.

        Example:
            >>> gen = lambda c, n: ds.x_test[ds.y_test == c][:n]
            >>> ev.accuracy_per_class(gen, [3], n_per_class=100)  # doctest: +SKIP
            {3: 1.0}
        """
        return self.scores_per_class(generate, classes, n_per_class, batch_size)[0]

    def scores_per_class(
        self,
        generate: Callable[[int, int], object],
        classes: Sequence[int],
        n_per_class: int = 1000,
        batch_size: int = 500,
        threshold: float = CONFIDENCE_THRESHOLD,
    ) -> tuple[dict[int, float], dict[int, float]]:
        """`(accuracy, confident share)` per class of a class-conditional generator.

        The accuracy is `accuracy_per_class`'s (argmax, the paper's metric);
        the confident share is the fraction of a class's images the evaluator
        gives that class a probability of at least `threshold`. An untrained
        generator's noise can be argmax-labelled one class most of the time,
        but rarely with confidence: the second number shows it.

        Example:
            >>> gen = lambda c, n: ds.x_test[ds.y_test == c][:n]
            >>> ev.scores_per_class(gen, [3], n_per_class=100)  # doctest: +SKIP
            ({3: 1.0}, {3: 0.99})
        """
        if n_per_class < 1 or batch_size < 1:
            raise ValueError("n_per_class and batch_size must be >= 1")
        accuracy: dict[int, float] = {}
        confident: dict[int, float] = {}
        for c in classes:
            c = int(c)
            if not 0 <= c < self.num_classes:
                raise ValueError(f"class {c} out of range [0, {self.num_classes})")
            correct = sure = total = 0
            while total < n_per_class:
                n = min(batch_size, n_per_class - total)
                images = self._as_images(generate(c, n))
                if len(images) == 0:
                    raise ValueError(f"generate({c}, {n}) returned no images")
                images = images[: n_per_class - total]
                probabilities = self.predict_proba(images, batch_size)
                correct += int(np.sum(np.argmax(probabilities, axis=-1) == c))
                sure += int(np.sum(probabilities[:, c] >= threshold))
                total += len(images)
            accuracy[c] = correct / total
            confident[c] = sure / total
        return accuracy, confident

    def features(self, images, batch_size: int = 500) -> np.ndarray:
        """Penultimate-layer activations: the ``"features"`` layer (256-d) of
        this package's classifiers, else the layer before the last."""
        if self._feature_model is None:
            names = [layer.name for layer in self.classifier.layers]
            layer = (
                self.classifier.get_layer(FEATURES_LAYER)
                if FEATURES_LAYER in names
                else self.classifier.layers[-2]
            )
            self._feature_model = keras.Model(
                self.classifier.inputs, layer.output, name="evaluator_features"
            )
        return inference.predict(
            self._feature_model, self._as_images(images), batch_size
        )

    def __repr__(self) -> str:
        where = f", cache_path={str(self.cache_path)!r}" if self.cache_path else ""
        return (
            f"Evaluator(image_shape={self.image_shape}, "
            f"num_classes={self.num_classes}{where})"
        )
