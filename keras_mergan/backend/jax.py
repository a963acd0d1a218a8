"""JAX: a pure `train_step(state, data)` run through `StatelessScope`s.

Keras' JAX trainer hands `train_step` the model's state as value lists and
expects the new lists back. The generic step is written statefully, so it
runs inside a `StatelessScope` mapping every state variable to its value;
`assign` calls inside it are recorded there and returned as the new state.
`minimize` differentiates through a nested scope in which the chosen
variables are bound to `jax.grad`'s arguments.
"""

import contextlib
import contextvars
import os

import jax
import jax.numpy as jnp
import keras
from keras import StatelessScope

from keras_mergan.backend.portable import inference_function as inference_function

JIT_COMPILE = True

# Compiling the step takes up to a minute on a CPU: a resumed, extended or
# repeated run finds the same programs in a persistent cache, in the user's
# cache folder unless JAX_COMPILATION_CACHE_DIR (or jax.config) names one.
if not jax.config.jax_compilation_cache_dir:
    jax.config.update(
        "jax_compilation_cache_dir",
        os.path.join(
            os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
            "keras_mergan",
            "jax_compilation",
        ),
    )

# The scope of the running step and the state variables it maps, kept here
# rather than asked of Keras (which has no public getter for the scope).
_step_state = contextvars.ContextVar("keras_mergan_step_state")


def _state_groups(model):
    return (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )


def run_train_step(model, step_fn, state, data):
    groups = _state_groups(model)
    mapping = [
        pair
        for variables, values in zip(groups, state, strict=True)
        for pair in zip(variables, values, strict=True)
    ]
    with StatelessScope(state_mapping=mapping) as scope:
        token = _step_state.set((scope, [v for variables in groups for v in variables]))
        try:
            logs = step_fn(data)
        finally:
            _step_state.reset(token)
    new_state = tuple(
        [scope.get_current_value(v) for v in variables] for variables in groups
    )
    return logs, new_state


def minimize(loss_fn, variables, optimizer):
    step_state = _step_state.get(None)
    if step_state is None:
        return _minimize_eagerly(loss_fn, variables, optimizer)
    outer, state_variables = step_state
    targets = {id(v) for v in variables}
    others = [v for v in state_variables if id(v) not in targets]
    other_values = [outer.get_current_value(v) for v in others]

    def pure_loss(values):
        mapping = list(zip(others, other_values, strict=True)) + list(
            zip(variables, values, strict=True)
        )
        with StatelessScope(state_mapping=mapping) as inner:
            loss, aux = loss_fn()
        return loss, (aux, [inner.get_current_value(v) for v in others])

    values = [outer.get_current_value(v) for v in variables]
    (loss, (aux, updated)), gradients = jax.value_and_grad(pure_loss, has_aux=True)(
        values
    )
    for variable, old, new in zip(others, other_values, updated, strict=True):
        if new is not old:
            variable.assign(new)
    optimizer.apply(gradients, variables)
    return loss, aux


def bfloat16_is_faster():
    # XLA's CPU backend converts bfloat16 to float32 around its kernels and
    # gains nothing from it; GPUs and TPUs have bfloat16 units.
    return jax.default_backend() != "cpu"


def prefer_matmul_convolutions():
    # XLA:CPU runs the dilated/reversed convolutions that strided and
    # transposed convolutions differentiate into in a slow generic loop.
    return jax.default_backend() == "cpu"


def leaky_relu(x, negative_slope):
    return jax.nn.leaky_relu(x, negative_slope)


def input_gradient(fn, x):
    return jax.grad(lambda x_: jnp.sum(fn(x_)))(x)


def _minimize_eagerly(loss_fn, variables, optimizer):
    # Outside a compiled step (e.g. in a callback) variables hold concrete
    # values: track the targets and the optimizer, then write them back.
    tracked = list(variables) + list(optimizer.variables)
    with StatelessScope(state_mapping=[(v, v.value) for v in tracked]) as scope:
        token = _step_state.set((scope, tracked))
        try:
            result = minimize(loss_fn, variables, optimizer)
        finally:
            _step_state.reset(token)
    for variable in tracked:
        variable.assign(scope.get_current_value(variable))
    return result


def gradient_function(loss_fn, variables):
    # Compiled once: op by op, each of EWC's hundreds of one-sample
    # gradients dispatched every operation of both networks on its own.
    def pure_loss(values, *inputs):
        with StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return loss_fn(*inputs)

    compiled = jax.jit(jax.grad(pure_loss))
    return lambda *inputs: compiled([v.value for v in variables], *inputs)


@contextlib.contextmanager
def data_parallel(num_devices):
    # Keras' JAX trainer shards each batch over the mesh and XLA's SPMD
    # partitioner keeps global-batch semantics (batch statistics, means), so
    # the step itself needs no change.
    devices = jax.devices()
    if num_devices > len(devices):
        raise ValueError(
            f"{num_devices} devices requested, JAX sees {len(devices)}: "
            f"{devices}. On CPU, XLA_FLAGS="
            f"--xla_force_host_platform_device_count={num_devices} adds virtual "
            "devices."
        )
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices[:num_devices])
    )
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def training_devices():
    distribution = keras.distribution.distribution()
    if distribution is not None:
        return [str(d) for d in distribution.device_mesh.devices.flat]
    return [str(jax.devices()[0])]


def replica():
    # One program for all devices: XLA partitions the global batch itself.
    return 0, 1


def replica_share(x, axis=0):
    # Without a layout, XLA's sharding propagation cannot split a batch that
    # the step reshaped (n_critic critic batches cut from one global batch,
    # noise drawn inside the step) and runs it whole on every device.
    distribution = keras.distribution.distribution()
    if distribution is None:
        return x
    axes = [None] * len(x.shape)
    axes[axis] = distribution.batch_dim_name
    return keras.distribution.distribute_tensor(
        x, keras.distribution.TensorLayout(axes, distribution.device_mesh)
    )


def all_gather(x):
    return x


def replica_mean(x):
    return x
