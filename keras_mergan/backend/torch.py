"""PyTorch: eager autograd; `torch.compile` would break the double backward."""

import torch

from keras_mergan.backend.cpu import cpu_has_bfloat16_units
from keras_mergan.backend.portable import inference_function as inference_function

# Keras places every tensor on its default device, as on any backend.
from keras_mergan.backend.portable import training_devices as training_devices

JIT_COMPILE = False


def minimize(loss_fn, variables, optimizer):
    loss, aux = loss_fn()
    # A variable the loss does not reach (the critic's class head in the
    # unconditional methods) gets a zero gradient, as under JAX.
    gradients = torch.autograd.grad(
        loss, [v.value for v in variables], allow_unused=True, materialize_grads=True
    )
    with torch.no_grad():
        optimizer.apply(list(gradients), variables)
    return loss.detach(), {name: value.detach() for name, value in aux.items()}


def bfloat16_is_faster():
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    # oneDNN runs bfloat16 matmuls and convolutions on these units.
    return cpu_has_bfloat16_units()


def prefer_matmul_convolutions():
    # torch's (oneDNN) kernels beat the matmul forms, gradients included.
    return False


def leaky_relu(x, negative_slope):
    return torch.nn.functional.leaky_relu(x, negative_slope)


def input_gradient(fn, x):
    x = x.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    return gradient


def gradient_function(loss_fn, variables):
    def gradients(*inputs):
        loss = loss_fn(*inputs)
        values = [v.value for v in variables]
        return [g.detach() for g in torch.autograd.grad(loss, values)]

    return gradients


def run_train_step(model, step_fn, data):
    return step_fn(data)


def replica():
    return 0, 1


def all_gather(x):
    return x


def replica_share(x, axis=0):
    return x


def replica_mean(x):
    return x


def data_parallel(num_devices):
    raise ValueError(
        "data-parallel training runs on Keras' own engines: use the jax "
        "(keras.distribution.DataParallel) or tensorflow (MirroredStrategy) backend"
    )
