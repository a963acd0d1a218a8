"""Data-parallel training matches one device on the same global batch.

The cases run in one subprocess: virtual CPU devices must be configured
before JAX or TensorFlow starts, and starting it once per case would cost
more than the cases.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from test_methods import CASES

from keras_mergan.distribution import data_parallel

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import json, sys
import keras, numpy as np
sys.path.insert(0, {tests!r})
from conftest import random_images, tiny_gan
from test_methods import method_options
from test_methods import CASES

from keras_mergan.distribution import data_parallel
from keras_mergan.methods import METHODS
from keras_mergan.tasks import TaskSequence, TaskStream

# The second task replays (mixes, aligns, anchors) in every method.
TASKS = [[0, 1], [2]]

def train(name):
    keras.utils.set_random_seed(0)
    gan = tiny_gan(METHODS[name].model_class, **method_options(name))
    stream = TaskStream(
        random_images(80), np.arange(80) % 3, TASKS, 1, 8, gan.n_critic
    )
    history = gan.fit(stream, epochs=len(TASKS), steps_per_epoch=1,
                      callbacks=[TaskSequence(stream)], verbose=0)
    z = np.random.default_rng(1).standard_normal((6, 16)).astype("float32")
    images = gan.generate(z, np.array([0, 1, 2, 0, 1, 2]))
    weights = [keras.ops.convert_to_numpy(v) for v in gan.weights]
    return weights, images, history.history

for name in {names!r}:
    with data_parallel(2):
        parallel = train(name)
    single = train(name)
    print("RESULT " + json.dumps({{
        "name": name,
        "weights": max(
            float(np.abs(a - b).max()) for a, b in zip(single[0], parallel[0])
        ),
        "images": float(np.abs(single[1] - parallel[1]).max()),
        "losses": [single[2]["critic_loss"], parallel[2]["critic_loss"]],
    }}), flush=True)
"""

# Under JAX, where every case compiles its steps for tens of seconds on a
# CPU, the base step and each family's most composed one.
if keras.config.backend() == "jax":
    CASES = ["jtr+ra", "ltgan", "sft"]


@pytest.fixture(scope="module")
def parity():
    """Each case's differences between 2 devices and 1, by method name."""
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        PYTHONPATH=str(TESTS.parent),
    )
    script = SCRIPT.format(tests=str(TESTS), names=CASES)
    run = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    results = {}
    for line in run.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            results[result["name"]] = result
    return results, run.stderr[-3000:]


@pytest.mark.skipif(
    keras.config.backend() == "torch", reason="no Keras data-parallel engine"
)
@pytest.mark.parametrize("name", CASES)
def test_two_devices_match_one_device(parity, name):
    results, stderr = parity
    assert name in results, stderr
    result = results[name]
    assert result["weights"] < 1e-3
    assert result["images"] < 1e-3
    np.testing.assert_allclose(*result["losses"], rtol=1e-4)


def test_one_device_is_a_no_op_and_bad_counts_are_refused():
    with data_parallel(1):
        pass
    with pytest.raises(ValueError, match="num_devices"):
        data_parallel(0)


@pytest.mark.skipif(keras.config.backend() != "torch", reason="torch only")
def test_torch_says_which_backends_can():
    with pytest.raises(ValueError, match="jax"):
        data_parallel(2).__enter__()
