"""Data-parallel training on the engines Keras already has."""

import contextlib

from keras_mergan.backend import training_backend


def data_parallel(num_devices: int) -> contextlib.AbstractContextManager:
    """Build, compile and `fit` a model inside this to split each batch.

    JAX: `keras.distribution.DataParallel` over the first `num_devices`
    devices. TensorFlow: `tf.distribute.MirroredStrategy` over the first
    `num_devices` GPUs, or the CPU split into that many logical devices. The
    step computes what one device computes on the same global batch (batch
    norm statistics are synchronised, noise is drawn for the global batch).
    PyTorch has no Keras-level engine for it and raises `ValueError`.

    On CPU, JAX needs `XLA_FLAGS=--xla_force_host_platform_device_count=N`
    in the environment before it starts. Several hosts: start JAX with
    `jax.distributed.initialize()` (then every host's devices are in
    `jax.devices()`), or use TF's `MultiWorkerMirroredStrategy` with
    `TF_CONFIG` set on every worker.

    Example:

    >>> with data_parallel(2):  # doctest: +SKIP
    ...     gan = ConditionalWGANGP(generator, critic)
    ...     gan.compile()
    ...     gan.fit(stream, epochs=n_tasks, steps_per_epoch=iters, callbacks=[...])
    """
    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    if num_devices == 1:
        return contextlib.nullcontext()
    return training_backend().data_parallel(num_devices)


def training_devices() -> list[str]:
    """Names of the devices a training step runs on, as the backend names them.

    Inside `data_parallel(N)`: its N devices. Outside: the one device the
    backend places a model on (the first GPU if there is one, else the CPU).

    Example:

    >>> training_devices()  # doctest: +SKIP
    ['/job:localhost/replica:0/task:0/device:CPU:0']
    """
    return training_backend().training_devices()
