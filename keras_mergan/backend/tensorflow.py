"""TensorFlow: nested `GradientTape`s inside Keras' `tf.function`."""

import contextlib
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_mergan.backend.cpu import cpu_has_bfloat16_units

# model -> {input signature: its graph}; a model's graphs go with it.
_inference_graphs = weakref.WeakKeyDictionary()

# XLA on CPU compiles the transposed convolutions of the penalty's double
# backprop into code several times slower than TF's own kernels.
JIT_COMPILE = False


def minimize(loss_fn, variables, optimizer):
    with tf.GradientTape() as tape:
        loss, aux = loss_fn()
        # The optimizer sums gradients over replicas: scale to the mean.
        replica_loss = loss / replica()[1]
    # A variable the loss does not reach (the critic's class head in the
    # unconditional methods) gets a zero gradient, as under JAX and torch.
    gradients = [
        tf.zeros(v.shape, v.dtype) if g is None else g
        for g, v in zip(tape.gradient(replica_loss, variables), variables, strict=True)
    ]
    optimizer.apply(gradients, variables)
    return loss, aux


def inference_function(model, inputs):
    # Keras' predict traces a graph for each model, and again for a second
    # row count before it relaxes the shapes: scoring a run calls a new model
    # per task a few times each, and TensorFlow warns of excessive retracing.
    # Here each model is traced once, ahead of any call (so no call counts as
    # retracing), for batches like `inputs` of any row count.
    listed = isinstance(inputs, (list, tuple))
    signature = tuple(
        tf.TensorSpec((None, *x.shape[1:]), x.dtype)
        for x in (inputs if listed else [inputs])
    )
    graphs = _inference_graphs.setdefault(model, {})
    if signature not in graphs:
        # A weak reference: the cached graph must not keep its model alive.
        model_ref = weakref.ref(model)

        def call(*tensors):
            return model_ref()(list(tensors) if listed else tensors[0], training=False)

        graphs[signature] = tf.function(
            call, autograph=False, jit_compile=model.jit_compile
        ).get_concrete_function(*signature)
    graph = graphs[signature]

    def run(batch):
        return keras.tree.map_structure(
            np.asarray, graph(*(batch if listed else [batch]))
        )

    return run


def bfloat16_is_faster():
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        # bfloat16 tensor cores arrived with compute capability 8.0 (Ampere).
        capability = tf.config.experimental.get_device_details(gpus[0]).get(
            "compute_capability", (0, 0)
        )
        return tuple(capability) >= (8, 0)
    # oneDNN runs bfloat16 matmuls and convolutions on these units.
    return cpu_has_bfloat16_units()


def prefer_matmul_convolutions():
    # TF's own (oneDNN) kernels beat the matmul forms, gradients included.
    return False


def leaky_relu(x, negative_slope):
    # The gradient of LeakyReluGrad w.r.t. the features is a zeros tensor
    # that the penalty's double backprop then pushes back through every
    # critic layer; `where` has no such term. Same values and derivative.
    return tf.where(x > 0, x, x * negative_slope)


def input_gradient(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(fn(x))
    return tape.gradient(total, x)


def gradient_function(loss_fn, variables):
    # One graph for every call (EWC's Fisher takes hundreds of one-sample
    # gradients, each a few hundred eager operations otherwise).
    @tf.function(autograph=False, reduce_retracing=True)
    def compiled(*inputs):
        def tape():
            return _tape_gradients(lambda: loss_fn(*inputs), variables)

        strategy = tf.distribute.get_strategy()
        if (
            tf.distribute.in_cross_replica_context()
            and strategy.num_replicas_in_sync > 1
        ):
            # Outside a train step (EWC's Fisher at a task boundary) mirrored
            # variables can be read only through a replica: every replica
            # computes the same full-batch gradients, and the first one's
            # are kept.
            per_replica = strategy.run(tape)
            return [strategy.experimental_local_results(g)[0] for g in per_replica]
        return tape()

    return compiled


def _tape_gradients(loss_fn, variables):
    with tf.GradientTape() as tape:
        loss = loss_fn()
    return tape.gradient(loss, variables)


def run_train_step(model, step_fn, data):
    return step_fn(data)


def replica():
    """(index of this replica, number of replicas) of a `tf.distribute` step."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def all_gather(x):
    """The global batch from every replica's share, in the input's order."""
    if replica()[1] == 1:
        return x
    gathered = tf.distribute.get_replica_context().all_gather(x, axis=0)
    return tf.reshape(gathered, [-1, *x.shape[1:]])  # all_gather drops the shape


def replica_share(x, axis=0):
    """This replica's contiguous share of `x` along `axis`; all of it on one."""
    index, count = replica()
    if count == 1:
        return x
    shape = tuple(x.shape)
    return tf.gather(
        tf.reshape(x, shape[:axis] + (count, -1) + shape[axis + 1 :]), index, axis=axis
    )


def replica_mean(x):
    """The mean of `x` over replicas (synchronised batch statistics)."""
    if replica()[1] == 1:
        return x
    return tf.distribute.get_replica_context().all_reduce("MEAN", x)


@contextlib.contextmanager
def data_parallel(num_devices):
    # MirroredStrategy splits each global batch into contiguous shares; the
    # step gathers them back (`all_gather`) so that every replica computes its
    # share of exactly what one device would.
    kind = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    if kind == "CPU":
        _split_cpu(num_devices)
    devices = [d.name for d in tf.config.list_logical_devices(kind)]
    if num_devices > len(devices):
        raise ValueError(
            f"{num_devices} devices requested, TensorFlow sees {len(devices)}: "
            f"{devices}"
        )
    with tf.distribute.MirroredStrategy(devices[:num_devices]).scope():
        yield


def training_devices():
    if tf.distribute.has_strategy():
        return list(tf.distribute.get_strategy().extended.worker_devices)
    kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    return [tf.config.list_logical_devices(kind)[0].name]


def _split_cpu(count):
    # Logical devices can only be configured before TensorFlow starts.
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or [None]) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError as error:
        raise ValueError(
            f"cannot split the CPU into {count} devices once TensorFlow has "
            "started: enter data_parallel() before building any model"
        ) from error
