"""Data-parallel training matches one device on the same global batch.

Each case runs in a subprocess: virtual CPU devices must be configured
before JAX or TensorFlow starts, and TF's collectives of two data-parallel
models in one process can collide.
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

from keras_mergan.backend.distribution import data_parallel

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import json, sys
import keras, numpy as np
sys.path.insert(0, {tests!r})
from helpers import random_images, tiny_gan
from test_methods import method_options
from keras_mergan.backend.distribution import data_parallel
from keras_mergan.methods import METHODS
from keras_mergan.data.tasks import TaskSequence, TaskStream

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

with data_parallel(2):
    parallel = train({name!r})
single = train({name!r})
print("RESULT " + json.dumps({{
    "weights": max(
        float(np.abs(a - b).max()) for a, b in zip(single[0], parallel[0])
    ),
    "images": float(np.abs(single[1] - parallel[1]).max()),
    "losses": [single[2]["critic_loss"], parallel[2]["critic_loss"]],
}}))
"""

# Under JAX, where every case compiles its steps for tens of seconds on a
# CPU, each family's most composed step (it holds the base step's terms).
if keras.config.backend() == "jax":
    CASES = ["jtr+ra", "ltgan"]


@pytest.mark.skipif(
    keras.config.backend() == "torch", reason="no Keras data-parallel engine"
)
@pytest.mark.parametrize("name", CASES)
def test_two_devices_match_one_device(name):
    env = dict(
        os.environ,
        XLA_FLAGS=" ".join(
            [
                os.environ.get("XLA_FLAGS", ""),
                "--xla_force_host_platform_device_count=2",
            ]
        ).strip(),
        PYTHONPATH=str(TESTS.parent),
    )
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(tests=str(TESTS), name=name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
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
