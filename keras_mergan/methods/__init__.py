"""Continual-learning methods by CLI name.

The registry (`METHODS`) imports no Keras: a `Method` names its model class
and loads it on first use, so that `keras-mergan --help` and `RunConfig`
start without a backend. The classes themselves are importable from here
(`from keras_mergan.methods import MeRGAN`) and load their module then.
"""

import importlib
from dataclasses import dataclass

# Public class -> the module defining it, loaded on first access.
_CLASSES = {
    "ConditionalWGANGP": "conditional_wgan_gp",
    "DeepGenerativeReplay": "generative_replay",
    "ElasticWeightConsolidationGAN": "ewc",
    "JointTrainingWithReplay": "joint_replay",
    "LifelongTwinGAN": "lifelong_twin_gan",
    "MeRGAN": "mergan",
    "MemoryReplayGAN": "replay",
    "ReplayAlignment": "replay_alignment",
    "UnconditionalReplayGAN": "unconditional_replay",
    "WassersteinGAN": "wasserstein_gan",
}


def register_all() -> None:
    """Imports every method class, registering each for `keras.saving.load_model`.

    Example:

    >>> register_all()
    >>> import keras
    >>> keras.saving.get_registered_object("keras_mergan>MeRGAN").__name__
    'MeRGAN'
    """
    for name in _CLASSES:
        __getattr__(name)


def __getattr__(name: str):
    if name not in _CLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_CLASSES[name]}")
    return getattr(module, name)


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
    the AC-GAN ones (`ConditionalWGANGP` and its subclasses). `reports` name
    what a run scores after each task besides the evaluator's accuracy
    (`keras_mergan.run.callbacks.REPORTS`): `"replay_health"` for a method
    with a frozen replay generator, `"unconditional"` for one whose samples
    carry no label.

    Example:

    >>> METHODS["ra"].hyperparameters
    ('replay_batch', 'lambda_ra', 'ra_scaling')
    >>> METHODS["dgr"].shared_hyperparameters
    ('latent_dim', 'n_critic', 'lambda_gp', 'seed')
    """

    class_name: str
    cumulative: bool = False
    hyperparameters: tuple[str, ...] = ()
    conditional: bool = True
    reports: tuple[str, ...] = ()

    @property
    def model_class(self) -> type:
        """The Keras model class (imported on first use)."""
        return __getattr__(self.class_name)

    @property
    def shared_hyperparameters(self) -> tuple[str, ...]:
        if issubclass(self.model_class, __getattr__("ConditionalWGANGP")):
            return (*COMMON_HYPERPARAMETERS, "lambda_cls")
        return COMMON_HYPERPARAMETERS


_JTR = ("replay_batch", "replay_scaling")
_RA = ("replay_batch", "lambda_ra", "ra_scaling")
_REPLAY_REPORTS = ("replay_health",)
_UNCONDITIONAL_REPORTS = ("unconditional", "replay_health")

METHODS: dict[str, Method] = {
    "sft": Method("ConditionalWGANGP"),
    "jt": Method("ConditionalWGANGP", cumulative=True),
    "jtr": Method(
        "JointTrainingWithReplay", hyperparameters=_JTR, reports=_REPLAY_REPORTS
    ),
    "ra": Method("ReplayAlignment", hyperparameters=_RA, reports=_REPLAY_REPORTS),
    "jtr+ra": Method(
        "MeRGAN", hyperparameters=(*_JTR, *_RA[1:]), reports=_REPLAY_REPORTS
    ),
    "ewc": Method(
        "ElasticWeightConsolidationGAN",
        hyperparameters=("lambda_ewc", "fisher_samples", "fisher_batch_size"),
    ),
    "dgr": Method(
        "DeepGenerativeReplay",
        hyperparameters=("mixing_ratio",),
        reports=_UNCONDITIONAL_REPORTS,
    ),
    "ltgan": Method(
        "LifelongTwinGAN",
        hyperparameters=("mixing_ratio", "student", "student_beta"),
        conditional=False,
        reports=_UNCONDITIONAL_REPORTS,
    ),
}

__all__ = [
    "COMMON_HYPERPARAMETERS",
    "METHODS",
    "Method",
    "register_all",
    "ConditionalWGANGP",
    "DeepGenerativeReplay",
    "ElasticWeightConsolidationGAN",
    "JointTrainingWithReplay",
    "LifelongTwinGAN",
    "MeRGAN",
    "MemoryReplayGAN",
    "ReplayAlignment",
    "UnconditionalReplayGAN",
    "WassersteinGAN",
]
