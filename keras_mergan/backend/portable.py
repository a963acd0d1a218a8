"""Backends keras_mergan does not train on (numpy, openvino): inference only.

Layers still build and run on them through the generic Keras forms; any
training function raises.
"""

import keras


def leaky_relu(x, negative_slope):
    return keras.ops.leaky_relu(x, negative_slope)


def prefer_matmul_convolutions():
    return False


def inference_function(model, inputs):
    # JAX compiles a program per row count, silently; torch runs eagerly.
    return model.predict_on_batch


def training_devices():
    # Keras creates every tensor on its default device.
    return [str(keras.ops.zeros(()).device)]


def __getattr__(name):
    if name.startswith("__"):
        # The import system probes modules for `__path__` and the like.
        raise AttributeError(name)
    raise ValueError(
        "keras_mergan trains on the tensorflow, jax and torch backends, "
        f"not {keras.config.backend()!r} ({name} is not available)"
    )
