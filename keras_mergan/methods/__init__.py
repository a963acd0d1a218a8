"""Continual-learning methods by CLI name."""

from dataclasses import dataclass, field

from keras_mergan.methods.conditional_wgan_gp import ConditionalWGANGP


@dataclass(frozen=True)
class Method:
    """How a CLI method name maps to a model class and its task layout.

    `cumulative` methods (joint training) see every class of earlier tasks
    again as real data; the others see only the current task's data.
    """

    model_class: type
    cumulative: bool = False
    options: dict = field(default_factory=dict)


METHODS: dict[str, Method] = {
    "sft": Method(ConditionalWGANGP),
    "jt": Method(ConditionalWGANGP, cumulative=True),
}

__all__ = ["METHODS", "ConditionalWGANGP", "Method"]
