"""WGAN-GP with a frozen replay generator: the step every method shares."""

from collections.abc import Sequence

import keras
from keras import ops

from keras_mergan.backend import training_backend
from keras_mergan.methods.losses import (
    gradient_penalty,
    interpolate,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from keras_mergan.methods.optimizers import wgan_adam
from keras_mergan.methods.task_state import TaskState


@keras.saving.register_keras_serializable(package="keras_mergan")
class WassersteinGAN(keras.Model):
    """WGAN-GP whose step continual methods extend with losses.

    One Keras step is one WGAN-GP iteration: `n_critic` critic updates, each
    on its own real batch, then one generator update. The stream therefore
    yields `n_critic * batch_size` real images per step. The labels of the
    batch are handed to the generator and to the loss hooks;
    `ConditionalWGANGP` adds the AC-GAN terms of the critic's class head
    (`class_loss`), methods add theirs through `critic_penalties` and
    `generator_penalties`, and networks trained beside the GAN bring their own
    optimizers (`default_extra_optimizers`).

    The model keeps a frozen `replay_generator`: a copy of the generator
    taken by `begin_task` at every task boundary, for methods that replay.
    Whatever else a method's step needs to know about the task at hand lives
    in `task_state` variables that `begin_task` sets, so one compiled step
    serves every task (`keras_mergan.methods.task_state`).

    Args:
        generator: `(z, label) -> image` model.
        critic: `image -> (score, logits)` model.
        latent_dim: size of z ~ N(0, I).
        n_critic: critic updates per generator update.
        lambda_gp: weight of the gradient penalty (WGAN-GP's lambda).
        seed: seed of the step's noise.

    Example:

    >>> from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    >>> gan = WassersteinGAN(build_dcgan_generator(1), build_dcgan_critic(1))
    >>> gan.compile()
    >>> gan.loss_names()
    ['critic_loss', 'gradient_penalty', 'generator_loss']
    """

    def __init__(
        self,
        generator: keras.Model,
        critic: keras.Model,
        latent_dim: int = 128,
        n_critic: int = 5,
        lambda_gp: float = 10.0,
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
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.task_index = -1
        self.seen_classes: list[int] = []
        self.task_classes: list[int] = []
        self.task_state = TaskState(name="task_state")
        self._trackers = {
            name: keras.metrics.Mean(name=name) for name in self.loss_names()
        }
        self.replay_generator.set_weights(generator.get_weights())
        self.built = True

    @property
    def num_classes(self) -> int:
        return int(self.critic.outputs[1].shape[-1])

    def new_category_rows(self, variable) -> str:
        """How `variable`'s rows for a category added later start: "mean" of
        the known categories' rows, or "zeros" (`keras_mergan.methods.growth`).
        """
        return "mean"

    def loss_names(self) -> list[str]:
        """Names of the values this method logs, fixed before any step is traced."""
        return ["critic_loss", "gradient_penalty", "generator_loss"]

    @property
    def metrics(self):
        return list(self._trackers.values())

    def default_extra_optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        """Optimizers of networks beside the GAN, by the prefix of their layer names."""
        return {}

    def compile(
        self,
        generator_optimizer: keras.optimizers.Optimizer | None = None,
        critic_optimizer: keras.optimizers.Optimizer | None = None,
        extra_optimizers: dict[str, keras.optimizers.Optimizer] | None = None,
        **kwargs,
    ):
        """Two Adam optimizers (lr 1e-4, beta1 0, beta2 0.9 by default).

        With `extra_optimizers` (default: `default_extra_optimizers()`) for
        further networks. All of them live inside one `MultiOptimizer`
        because Keras' JAX trainer only threads `model.optimizer.variables`
        through the compiled step; the model keeps each by its role.
        """
        generator_optimizer = generator_optimizer or wgan_adam("generator_adam")
        critic_optimizer = critic_optimizer or wgan_adam("critic_adam")
        if extra_optimizers is None:
            extra_optimizers = self.default_extra_optimizers()
        self._gan_optimizers = {
            "generator": generator_optimizer,
            "critic": critic_optimizer,
        }
        self._extra_optimizers = dict(extra_optimizers)
        by_layer_prefix = {f"{self.critic.name}_.*": critic_optimizer}
        by_layer_prefix.update(
            {f"{prefix}_.*": opt for prefix, opt in extra_optimizers.items()}
        )
        kwargs.setdefault("jit_compile", training_backend().JIT_COMPILE)
        super().compile(
            optimizer=keras.optimizers.MultiOptimizer(
                keras.optimizers.OptimizerMap(
                    default_optimizer=generator_optimizer,
                    optimizer_map=by_layer_prefix,
                )
            ),
            **kwargs,
        )
        self.optimizer.build(self.trainable_variables)

    def get_compile_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            "generator_optimizer": serialize(self.generator_optimizer),
            "critic_optimizer": serialize(self.critic_optimizer),
            "extra_optimizers": {
                prefix: serialize(optimizer)
                for prefix, optimizer in self._extra_optimizers.items()
            },
        }

    def compile_from_config(self, config):
        deserialize = keras.saving.deserialize_keras_object
        self.compile(
            generator_optimizer=deserialize(config["generator_optimizer"]),
            critic_optimizer=deserialize(config["critic_optimizer"]),
            extra_optimizers={
                prefix: deserialize(optimizer)
                for prefix, optimizer in config["extra_optimizers"].items()
            },
        )

    @property
    def generator_optimizer(self) -> keras.optimizers.Optimizer:
        return self._gan_optimizers["generator"]

    @property
    def critic_optimizer(self) -> keras.optimizers.Optimizer:
        return self._gan_optimizers["critic"]

    def extra_optimizer(self, prefix: str) -> keras.optimizers.Optimizer:
        """The optimizer of the network whose layer names start with `prefix`."""
        return self._extra_optimizers[prefix]

    def begin_task(
        self, task_index: int, task_classes: Sequence[int], seen_classes: Sequence[int]
    ) -> None:
        """Freeze the replay generator and give every network a fresh Adam."""
        self.task_index = int(task_index)
        self.task_classes = [int(c) for c in task_classes]
        self.seen_classes = [int(c) for c in seen_classes]
        self.replay_generator.set_weights(self.generator.get_weights())
        for variable in self.optimizer.variables:
            if variable.name != "learning_rate":
                variable.assign(ops.zeros(variable.shape, variable.dtype))

    def step_variant(self):
        """What of the task at hand the traced step is specialised to.

        The task sequence traces the step again only when this changes. None:
        one step for every task, all per-task values being `task_state`
        variables.
        """
        return None

    @property
    def old_classes(self) -> list[int]:
        """Classes seen in earlier tasks and not part of the current one."""
        return [c for c in self.seen_classes if c not in self.task_classes]

    def sample_latent(self, n):
        """z ~ N(0, I) for `n` samples of this replica's share of the batch."""
        return self.sample_normal(n, self.latent_dim)

    def sample_normal(self, n, dim: int):
        """`dim`-dimensional N(0, I) noise for `n` samples of this replica's share.

        Drawn for the global batch, so that replicas together draw what one
        device draws.
        """
        count = training_backend().replica()[1]
        noise = keras.random.normal((n * count, dim), seed=self.seed_generator)
        return training_backend().replica_share(noise)

    def class_loss(self, labels, logits):
        """Weighted loss of the critic's class head; None when it is not trained."""
        return None

    def critic_penalties(self, real_images, labels) -> dict:
        """Extra critic loss terms of a method, by name; none for the base."""
        return {}

    def generator_penalties(self, z, labels) -> dict:
        """Extra generator loss terms of a method, by name; none for the base."""
        return {}

    def train_step(self, *args):
        return training_backend().run_train_step(self, self._gan_step, *args)

    def _gan_step(self, data):
        return self.log_values(self.adversarial_updates(*data))

    def adversarial_updates(self, images, labels) -> dict:
        """The step's critic and generator updates; the values to log, by name."""
        backend = training_backend()
        # With one step per replica, every replica takes its share of each
        # critic batch, so that the replicas together compute one device's step.
        images, labels = backend.all_gather(images), backend.all_gather(labels)
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
        return {
            "critic_loss": critic_loss,
            "generator_loss": generator_loss,
            **critic_terms,
            **generator_terms,
        }

    def log_values(self, values: dict) -> dict:
        """Update each loss tracker with its value; the logs of the step."""
        for name, tracker in self._trackers.items():
            tracker.update_state(values[name])
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def wasserstein_critic_objective(self, real_images, fake_images):
        """The WGAN-GP critic loss of one real and one fake batch.

        Returns `(W + lambda_gp * GP, GP, the critic's logits of the real
        images)`. Interpolation weights are drawn for the global batch and
        each replica takes its share, as the noise is.
        """
        backend = training_backend()
        n = ops.shape(real_images)[0]
        alpha = keras.random.uniform(
            (n * backend.replica()[1],), seed=self.seed_generator
        )
        alpha = backend.replica_share(alpha)
        real_scores, real_logits = self.critic(real_images, training=True)
        fake_scores, _ = self.critic(fake_images, training=True)
        input_gradients = backend.input_gradient(
            lambda x: self.critic(x, training=True)[0],
            interpolate(real_images, fake_images, alpha),
        )
        penalty = gradient_penalty(input_gradients)
        loss = wasserstein_critic_loss(real_scores, fake_scores)
        return loss + self.lambda_gp * penalty, penalty, real_logits

    def generator_objective(self, labels, scores, logits):
        """What the generator minimises on images the critic scored: `-mean D`
        plus the class head's loss."""
        loss = wasserstein_generator_loss(scores)
        class_loss = self.class_loss(labels, logits)
        return loss if class_loss is None else loss + class_loss

    def _critic_loss(self, real_images, labels):
        n = ops.shape(real_images)[0]
        fake_images = ops.stop_gradient(
            self.generator([self.sample_latent(n), labels], training=True)
        )
        loss, penalty, real_logits = self.wasserstein_critic_objective(
            real_images, fake_images
        )
        terms = {"gradient_penalty": penalty}
        class_loss = self.class_loss(labels, real_logits)
        if class_loss is not None:
            terms["critic_cls"] = class_loss
            loss = loss + class_loss
        penalties = self.critic_penalties(real_images, labels)
        terms.update(penalties)
        return loss + sum(penalties.values()), terms

    def _generator_loss(self, labels):
        z = self.sample_latent(ops.shape(labels)[0])
        fake_scores, fake_logits = self.critic(
            self.generator([z, labels], training=True), training=True
        )
        penalties = self.generator_penalties(z, labels)
        loss = self.generator_objective(labels, fake_scores, fake_logits)
        return loss + sum(penalties.values()), penalties

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
