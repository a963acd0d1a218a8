"""Lifelong Twin GANs (Ye and Bors, 2021): twin generators teach each other."""

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_mergan.backend import training_backend
from keras_mergan.backend.precision import model_precision, precision_scope
from keras_mergan.methods import paper
from keras_mergan.methods.unconditional_replay import UnconditionalReplayGAN
from keras_mergan.models.vae import VariationalAutoencoder

STUDENT_PREFIX = "student"
_STUDENT_TERMS = ("student_loss", "student_reconstruction", "student_kl")


@keras.saving.register_keras_serializable(package="keras_mergan")
class LifelongTwinGAN(UnconditionalReplayGAN):
    """LT-GANs: a Teacher and an Assistant generator and one critic.

    Task 1: both generators learn the real data (Eq. 2): the critic gets a
    WGAN-GP loss against each of them, and each generator its own
    `-E[D(G(z))]`. Task k > 1 (Lifelong Adversarial Knowledge Distillation,
    Eq. 3): the Teacher is frozen and the Assistant learns a mix of real
    task-k images and Teacher samples, `mixing_ratio` (1/2) of each critic
    batch being real. At every task boundary the roles swap: the generator
    that learned last becomes the Teacher, the other one the Assistant.

    The Assistant is `generator` (trained in every step, used by
    `generate`) and the Teacher is `replay_generator` (`teacher`); a swap
    exchanges the two networks' weights in `begin_task`. Each attribute thus
    keeps one role and one set of variables, so saved models, optimizer
    slots and compiled steps never see networks change places, and a run
    resumed from a task's checkpoint swaps exactly as the original did. The
    Teacher is frozen by construction: no update after the first task
    touches its variables.

    With `student=True`, a VAE (the Student, `student`) learns the same mix
    by minimising reconstruction + `student_beta` * KL (Eq. 5; Eq. 6 with
    beta 4 for disentangled latents); `student.negative_log_likelihood`
    is the paper's NLL estimate (reconstruction + KL).

    Logged: `teacher_critic_loss` and `teacher_generator_loss` (the
    Teacher's terms, 0 after the first task) and, with a student,
    `student_loss`, `student_reconstruction`, `student_kl`.

    Args:
        generator: `(z, label) -> image` model, always called with label 0;
            the Teacher is a copy of it.
        critic: `image -> (score, logits)` model.
        mixing_ratio: fraction of real images in a critic batch after the
            first task: the paper's 1/2, or `"balanced"` (1 / tasks seen),
            which keeps every task's share of the Teacher's samples equal
            instead of halving the older ones' at every task.
        student: whether to train a VAE student.
        student_latent_dim: size of the student's z.
        student_width: channels of its first encoder convolution.
        student_beta: weight of its KL term.
        student_learning_rate: its Adam learning rate.
        **kwargs: `WassersteinGAN` arguments.

    Example:

    >>> from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    >>> gan = LifelongTwinGAN(build_dcgan_generator(10), build_dcgan_critic(10))
    >>> gan.compile()
    >>> gan.teacher is gan.replay_generator
    True
    """

    def __init__(
        self,
        generator: keras.Model,
        critic: keras.Model,
        mixing_ratio: float | str = paper.LTGAN_MIXING_RATIO,
        student: bool = True,
        student_latent_dim: int = 32,
        student_width: int = 32,
        student_beta: float = 1.0,
        student_learning_rate: float = 1e-3,
        **kwargs,
    ):
        self._has_student = bool(student)
        super().__init__(generator, critic, mixing_ratio, **kwargs)
        self.student_latent_dim = int(student_latent_dim)
        self.student_width = int(student_width)
        self.student_beta = float(student_beta)
        self.student_learning_rate = float(student_learning_rate)
        # The Teacher learns with the Assistant in the first task.
        self.replay_generator.trainable = True
        self.student = None
        if self._has_student:
            # The generator's precision, also when a saved model is loaded.
            with precision_scope(model_precision(generator)):
                self.student = VariationalAutoencoder(
                    critic.input_shape[1:],
                    self.student_latent_dim,
                    self.student_width,
                    self.student_beta,
                    name=STUDENT_PREFIX,
                )

    @property
    def teacher(self) -> keras.Model:
        """The generator that replays earlier tasks (frozen after the first)."""
        return self.replay_generator

    @property
    def assistant(self) -> keras.Model:
        """The generator learning the current task: `generator`."""
        return self.generator

    def loss_names(self) -> list[str]:
        return (
            super().loss_names()
            + ["teacher_critic_loss", "teacher_generator_loss"]
            + (list(_STUDENT_TERMS) if self._has_student else [])
        )

    def default_extra_optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        if self.student is None:
            return {}
        return {
            STUDENT_PREFIX: keras.optimizers.Adam(
                self.student_learning_rate, name="student_adam"
            )
        }

    def begin_task(
        self, task_index: int, task_classes: Sequence[int], seen_classes: Sequence[int]
    ) -> None:
        """Swap the roles (after the first task) and give every network a fresh Adam."""
        former_teacher = self.teacher.get_weights()
        super().begin_task(task_index, task_classes, seen_classes)
        if self.task_index > 0:
            # super() made the last learner the Teacher; the former Teacher
            # becomes the Assistant.
            self.assistant.set_weights(former_teacher)

    def step_variant(self):
        # The first task trains the Teacher too: a step with other variables.
        return self.task_index > 0

    def critic_penalties(self, real_images, labels) -> dict:
        terms = super().critic_penalties(real_images, labels)
        if self.task_index > 0:
            return {**terms, "teacher_critic_loss": ops.zeros(())}
        n = ops.shape(real_images)[0]
        fake_images = ops.stop_gradient(
            self.teacher([self.sample_latent(n), labels], training=True)
        )
        terms["teacher_critic_loss"], _, _ = self.wasserstein_critic_objective(
            real_images, fake_images
        )
        return terms

    def extra_updates(self, images, labels) -> dict:
        values = {"teacher_generator_loss": ops.zeros(())}
        n = ops.shape(images)[0]
        if self.task_index < 1:
            z = self.sample_latent(n // self.n_critic)

            def teacher_loss():
                zeros = ops.zeros((ops.shape(z)[0],), "int32")
                fake_images = self.teacher([z, zeros], training=True)
                scores, logits = self.critic(fake_images, training=True)
                return self.generator_objective(zeros, scores, logits), {}

            values["teacher_generator_loss"], _ = training_backend().minimize(
                teacher_loss, self.teacher.trainable_variables, self.generator_optimizer
            )
        if self.student is not None:
            noise = self.sample_normal(n, self.student_latent_dim)

            def student_loss():
                terms = self.student.loss_terms(images, noise)
                return terms["loss"], terms

            _, terms = self.minimize_extra(student_loss, self.student, STUDENT_PREFIX)
            values.update(
                student_loss=terms["loss"],
                student_reconstruction=terms["reconstruction"],
                student_kl=terms["kl_divergence"],
            )
        return values

    def generate(self, z, labels, batch_size: int = 256):
        """The Assistant's images for `z`; unconditional, so `labels` only
        has to match `z` in length (a sample's class is whatever an evaluator
        says: see `keras_mergan.evaluation.unconditional`)."""
        if len(labels) != len(z):
            raise ValueError(f"{len(z)} latent vectors but {len(labels)} labels")
        return self.generate_unconditional(np.asarray(z, "float32"), batch_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            student=self._has_student,
            student_latent_dim=self.student_latent_dim,
            student_width=self.student_width,
            student_beta=self.student_beta,
            student_learning_rate=self.student_learning_rate,
        )
        return config
