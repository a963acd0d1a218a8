"""Deep Generative Replay (Shin et al., 2017): a generator and a solver."""

import zlib
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_mergan.backend.precision import model_precision, precision_scope
from keras_mergan.inference import predict
from keras_mergan.methods import paper
from keras_mergan.methods.losses import auxiliary_classifier_loss
from keras_mergan.methods.unconditional_replay import UnconditionalReplayGAN
from keras_mergan.models.solver import build_solver

SOLVER_PREFIX = "solver"


@keras.saving.register_keras_serializable(package="keras_mergan")
class DeepGenerativeReplay(UnconditionalReplayGAN):
    """DGR's scholar: an unconditional WGAN-GP generator and a CNN solver.

    From the second task on, every critic batch and the solver's batch mix
    real current-task images with images of the frozen previous generator
    (`replay_generator`), a fraction `r` being real. Real images keep their
    labels; replayed ones are labelled by the frozen previous solver
    (`replay_solver`, its argmax), so the new solver learns
    `r CE(S(x), y) + (1 - r) CE(S(x'), S_old(x'))`: Eq. (1) of the paper,
    where r is "the ratio of mixing real data". The default `r = 1 / t`, with
    `t` the number of tasks seen, is the reference implementation's
    `importance_of_new_task` and gives every task the same share. The
    reference code weighs two losses by r; here r sets the rows of one
    batch, the same objective at the cost of one critic pass and one
    gradient penalty.

    The solver takes one update per step on all `n_critic` mixed batches.
    `begin_task` snapshots both networks (the previous scholar) and gives
    every network a fresh Adam (the solver's: lr `solver_learning_rate`).

    For the conditional protocol (`generate(z, labels)`, MeRGAN's Table 1),
    the class of a generated image is the solver's prediction.

    Replays are only as good as the generator: with the paper's GAN Adam
    (lr 1e-4, beta1 0) a few hundred iterations per task leave it
    unconverged, and the solver forgets the first tasks. Short runs should
    compile with a faster Adam (split MNIST's quick preset: lr 5e-4,
    beta1 0.5 for both GAN networks).

    Args:
        generator: `(z, label) -> image` model, always called with label 0.
        critic: `image -> (score, logits)` model; its class count sizes the
            solver.
        mixing_ratio: r, the fraction of real data from the second task on,
            or `"balanced"`: 1 / (tasks seen).
        solver_width: channels of the solver's first convolution.
        solver_learning_rate: Adam learning rate of the solver.
        **kwargs: `WassersteinGAN` arguments.

    Example:

    >>> from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    >>> dgr = DeepGenerativeReplay(build_dcgan_generator(10), build_dcgan_critic(10))
    >>> dgr.compile()
    >>> dgr.begin_task(2, [4, 5], [0, 1, 2, 3, 4, 5])
    >>> round(dgr.real_fraction(), 3)
    0.333
    """

    def __init__(
        self,
        generator: keras.Model,
        critic: keras.Model,
        mixing_ratio: float | str = paper.DGR_MIXING_RATIO,
        solver_width: int = 32,
        solver_learning_rate: float = 1e-3,
        **kwargs,
    ):
        super().__init__(generator, critic, mixing_ratio, **kwargs)
        self.solver_width = int(solver_width)
        self.solver_learning_rate = float(solver_learning_rate)
        image_shape = critic.input_shape[1:]
        num_classes = int(critic.outputs[1].shape[-1])
        # The generator's precision, also when a saved model is loaded.
        with precision_scope(model_precision(generator)):
            self.solver = build_solver(
                image_shape, num_classes, self.solver_width, SOLVER_PREFIX
            )
            self.replay_solver = build_solver(
                image_shape, num_classes, self.solver_width, f"replay_{SOLVER_PREFIX}"
            )
        self.replay_solver.trainable = False
        self.replay_solver.set_weights(self.solver.get_weights())

    def loss_names(self) -> list[str]:
        return super().loss_names() + ["solver_loss", "solver_accuracy"]

    def default_extra_optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {
            SOLVER_PREFIX: keras.optimizers.Adam(
                self.solver_learning_rate, name="solver_adam"
            )
        }

    def begin_task(
        self, task_index: int, task_classes: Sequence[int], seen_classes: Sequence[int]
    ) -> None:
        """Snapshot the scholar (generator and solver); fresh optimizers."""
        super().begin_task(task_index, task_classes, seen_classes)
        self.replay_solver.set_weights(self.solver.get_weights())

    def replay_targets(self, replayed_images):
        logits = self.replay_solver(replayed_images, training=False)
        return ops.cast(ops.argmax(logits, axis=-1), "int32")

    def extra_updates(self, images, labels) -> dict:
        def solver_loss():
            logits = self.solver(images, training=True)
            correct = ops.cast(ops.argmax(logits, axis=-1), "int32") == labels
            return auxiliary_classifier_loss(labels, logits), {
                "solver_accuracy": ops.mean(ops.cast(correct, "float32"))
            }

        loss, terms = self.minimize_extra(solver_loss, self.solver, SOLVER_PREFIX)
        return {"solver_loss": loss, **terms}

    def classify(self, images, batch_size: int = 256) -> np.ndarray:
        """The solver's predicted classes of images in [-1, 1]."""
        logits = predict(self.solver, images, batch_size)
        return np.argmax(logits, axis=-1)

    def generate(self, z, labels, batch_size: int = 256, max_draws: int = 10):
        """Generated images that the solver assigns to each requested label.

        The given `z` are the first candidates; while some label lacks
        images, up to `max_draws` rounds of `len(z)` further candidates follow,
        their z drawn from a seed made of `z` itself (the same call gives the
        same images). Each label takes, in order, the candidates the solver
        predicts as that label. A label the solver rarely predicts (a
        forgotten class) is completed with the candidates it finds most
        likely of that class, so forgetting shows as evaluator errors rather
        than as missing images.
        """
        z = np.asarray(z, "float32")
        labels = np.asarray(labels).astype("int64").reshape(-1)
        if len(labels) != len(z):
            raise ValueError(f"{len(z)} latent vectors but {len(labels)} labels")
        if len(labels) and not 0 <= labels.min() <= labels.max() < self.num_classes:
            raise ValueError(f"labels must be in [0, {self.num_classes})")
        classes, needed = np.unique(labels, return_counts=True)
        rng = np.random.default_rng(zlib.crc32(z.tobytes()))
        images, logits = [], []
        candidates = z
        for _ in range(max_draws):
            images.append(self.generate_unconditional(candidates, batch_size))
            logits.append(predict(self.solver, images[-1], batch_size))
            counts = np.bincount(
                np.argmax(np.concatenate(logits), axis=-1), minlength=self.num_classes
            )
            if np.all(counts[classes] >= needed):
                break
            candidates = rng.standard_normal(z.shape).astype("float32")
        images, logits = np.concatenate(images), np.concatenate(logits)
        predicted = np.argmax(logits, axis=-1)
        result = np.empty((len(z),) + images.shape[1:], images.dtype)
        for c in classes:
            rows = np.flatnonzero(labels == c)
            assigned = np.flatnonzero(predicted == c)
            others = np.flatnonzero(predicted != c)
            others = others[np.argsort(-logits[others, c], kind="stable")]
            result[rows] = images[np.concatenate([assigned, others])[: len(rows)]]
        return result

    def get_config(self):
        config = super().get_config()
        config.update(
            solver_width=self.solver_width,
            solver_learning_rate=self.solver_learning_rate,
        )
        return config
