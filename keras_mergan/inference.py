"""A model's outputs for many inputs, in batches, without retracing.

Example:

>>> import keras
>>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
>>> predict(model, np.zeros((5, 3), "float32"), batch_size=2).shape
(5, 2)
"""

import numpy as np

from keras_mergan.backend import training_backend

__all__ = ["predict"]


def predict(model, inputs, batch_size: int = 256) -> np.ndarray:
    """`model(inputs, training=False)` as numpy, `batch_size` rows at a time.

    `inputs` is an array or a list of arrays (a generator's `[z, labels]`)
    with as many rows each; `model` has one output. Unlike `model.predict`,
    a model is traced once under TensorFlow, whatever the row counts of the
    calls (`keras_mergan.backend`'s `inference_function`).
    """
    listed = isinstance(inputs, (list, tuple))
    arrays = [np.asarray(x) for x in (inputs if listed else [inputs])]
    run = training_backend().inference_function(model, arrays if listed else arrays[0])
    rows = len(arrays[0])
    outputs = []
    # One call at least: no rows give an empty output of the right shape.
    for start in range(0, max(rows, 1), batch_size):
        batch = [x[start : start + batch_size] for x in arrays]
        outputs.append(run(batch if listed else batch[0]))
    return np.concatenate(outputs)
