"""What every method of the registry owes: a complete config and save/load."""

import inspect

import keras
import numpy as np
import pytest
from helpers import numpy_copies, tiny_gan

from keras_mergan.methods import METHODS, WassersteinGAN

# A value other than the default for every method hyper-parameter, so that a
# round trip that dropped one would show.
NON_DEFAULTS = {
    "lambda_cls": 0.5,
    "replay_batch": 4,
    "replay_scaling": "mean",
    "lambda_ra": 0.02,
    "ra_scaling": "mean",
    "lambda_ewc": 5.0,
    "fisher_samples": 4,
    "fisher_batch_size": 2,
    "mixing_ratio": 0.3,
    "student": True,
    "student_beta": 4.0,
}

# One case per model class: `jt` is `sft` trained on cumulative tasks.
CLASSES = {}
for _name, _method in METHODS.items():
    CLASSES.setdefault(_method.model_class, _name)
CASES = sorted(CLASSES.values())


def constructor_arguments(model_class) -> set[str]:
    """Every named argument of the class and of the bases it forwards to."""
    names = set()
    for cls in model_class.__mro__:
        if issubclass(cls, WassersteinGAN) and "__init__" in vars(cls):
            names.update(inspect.signature(cls.__init__).parameters)
    return names - {"self", "generator", "critic", "kwargs"}


def method_options(name) -> dict:
    """`NON_DEFAULTS` for the method's own hyper-parameters (and `lambda_cls`)."""
    method = METHODS[name]
    names = method.hyperparameters + method.shared_hyperparameters
    return {k: NON_DEFAULTS[k] for k in names if k in NON_DEFAULTS}


def method_gan(name):
    options = method_options(name)
    return tiny_gan(METHODS[name].model_class, **options), options


def method_config(gan) -> dict:
    """The config without the networks' (whose layers record their build)."""
    config = gan.get_config()
    return {k: v for k, v in config.items() if k not in ("generator", "critic")}


def task_state_free(gan):
    return [w for w in gan.weights if not w.path.startswith("task_state/")]


@pytest.mark.parametrize("name", CASES)
def test_config_and_save_and_load_restore_the_whole_method(tmp_path, name):
    gan, options = method_gan(name)
    config = gan.get_config()
    assert constructor_arguments(type(gan)) <= set(config)
    assert {k: config[k] for k in options} == options
    gan.begin_task(1, [1], [0, 1])
    rng = np.random.default_rng(0)
    # Optimizer slots as after some training, without paying for a fit.
    for variable in gan.optimizer.variables:
        value = rng.uniform(0.0, 1.0, variable.shape).astype(variable.dtype)
        variable.assign(value)
    gan.save(tmp_path / "gan.keras")
    loaded = keras.saving.load_model(tmp_path / "gan.keras")

    assert type(loaded) is type(gan)
    assert method_config(loaded) == method_config(gan)
    # The task state is set by begin_task before every task, never saved.
    for saved, restored in (
        (task_state_free(gan), task_state_free(loaded)),
        (gan.optimizer.variables, loaded.optimizer.variables),
    ):
        for a, b in zip(numpy_copies(saved), numpy_copies(restored), strict=True):
            np.testing.assert_array_equal(a, b)
    z = rng.standard_normal((4, gan.latent_dim)).astype("float32")
    labels = np.array([0, 1, 2, 0])
    np.testing.assert_array_equal(gan.generate(z, labels), loaded.generate(z, labels))
