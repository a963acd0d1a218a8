"""bfloat16 training: float32 weights and losses, bfloat16 convolutions and matmuls."""

import json

import keras
import numpy as np
import pytest
from helpers import (
    TINY_CLI_RUN,
    fit_random_tasks,
    numpy_copies,
    random_images,
    tiny_gan,
    wiring_test,
)
from keras import ops

from keras_mergan import cli
from keras_mergan.backend import cpu_has_bfloat16_units, training_backend
from keras_mergan.backend.precision import (
    model_precision,
    precision_scope,
    resolve_precision,
)
from keras_mergan.layers import ConditionalBatchNormalization
from keras_mergan.methods import METHODS

# Options that keep each method's bfloat16 test small.
SMALL = {"ewc": {"fisher_samples": 4}, "dgr": {"solver_width": 8}}
SMALL["ltgan"] = {"student_width": 8, "student_latent_dim": 4}


def bfloat16_gan(method="sft", **kwargs):
    with precision_scope("bfloat16"):
        return tiny_gan(
            METHODS[method].model_class,
            **{**SMALL.get(method, {}), **kwargs},
        )


def dtype(x) -> str:
    return keras.backend.standardize_dtype(x.dtype)


def test_bfloat16_training_updates_both_networks():
    gan = bfloat16_gan()
    assert model_precision(gan.generator) == model_precision(gan.critic) == "bfloat16"
    assert {dtype(v) for v in gan.trainable_variables} == {"float32"}
    generator_before = numpy_copies(gan.generator.trainable_variables)
    critic_before = numpy_copies(gan.critic.trainable_variables)
    history = fit_random_tasks(gan, [[0, 1]], steps=1)

    def moved(before, variables):
        return sum(
            not np.allclose(b, a)
            for b, a in zip(before, numpy_copies(variables), strict=True)
        )

    # As in float32: every critic weight but the score bias, and every
    # generator weight but the batch-norm rows of the absent class, move.
    critic_moved = moved(critic_before, gan.critic.trainable_variables)
    assert critic_moved == len(critic_before) - 1
    generator_moved = moved(generator_before, gan.generator.trainable_variables)
    assert generator_moved >= len(generator_before) - 3
    assert all(np.isfinite(values[0]) for values in history.history.values())
    assert {dtype(v) for v in gan.trainable_variables} == {"float32"}


# jtr+ra and dgr also compute the base's terms.
@pytest.mark.parametrize("method", ["jtr+ra", "ewc", "dgr", "ltgan"])
def test_bfloat16_losses_are_float32(method):
    gan = bfloat16_gan(method)
    # Task 2 of [0], [1]: replay, alignment and EWC terms are all active.
    gan.begin_task(1, [1], [0, 1])
    images = ops.convert_to_tensor(random_images(4))
    labels = ops.convert_to_tensor(np.array([1, 1, 1, 1], "int32"))
    critic_loss, critic_terms = gan._critic_loss(images, labels)
    generator_loss, generator_terms = gan._generator_loss(labels)
    losses = {"critic": critic_loss, "generator": generator_loss}
    losses.update(critic_terms)
    losses.update(generator_terms)
    assert len(losses) >= 3  # critic, generator and gradient penalty at least
    assert {name: dtype(value) for name, value in losses.items()} == {
        name: "float32" for name in losses
    }
    if method == "ewc":
        assert {dtype(f) for f in gan.fisher} == {"float32"}
        assert sum(float(ops.sum(f)) for f in gan.fisher) > 0
    if method == "dgr":
        assert dtype(gan.solver(images)) == "float32"
        assert model_precision(gan.solver) == "bfloat16"
    if method == "ltgan":
        noise = ops.convert_to_tensor(np.zeros((4, 4), "float32"))
        terms = gan.student.loss_terms(images, noise)
        assert {dtype(v) for v in terms.values()} == {"float32"}
        assert model_precision(gan.student.encoder) == "bfloat16"


def test_saved_bfloat16_model_loads_with_its_policy(tmp_path):
    gan = bfloat16_gan()
    fit_random_tasks(gan, [[0]], steps=1)
    gan.save(tmp_path / "gan.keras")
    assert keras.config.dtype_policy().name == "float32"
    loaded = keras.saving.load_model(tmp_path / "gan.keras")
    assert model_precision(loaded.generator) == "bfloat16"
    assert model_precision(loaded.replay_generator) == "bfloat16"
    assert loaded.critic.get_layer("critic_acgan_head").compute_dtype == "float32"
    z = np.random.default_rng(0).standard_normal((4, 16)).astype("float32")
    labels = np.array([0, 1, 2, 0], "int32")
    np.testing.assert_array_equal(loaded.generate(z, labels), gan.generate(z, labels))


@pytest.mark.parametrize("method", ["dgr", "ltgan"])
def test_owned_networks_follow_the_generator_precision_when_loaded(method):
    gan = bfloat16_gan(method)
    restored = type(gan).from_config(gan.get_config())  # float32 global policy
    owned = restored.solver if method == "dgr" else restored.student.encoder
    assert model_precision(owned) == "bfloat16"


def test_batch_norm_statistics_are_float32():
    with precision_scope("bfloat16"):
        layer = ConditionalBatchNormalization(num_classes=2, momentum=0.0)
    # bfloat16-exact values around 64: their spacing there is 0.5, so a
    # bfloat16 sum of them drops the small variance altogether.
    x = 64.0 + 0.5 * (np.arange(2 * 8 * 8 * 4) % 3).reshape(2, 8, 8, 4)
    outputs = layer(x.astype("float32"), np.array([0, 0]), training=True)
    assert dtype(outputs) == "bfloat16"
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer.moving_mean)[0], x.mean(axis=(0, 1, 2)), rtol=1e-6
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer.moving_variance)[0],
        x.var(axis=(0, 1, 2)),
        rtol=1e-4,
    )
    normalised = ops.convert_to_numpy(ops.cast(outputs, "float32"))
    np.testing.assert_allclose(normalised.std(axis=(0, 1, 2)), 1.0, rtol=1e-2)


def test_auto_follows_the_backend():
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("bfloat16") == "bfloat16"
    expected = "bfloat16" if training_backend().bfloat16_is_faster() else "float32"
    assert resolve_precision("auto") == expected
    if keras.config.backend() == "jax":
        assert not training_backend().bfloat16_is_faster()  # XLA on a CPU
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("float16")


def test_bfloat16_units_are_read_from_cpu_flags(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("flags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n")
    avx = tmp_path / "avx"
    avx.write_text("flags\t\t: fpu sse2 avx512f avx512_bf16\n")
    old = tmp_path / "old"
    old.write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_has_bfloat16_units(amx) and cpu_has_bfloat16_units(avx)
    assert not cpu_has_bfloat16_units(old)
    assert not cpu_has_bfloat16_units(tmp_path / "missing")


def test_precision_scope_restores_the_global_policy():
    with precision_scope("bfloat16") as resolved:
        assert resolved == "bfloat16"
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"


@wiring_test
def test_cli_trains_in_bfloat16_and_records_it(tmp_path, capsys):
    run = [*TINY_CLI_RUN, "--tasks=0", f"--out={tmp_path}"]
    assert cli.main([*run, "--precision=bfloat16"]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["precision"] == "bfloat16"
    gan = keras.saving.load_model(tmp_path / "task_01" / "gan.keras")
    assert model_precision(gan.generator) == "bfloat16"
    # The same folder in another precision would mix two runs.
    assert cli.main([*run, "--precision=float32"]) == 2
    assert "precision: 'bfloat16' there, 'float32' now" in capsys.readouterr().err
