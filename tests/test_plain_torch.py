"""The plain PyTorch peer of the throughput benchmark computes the package's losses.

`benchmarks/plain_torch.py` is timed beside the package in
`benchmarks/train_throughput.py`; the comparison means something only if it
trains the same networks on the same losses. Here it gets the weights of the
package's DCGAN-32 generator and critic and the same batch, noise, labels
and interpolation weights, and must give the same critic loss, gradient
penalty and generator loss, in float32. Torch backend only: the package's
side runs on the same framework, so any difference is the networks' or the
losses', not the frameworks' kernels.
"""

import keras
import numpy as np
import pytest
from helpers import load_benchmark
from keras import ops

from keras_mergan.layers import ConditionalBatchNormalization
from keras_mergan.methods import ConditionalWGANGP
from keras_mergan.models import build_dcgan_critic, build_dcgan_generator

torch_only = pytest.mark.skipif(
    keras.config.backend() != "torch", reason="the peer is plain PyTorch"
)
NUM_CLASSES, BATCH = 10, 8


@pytest.fixture(scope="module")
def plain():
    return load_benchmark("plain_torch")


def _package_gan(rng) -> ConditionalWGANGP:
    keras.utils.set_random_seed(0)
    gan = ConditionalWGANGP(
        build_dcgan_generator(NUM_CLASSES), build_dcgan_critic(NUM_CLASSES), seed=0
    )
    # Class-dependent scales and offsets: a table row read for the wrong
    # class, or a wrong layout, changes the losses.
    for layer in gan.generator.layers:
        if isinstance(layer, ConditionalBatchNormalization):
            shape = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.3, shape).astype("float32"))
    return gan


@torch_only
def test_plain_losses_equal_the_packages_on_the_same_weights_and_batch(plain):
    import torch

    rng = np.random.default_rng(0)
    gan = _package_gan(rng)
    real = ops.convert_to_tensor(rng.uniform(-1, 1, (BATCH, 32, 32, 1)), "float32")
    labels = rng.permutation(BATCH).astype("int32")  # classes 0..7, one each
    z, z_generator = rng.standard_normal((2, BATCH, 128)).astype("float32")

    # The package: the step's critic loss (fakes from the generator in
    # training mode) and generator objective, as `WassersteinGAN` adds them.
    # The interpolation weights it draws are drawn again from a copy of
    # its seed generator's state.
    replay = keras.random.SeedGenerator(0)
    replay.state.assign(gan.seed_generator.state.value)
    alpha = ops.convert_to_numpy(keras.random.uniform((BATCH,), seed=replay))
    fake = ops.stop_gradient(gan.generator([z, labels], training=True))
    loss, penalty, real_logits = gan.wasserstein_critic_objective(real, fake)
    critic_loss = loss + gan.class_loss(labels, real_logits)
    scores, logits = gan.critic(
        gan.generator([z_generator, labels], training=True), training=True
    )
    generator_loss = gan.generator_objective(labels, scores, logits)

    generator, critic = plain.Generator(NUM_CLASSES), plain.Critic(NUM_CLASSES)
    plain.load_keras_weights(generator, critic, gan.generator, gan.critic)
    generator.train()

    def tensor(x, dtype=torch.float32):
        return torch.as_tensor(np.asarray(x), dtype=dtype)

    real_t = tensor(ops.convert_to_numpy(real)).permute(0, 3, 1, 2)
    labels_t = tensor(labels, torch.long)
    expected = [float(critic_loss), float(penalty)]
    # Eager autograd and the torch.func form `torch.compile` runs.
    for functional_penalty in (False, True):
        plain_loss, plain_penalty = plain.critic_loss(
            generator,
            critic,
            real_t,
            labels_t,
            tensor(z),
            tensor(alpha),
            functional_penalty=functional_penalty,
        )
        np.testing.assert_allclose(
            [plain_loss.item(), plain_penalty.item()], expected, rtol=1e-5
        )
    plain_generator_loss = plain.generator_loss(
        generator, critic, labels_t, tensor(z_generator)
    )
    np.testing.assert_allclose(
        plain_generator_loss.item(), float(generator_loss), rtol=1e-5
    )


def _result(implementation, backend, precision, seconds, mode=None):
    result = {
        "implementation": implementation,
        "backend": backend,
        "architecture": "dcgan32",
        "convolutions": "auto" if implementation == "keras-mergan" else "native",
        "resolved_convolutions": "native",
        "precision": precision,
        "jit_compile": backend != "torch",
        "median_s_per_it": seconds,
        "best_s_per_it": seconds,
        "flops": {"iteration": 52e9},
        "peak_gflops_by_precision": {"float32": 100.0, "bfloat16": 200.0},
    }
    if mode:
        result["mode"] = mode
    return result


@pytest.mark.backend_independent
def test_throughput_table_reports_the_peer_and_the_ratios():
    throughput = load_benchmark("train_throughput")
    switched = _result("keras-mergan", "tensorflow", "float32", 0.6)
    switched["task_switch_s"] = dict.fromkeys(throughput.SWITCH_METHODS, 0.25)
    rows = [
        throughput._row(switched, None),
        throughput._row(_result("keras-mergan", "torch", "float32", 0.9), None),
        throughput._row(_result("plain", "torch", "float32", 0.8, "eager"), None),
    ]
    assert [r["implementation"] for r in rows] == ["keras-mergan"] * 2 + ["plain"]
    (ratio,) = throughput.peer_ratios(rows)
    assert ratio["fastest"]["backend"] == "tensorflow"
    assert ratio["fastest"]["ratio"] == pytest.approx(0.75)
    assert ratio["torch"]["ratio"] == pytest.approx(1.125)
    assert (ratio["fastest"]["met?"], ratio["torch"]["met?"]) == ("yes", "yes")
    meta = dict(
        architecture="dcgan32",
        iters=1,
        repeats=1,
        cpus=1,
        machine="m",
        load_before=0,
        load_after=0,
        flops_per_iteration=52e9,
    )
    text = throughput.markdown(rows, meta)
    assert "| plain (eager) | torch | native | float32 | 0.800 |" in text
    assert "| float32 | eager | 0.800 | tensorflow 0.600 | 0.75 (≤ 1.0) | yes " in text
    # Every backend row has the field; the switch table lists the measured ones.
    assert [r["task_switch_s"] is None for r in rows] == [False, True, True]
    assert "| tensorflow | auto (native) | float32 | 0.25 | 0.25 |" in text
    assert "XLA_FLAGS" not in text
    flagged = throughput.markdown(rows, {**meta, "xla_flags": "--xla_cpu_use_onednn"})
    assert "XLA_FLAGS: `--xla_cpu_use_onednn`." in flagged
