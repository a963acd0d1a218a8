"""The only backend-specific code: differentiate, apply, and run a step.

Each submodule (`tensorflow`, `jax`, `torch`) provides:

- `minimize(loss_fn, variables, optimizer)`: calls `loss_fn()` (returning
  `(loss, aux)`), differentiates `loss` with respect to `variables`, applies
  `optimizer` and returns `(loss, aux)`.
- `input_gradient(fn, x)`: the gradient of `sum(fn(x))` with respect to `x`,
  itself differentiable (the gradient penalty's double backprop).
- `gradient_function(loss_fn, variables)`: a function of `inputs` that
  returns the gradients of the scalar `loss_fn(*inputs)` with respect to
  `variables`, for use outside a train step (e.g. EWC's Fisher), compiled
  once where the backend compiles.
- `run_train_step(model, step_fn, *args)`: adapts Keras' `train_step`
  calling convention for the backend to the stateful `step_fn(data)`.
- `JIT_COMPILE`: the `jit_compile` value that is fastest for a GAN step.
- `prefer_matmul_convolutions()`: whether strided and transposed
  convolutions should run as matmuls (`keras_mergan.layers.matmul_conv`)
  rather than as the backend's convolution ops.
- `leaky_relu(x, negative_slope)`: the leaky ReLU whose second derivative is
  cheapest for the gradient penalty's double backprop.
- `data_parallel(num_devices)`: a context manager inside which models are
  built and trained with each batch split over `num_devices` devices.
- `replica()`, `all_gather(x)`, `replica_mean(x)`: this replica's index and
  the replica count, the global batch, and a mean over replicas, for engines
  that run one step per replica (TF's MirroredStrategy); identities where
  one program spans every device.
- `bfloat16_is_faster()`: whether bfloat16 compute beats float32 on the
  device training runs on (`keras_mergan.backend.precision`'s `"auto"`).
- `inference_function(model, inputs)`: a function that runs
  `model(batch, training=False)` on batches shaped like `inputs` (an array
  or a list of arrays) but of any row count, and returns the output as
  numpy; `keras_mergan.inference.predict` calls it.
- `training_devices()`: names of the devices a step runs on (see
  `keras_mergan.backend.distribution.training_devices`).
- `replica_share(x, axis)`: the part of a batch-sized `x` (split along
  `axis`) that this replica computes: its contiguous share under
  MirroredStrategy, `x` laid out over the devices under JAX's
  `DataParallel`, all of `x` on one device.
"""

import functools
import importlib
import types

from keras_mergan.backend.cpu import BFLOAT16_CPU_FLAGS, cpu_has_bfloat16_units

SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")


# Resolved once, on first use, as Keras resolves its own backend:
# KERAS_BACKEND is read when keras is first imported and cannot change
# afterwards. Importing this package loads no framework, so that settings
# (`keras_mergan.backend.precision.PRECISIONS`) are readable without one.
@functools.cache
def training_backend() -> types.ModuleType:
    """The training-backend module for the active `KERAS_BACKEND`.

    On a backend keras_mergan does not train on, a module whose layer
    functions fall back to generic Keras ops and whose training functions
    raise `ValueError`.

    Example:

    >>> import keras
    >>> training_backend().__name__ == "keras_mergan.backend." + keras.config.backend()
    True
    """
    import keras

    name = keras.config.backend()
    return importlib.import_module(
        f"keras_mergan.backend.{name if name in SUPPORTED_BACKENDS else 'portable'}"
    )


__all__ = [
    "BFLOAT16_CPU_FLAGS",
    "SUPPORTED_BACKENDS",
    "cpu_has_bfloat16_units",
    "training_backend",
]
