"""Continual-learning methods by CLI name."""

from dataclasses import dataclass, field

from keras_mergan.methods.conditional_wgan_gp import ConditionalWGANGP
from keras_mergan.methods.ewc import ElasticWeightConsolidationGAN
from keras_mergan.methods.generative_replay import DeepGenerativeReplay
from keras_mergan.methods.joint_replay import JointTrainingWithReplay
from keras_mergan.methods.lifelong_twin_gan import LifelongTwinGAN
from keras_mergan.methods.mergan import MeRGAN
from keras_mergan.methods.replay import MemoryReplayGAN
from keras_mergan.methods.replay_alignment import ReplayAlignment


@dataclass(frozen=True)
class Method:
    """How a CLI method name maps to a model class and its task layout.

    `cumulative` methods (joint training) see every class of earlier tasks
    again as real data; the others see only the current task's data.
    A method that is not `conditional` ignores the label it is asked to
    generate (LT-GANs): its samples are scored by their class distribution.
    """

    model_class: type
    cumulative: bool = False
    options: dict = field(default_factory=dict)
    conditional: bool = True


METHODS: dict[str, Method] = {
    "sft": Method(ConditionalWGANGP),
    "jt": Method(ConditionalWGANGP, cumulative=True),
    "jtr": Method(JointTrainingWithReplay),
    "ra": Method(ReplayAlignment),
    "jtr+ra": Method(MeRGAN),
    "ewc": Method(ElasticWeightConsolidationGAN),
    "dgr": Method(DeepGenerativeReplay),
    "ltgan": Method(LifelongTwinGAN, conditional=False),
}

__all__ = [
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
]
