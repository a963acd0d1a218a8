"""EWC for GANs (Seff et al.): a Fisher-weighted pull towards the last task."""

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_mergan.backend import training_backend
from keras_mergan.methods import paper
from keras_mergan.methods.conditional_wgan_gp import ConditionalWGANGP
from keras_mergan.methods.losses import elastic_weight_penalty


@keras.saving.register_keras_serializable(package="keras_mergan")
class ElasticWeightConsolidationGAN(ConditionalWGANGP):
    """EWC on the generator: `lambda_ewc / 2 * sum F (theta - theta*)^2`.

    At the start of every task after the first, `begin_task` takes the
    generator's weights as the anchors theta* and estimates a diagonal
    empirical Fisher F of the generator's weights (the critic is not
    regularised). F is the mean of squared gradients of the generator's
    own loss, `-D(G(z, c)) + lambda_cls CE(aux(G(z, c)), c)`, on images of
    the old classes (every class of earlier tasks, in equal shares; the
    generator at the end of task t-1 draws all of them, so one Fisher and
    one anchor cover all past tasks). No log of the WGAN critic's score is
    taken: it is not a probability and is often negative.

    Gradients are taken over mini-batches of `fisher_batch_size` samples
    generated with per-class statistics, so each sample's image does not
    depend on the others: `fisher_batch_size=1` (default) gives the
    per-sample empirical Fisher; larger mini-batches are cheaper and average
    the gradients before squaring, which gives smaller values.

    The Fisher and anchors are non-trainable variables of the model, saved
    and restored with it.

    Logged term: `ewc_penalty` (weighted), 0 in the first task.

    Args:
        generator: `(z, label) -> image` model.
        critic: `image -> (score, logits)` model.
        lambda_ewc: weight of the penalty (1e9 in the MeRGAN paper).
        fisher_samples: generated samples the Fisher is estimated from.
        fisher_batch_size: samples per squared gradient.
        **kwargs: `ConditionalWGANGP` arguments.

    Example:

    >>> from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    >>> gan = ElasticWeightConsolidationGAN(
    ...     build_dcgan_generator(10), build_dcgan_critic(10), lambda_ewc=1e9
    ... )
    >>> gan.compile()
    """

    def __init__(
        self,
        generator: keras.Model,
        critic: keras.Model,
        lambda_ewc: float = paper.LAMBDA_EWC,
        fisher_samples: int = 256,
        fisher_batch_size: int = 1,
        **kwargs,
    ):
        if fisher_batch_size < 1 or fisher_samples < fisher_batch_size:
            raise ValueError(
                "need 1 <= fisher_batch_size <= fisher_samples, got "
                f"{fisher_batch_size} and {fisher_samples}"
            )
        super().__init__(generator, critic, **kwargs)
        self.lambda_ewc = float(lambda_ewc)
        self.fisher_samples = int(fisher_samples)
        self.fisher_batch_size = int(fisher_batch_size)
        self.fisher = self._copies_of_generator_weights("ewc_fisher")
        self.anchors = self._copies_of_generator_weights("ewc_anchor")

    def new_category_rows(self, variable) -> str:
        """A new category's Fisher rows are zero: nothing is held there yet."""
        fisher = any(variable is weight for weight in self.fisher)
        return "zeros" if fisher else super().new_category_rows(variable)

    def _copies_of_generator_weights(self, prefix):
        return [
            self.add_weight(
                shape=variable.shape,
                initializer="zeros",
                trainable=False,
                name=f"{prefix}_{variable.path.replace('/', '_')}",
            )
            for variable in self.generator.trainable_variables
        ]

    def loss_names(self) -> list[str]:
        return super().loss_names() + ["ewc_penalty"]

    def begin_task(
        self, task_index: int, task_classes: Sequence[int], seen_classes: Sequence[int]
    ) -> None:
        """Snapshot as the base does, then anchor and weigh the old classes."""
        super().begin_task(task_index, task_classes, seen_classes)
        if not self.old_classes:
            return
        for anchor, variable in zip(
            self.anchors, self.generator.trainable_variables, strict=True
        ):
            # A copy: JAX must not see one buffer twice in the train state.
            anchor.assign(ops.copy(variable.value))
        for fisher, value in zip(
            self.fisher, self.estimate_fisher(self.old_classes), strict=True
        ):
            fisher.assign(value)

    def estimate_fisher(self, classes: Sequence[int]) -> list[np.ndarray]:
        """Diagonal empirical Fisher of the generator's weights on `classes`."""
        variables = self.generator.trainable_variables
        batches = self.fisher_samples // self.fisher_batch_size
        total = [np.zeros(v.shape, "float32") for v in variables]
        backend = training_backend()
        gradients_at = backend.gradient_function(self._fisher_loss, variables)
        for b in range(batches):
            first = b * self.fisher_batch_size
            labels = ops.convert_to_tensor(
                np.take(
                    classes,
                    np.arange(first, first + self.fisher_batch_size),
                    mode="wrap",
                ).astype("int32")
            )
            z = keras.random.normal(
                (self.fisher_batch_size, self.latent_dim), seed=self.seed_generator
            )
            for sum_, gradient in zip(total, gradients_at(z, labels), strict=True):
                sum_ += np.square(ops.convert_to_numpy(gradient))
        return [sum_ / batches for sum_ in total]

    def _fisher_loss(self, z, labels):
        scores, logits = self.critic(
            self.generator([z, labels], training=False), training=False
        )
        return self.generator_objective(labels, scores, logits)

    def generator_penalties(self, z, labels) -> dict:
        terms = super().generator_penalties(z, labels)
        terms["ewc_penalty"] = self.lambda_ewc * elastic_weight_penalty(
            self.generator.trainable_variables, self.anchors, self.fisher
        )
        return terms

    def get_config(self):
        config = super().get_config()
        config.update(
            lambda_ewc=self.lambda_ewc,
            fisher_samples=self.fisher_samples,
            fisher_batch_size=self.fisher_batch_size,
        )
        return config
