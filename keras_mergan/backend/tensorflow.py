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


def run_train_step(model, step_fn, data):
    return step_fn(data)
