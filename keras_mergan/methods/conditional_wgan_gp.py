"""AC-GAN + WGAN-GP conditional GAN: the base every continual method extends."""

from collections.abc import Sequence

import keras
from keras import ops

from keras_mergan.backend import training_backend
from keras_mergan.losses import (
    auxiliary_classifier_loss,
    gradient_penalty,
    interpolate,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from keras_mergan.optimizers import wgan_adam


@keras.saving.register_keras_serializable(package="keras_mergan")
class ConditionalWGANGP(keras.Model):
    """Conditional WGAN-GP with an AC-GAN classifier head on the critic.

    One Keras step is one WGAN-GP iteration: `n_critic` critic updates, each
    on its own real batch, then one generator update. The stream therefore
    yields `n_critic * batch_size` real images per step. Alone, the model is
    sequential fine-tuning (SFT); trained on cumulative tasks it is joint
    training (JT). Continual methods subclass it and add losses through
    `critic_penalties` and `generator_penalties`.

    The model keeps a frozen `replay_generator`: a copy of the generator
    taken by `begin_task` at every task boundary, for methods that replay.

    Args:
        generator: `(z, label) -> image` model.
        critic: `image -> (score, logits)` model.
        latent_dim: size of z ~ N(0, I).
        n_critic: critic updates per generator update.
        lambda_gp: weight of the gradient penalty (WGAN-GP's lambda).
        lambda_cls: weight of the AC-GAN classification terms.
        seed: seed of the step's noise.

    Example:

    >>> from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    >>> gan = ConditionalWGANGP(build_dcgan_generator(10), build_dcgan_critic(10))
    >>> gan.compile()
    """

    def __init__(
        self,
        generator: keras.Model,
        critic: keras.Model,
        latent_dim: int = 128,
        n_critic: int = 5,
        lambda_gp: float = 10.0,
        lambda_cls: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.generator = generator
        self.critic = critic
        self.replay_generator = keras.models.clone_model(generator)
        self.replay_generator.name = f"replay_{generator.name}"
        self.replay_generator.trainable = False
        self.latent_dim = int(latent_dim)
        self.n_critic = int(n_critic)
        self.lambda_gp = float(lambda_gp)
        self.lambda_cls = float(lambda_cls)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.task_index = -1
        self.seen_classes: list[int] = []
        self.task_classes: list[int] = []
        self._trackers = {
            name: keras.metrics.Mean(name=name) for name in self.loss_names()
        }
        self.replay_generator.set_weights(generator.get_weights())
        self.built = True

    @property
    def num_classes(self) -> int:
        return int(self.critic.outputs[1].shape[-1])

    def loss_names(self) -> list[str]:
        """Names of the losses this method logs, fixed before any step is traced."""
        return ["critic_loss", "gradient_penalty", "critic_cls", "generator_loss"]

    @property
    def metrics(self):
        return list(self._trackers.values())

    def compile(
        self,
        generator_optimizer: keras.optimizers.Optimizer | None = None,
        critic_optimizer: keras.optimizers.Optimizer | None = None,
        **kwargs,
    ):
        """Two Adam optimizers (lr 1e-4, beta1 0, beta2 0.9 by default).

        Both live inside one `MultiOptimizer` because Keras' JAX trainer only
        threads `model.optimizer.variables` through the compiled step.
        """
        if "optimizer" in kwargs:  # Restored from a saved compile config.
            optimizer = kwargs.pop("optimizer")
        else:
            generator_optimizer = generator_optimizer or wgan_adam("generator_adam")
            critic_optimizer = critic_optimizer or wgan_adam("critic_adam")
            optimizer = keras.optimizers.MultiOptimizer(
                keras.optimizers.OptimizerMap(
                    default_optimizer=generator_optimizer,
                    optimizer_map={f"{self.critic.name}_.*": critic_optimizer},
                )
            )
        kwargs.setdefault("jit_compile", training_backend().JIT_COMPILE)
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.trainable_variables)

    def get_compile_config(self):
        return {"optimizer": keras.saving.serialize_keras_object(self.optimizer)}

    def compile_from_config(self, config):
        self.compile(
            optimizer=keras.saving.deserialize_keras_object(config["optimizer"])
        )

    @property
    def generator_optimizer(self) -> keras.optimizers.Optimizer:
        return self.optimizer._optimizer_map.default_optimizer

    @property
    def critic_optimizer(self) -> keras.optimizers.Optimizer:
        return self.optimizer._optimizer_map[f"{self.critic.name}_"]

    def begin_task(
        self, task_index: int, task_classes: Sequence[int], seen_classes: Sequence[int]
    ) -> None:
        """Freeze the replay generator and give both networks a fresh Adam."""
        self.task_index = int(task_index)
        self.task_classes = [int(c) for c in task_classes]
        self.seen_classes = [int(c) for c in seen_classes]
        self.replay_generator.set_weights(self.generator.get_weights())
        for variable in self.optimizer.variables:
            if variable.name != "learning_rate":
                variable.assign(ops.zeros(variable.shape, variable.dtype))

    @property
    def old_classes(self) -> list[int]:
        """Classes seen in earlier tasks and not part of the current one."""
        return [c for c in self.seen_classes if c not in self.task_classes]

    def sample_latent(self, n):
        """z ~ N(0, I) for `n` samples of this replica's share of the batch."""
        count = training_backend().replica()[1]
        z = keras.random.normal((n * count, self.latent_dim), seed=self.seed_generator)
        return training_backend().replica_share(z)

    def critic_penalties(self, real_images, labels) -> dict:
        """Extra critic loss terms of a method, by name; none for the base."""
        return {}

    def generator_penalties(self, z, labels) -> dict:
        """Extra generator loss terms of a method, by name; none for the base."""
        return {}

    def train_step(self, *args):
        return training_backend().run_train_step(self, self._gan_step, *args)

    def _gan_step(self, data):
        backend = training_backend()
        # With one step per replica, every replica takes its share of each
        # critic batch, so that the replicas together compute one device's step.
        images, labels = (backend.all_gather(x) for x in data)
        images = ops.reshape(images, (self.n_critic, -1) + tuple(images.shape[1:]))
        labels = ops.reshape(ops.cast(labels, "int32"), (self.n_critic, -1))
        images = backend.replica_share(images, axis=1)
        labels = backend.replica_share(labels, axis=1)
        for i in range(self.n_critic):
            critic_loss, critic_terms = backend.minimize(
                lambda i=i: self._critic_loss(images[i], labels[i]),
                self.critic.trainable_variables,
                self.critic_optimizer,
            )
        generator_loss, generator_terms = backend.minimize(
            lambda: self._generator_loss(labels[0]),
            self.generator.trainable_variables,
            self.generator_optimizer,
        )
        values = {"critic_loss": critic_loss, "generator_loss": generator_loss}
        values.update(critic_terms)
        values.update(generator_terms)
        for name, tracker in self._trackers.items():
            tracker.update_state(values[name])
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def _critic_loss(self, real_images, labels):
        n = ops.shape(real_images)[0]
        fake_images = ops.stop_gradient(
            self.generator([self.sample_latent(n), labels], training=True)
        )
        backend = training_backend()
        alpha = keras.random.uniform(
            (n * backend.replica()[1],), seed=self.seed_generator
        )
        alpha = backend.replica_share(alpha)
        real_scores, real_logits = self.critic(real_images, training=True)
        fake_scores, _ = self.critic(fake_images, training=True)
        input_gradients = training_backend().input_gradient(
            lambda x: self.critic(x, training=True)[0],
            interpolate(real_images, fake_images, alpha),
        )
        terms = {
            "gradient_penalty": gradient_penalty(input_gradients),
            "critic_cls": auxiliary_classifier_loss(labels, real_logits),
        }
        penalties = self.critic_penalties(real_images, labels)
        loss = (
            wasserstein_critic_loss(real_scores, fake_scores)
            + self.lambda_gp * terms["gradient_penalty"]
            + self.lambda_cls * terms["critic_cls"]
            + sum(penalties.values())
        )
        terms.update(penalties)
        return loss, terms

    def _generator_loss(self, labels):
        z = self.sample_latent(ops.shape(labels)[0])
        fake_scores, fake_logits = self.critic(
            self.generator([z, labels], training=True), training=True
        )
        penalties = self.generator_penalties(z, labels)
        loss = (
            wasserstein_generator_loss(fake_scores)
            + self.lambda_cls * auxiliary_classifier_loss(labels, fake_logits)
            + sum(penalties.values())
        )
        return loss, penalties

    def generate(self, z, labels, batch_size: int = 256):
        """Images for (z, labels) with per-class statistics, as exported."""
        return self.generator.predict([z, labels], batch_size=batch_size, verbose=0)

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            generator=keras.saving.serialize_keras_object(self.generator),
            critic=keras.saving.serialize_keras_object(self.critic),
            latent_dim=self.latent_dim,
            n_critic=self.n_critic,
            lambda_gp=self.lambda_gp,
            lambda_cls=self.lambda_cls,
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("generator", "critic"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        return cls(**config)
