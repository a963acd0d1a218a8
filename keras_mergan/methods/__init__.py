"""Continual-learning methods by CLI name."""

from dataclasses import dataclass

from keras_mergan.methods.conditional_wgan_gp import ConditionalWGANGP
from keras_mergan.methods.ewc import ElasticWeightConsolidationGAN
from keras_mergan.methods.generative_replay import DeepGenerativeReplay
from keras_mergan.methods.joint_replay import JointTrainingWithReplay
from keras_mergan.methods.lifelong_twin_gan import LifelongTwinGAN
from keras_mergan.methods.mergan import MeRGAN
from keras_mergan.methods.replay import MemoryReplayGAN
from keras_mergan.methods.replay_alignment import ReplayAlignment
from keras_mergan.methods.unconditional_replay import UnconditionalReplayGAN
from keras_mergan.methods.wasserstein_gan import WassersteinGAN

# `WassersteinGAN`'s arguments, which every method takes.
COMMON_HYPERPARAMETERS = ("latent_dim", "n_critic", "lambda_gp", "seed")


@dataclass(frozen=True)
class Method:
    """How a CLI method name maps to a model class and its task layout.

    `cumulative` methods (joint training) see every class of earlier tasks
    again as real data; the others see only the current task's data.
    A method that is not `conditional` ignores the label it is asked to
    generate (LT-GANs): its samples are scored by their class distribution.
    `hyperparameters` are the `RunConfig` fields the model class takes beside
    `shared_hyperparameters`: those every method takes, and `lambda_cls` for
    the AC-GAN ones (`ConditionalWGANGP` and its subclasses).

    Example:

    >>> METHODS["ra"].hyperparameters
    ('replay_batch', 'lambda_ra', 'ra_scaling')
    >>> METHODS["dgr"].shared_hyperparameters
    ('latent_dim', 'n_critic', 'lambda_gp', 'seed')
    """

    model_class: type
    cumulative: bool = False
    hyperparameters: tuple[str, ...] = ()
    conditional: bool = True

    @property
    def shared_hyperparameters(self) -> tuple[str, ...]:
        if issubclass(self.model_class, ConditionalWGANGP):
            return (*COMMON_HYPERPARAMETERS, "lambda_cls")
        return COMMON_HYPERPARAMETERS


_JTR = ("replay_batch", "replay_scaling")
_RA = ("replay_batch", "lambda_ra", "ra_scaling")

METHODS: dict[str, Method] = {
    "sft": Method(ConditionalWGANGP),
    "jt": Method(ConditionalWGANGP, cumulative=True),
    "jtr": Method(JointTrainingWithReplay, hyperparameters=_JTR),
    "ra": Method(ReplayAlignment, hyperparameters=_RA),
    "jtr+ra": Method(MeRGAN, hyperparameters=(*_JTR, *_RA[1:])),
    "ewc": Method(
        ElasticWeightConsolidationGAN,
        hyperparameters=("lambda_ewc", "fisher_samples", "fisher_batch_size"),
    ),
    "dgr": Method(DeepGenerativeReplay, hyperparameters=("mixing_ratio",)),
    "ltgan": Method(
        LifelongTwinGAN,
        hyperparameters=("mixing_ratio", "student", "student_beta"),
        conditional=False,
    ),
}

__all__ = [
    "COMMON_HYPERPARAMETERS",
    "METHODS",
    "ConditionalWGANGP",
    "DeepGenerativeReplay",
    "ElasticWeightConsolidationGAN",
    "JointTrainingWithReplay",
    "LifelongTwinGAN",
    "MeRGAN",
    "MemoryReplayGAN",
    "Method",
    "ReplayAlignment",
    "UnconditionalReplayGAN",
    "WassersteinGAN",
]
