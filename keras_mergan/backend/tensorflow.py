"""TensorFlow: nested `GradientTape`s inside Keras' `tf.function`."""

import tensorflow as tf

# XLA on CPU compiles the transposed convolutions of the penalty's double
# backprop into code several times slower than TF's own kernels.
JIT_COMPILE = False


def minimize(loss_fn, variables, optimizer):
    with tf.GradientTape() as tape:
        loss, aux = loss_fn()
    gradients = tape.gradient(loss, variables)
    optimizer.apply(gradients, variables)
    return loss, aux


def input_gradient(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(fn(x))
    return tape.gradient(total, x)


def run_train_step(model, step_fn, data):
    return step_fn(data)
