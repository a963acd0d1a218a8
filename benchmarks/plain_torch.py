"""The DCGAN-32 conditional WGAN-GP + AC-GAN step written in plain PyTorch.

What a PyTorch user would write instead of the package: the same networks
(conditional batch normalisation in the generator, the AC-GAN class head on
the critic), the same losses, ``n_critic`` critic updates per generator
update and the same batch, channels-first, with ``torch.nn`` layers and
``torch.optim.Adam``. ``benchmarks/train_throughput.py`` times it beside the
package's backends (eager and ``torch.compile``, float32 and bfloat16
autocast), and ``tests/test_plain_torch.py`` checks that it computes the
package's losses on the package's weights (``load_keras_weights``).

The layers compute what the package's layers compute on the torch backend,
where their ``auto`` implementation is the backend's own convolution:

- the critic's 5x5 stride-2 "same" convolutions pad TensorFlow's way (one
  pixel before, two after), so ``F.pad`` + ``nn.Conv2d`` without padding;
- the generator's 5x5 stride-2 "same" transposed convolutions put one more
  output row and column before the input than torch's symmetric padding
  does: ``nn.ConvTranspose2d(padding=1)``, then the last row and column
  dropped;
- ``Flatten`` and ``Reshape`` order features (channel, row, column) rather
  than Keras' (row, column, channel): ``load_keras_weights`` permutes the
  dense kernels to match.

In bfloat16 (``torch.autocast``) the batch-norm statistics, the ``tanh``
output, the critic's two heads and the losses stay float32, as under the
package's ``mixed_bfloat16`` policy.

``torch.compile`` cannot differentiate twice through the graphs it compiles
(AOTAutograd has no double backward), which the gradient penalty needs: with
``compiled=True`` the penalty's input gradient is taken by ``torch.func.grad``
inside the compiled loss, so that the gradient is part of the compiled
forward graph and the weight gradients a single backward of it. Eager steps
use ``torch.autograd.grad(create_graph=True)``, the usual WGAN-GP code.

Example::

    step = PlainWGANGP(Generator(10), Critic(10))
    losses = step.train_step(images, labels)  # images (5 * 64, 1, 32, 32)
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

LATENT_DIM, WIDTH, KERNEL = 128, 32, 5
# The package's defaults (keras_mergan.methods): WGAN-GP's and AC-GAN's.
N_CRITIC, LAMBDA_GP, LAMBDA_CLS = 5, 10.0, 1.0
LEARNING_RATE, BETAS, ADAM_EPSILON = 1e-4, (0.0, 0.9), 1e-7  # Keras' Adam epsilon


class ConditionalBatchNorm2d(nn.Module):
    """Batch normalisation with one (gamma, beta) pair per class.

    Batch statistics while training; each class present in the batch moves
    its own running statistics (momentum 0.99, Keras' convention), used per
    sample in evaluation mode.
    """

    def __init__(self, num_classes: int, channels: int, momentum: float = 0.99):
        super().__init__()
        self.momentum, self.eps = momentum, 1e-5
        self.gamma = nn.Parameter(torch.ones(num_classes, channels))
        self.beta = nn.Parameter(torch.zeros(num_classes, channels))
        self.register_buffer("running_mean", torch.zeros(num_classes, channels))
        self.register_buffer("running_var", torch.ones(num_classes, channels))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dtype, x = x.dtype, x.float()  # float32 statistics under autocast too
        if self.training:
            var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
            with torch.no_grad():
                present = F.one_hot(labels, self.gamma.shape[0]).amax(0)
                step = (1 - self.momentum) * present.unsqueeze(1).float()
                self.running_mean += step * (mean - self.running_mean)
                self.running_var += step * (var - self.running_var)
            mean, var = mean[None, :, None, None], var[None, :, None, None]
        else:
            mean = self.running_mean[labels][:, :, None, None]
            var = self.running_var[labels][:, :, None, None]
        gamma = self.gamma[labels][:, :, None, None]
        beta = self.beta[labels][:, :, None, None]
        return ((x - mean) * torch.rsqrt(var + self.eps) * gamma + beta).to(dtype)


class Generator(nn.Module):
    """(z, label) -> 32x32 image in [-1, 1]: Linear, 3 x (CBN, ReLU, deconv)."""

    def __init__(
        self,
        num_classes: int,
        channels: int = 1,
        latent_dim: int = LATENT_DIM,
        width: int = WIDTH,
    ):
        super().__init__()
        self.width = width
        self.dense = nn.Linear(latent_dim, 4 * 4 * 4 * width)
        filters = (4 * width, 2 * width, width, channels)
        self.norms = nn.ModuleList(
            ConditionalBatchNorm2d(num_classes, f) for f in filters[:-1]
        )
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(f_in, f_out, KERNEL, stride=2, padding=1)
            for f_in, f_out in zip(filters[:-1], filters[1:], strict=True)
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.dense(z).view(-1, 4 * self.width, 4, 4)
        for norm, deconv in zip(self.norms, self.deconvs, strict=True):
            # Keras' "same" output starts one row/column after torch's full
            # output and ends two before it: padding=1, then the last one off.
            x = deconv(F.relu(norm(x, labels)))[:, :, :-1, :-1]
        return torch.tanh(x.float())


class Critic(nn.Module):
    """image -> (WGAN score, class logits): 3 x (conv, leaky ReLU), two heads."""

    def __init__(
        self,
        num_classes: int,
        channels: int = 1,
        image_size: int = 32,
        width: int = WIDTH,
    ):
        super().__init__()
        filters = (channels, width, 2 * width, 4 * width)
        self.convs = nn.ModuleList(
            nn.Conv2d(f_in, f_out, KERNEL, stride=2)
            for f_in, f_out in zip(filters[:-1], filters[1:], strict=True)
        )
        features = 4 * width * (image_size // 8) ** 2
        self.score = nn.Linear(features, 1)
        self.logits = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv in self.convs:
            # TensorFlow's "same" for 5x5 stride 2 on even sizes: 1 before, 2 after.
            x = F.leaky_relu(conv(F.pad(x, (1, 2, 1, 2))), 0.2)
        x = x.flatten(1)
        with _float32(x):
            x = x.float()
            return self.score(x), self.logits(x)


def _float32(x: torch.Tensor):
    """Autocast off (float32 heads) where it is on."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def gradient_penalty(gradients: torch.Tensor) -> torch.Tensor:
    """E[(||g||_2 - 1)^2] with the package's 1e-12 inside the square root."""
    norms = torch.sqrt(gradients.float().flatten(1).square().sum(1) + 1e-12)
    return (norms - 1).square().mean()


def _score_gradient_autograd(critic: Critic, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(critic(x)[0].sum(), x, create_graph=True)
    return gradient


def _score_gradient_func(critic: Critic, x: torch.Tensor) -> torch.Tensor:
    params = dict(critic.named_parameters())

    def score_sum(x):
        return torch.func.functional_call(critic, params, (x,))[0].sum()

    return torch.func.grad(score_sum)(x)


def critic_loss(
    generator: Generator,
    critic: Critic,
    real: torch.Tensor,
    labels: torch.Tensor,
    z: torch.Tensor,
    alpha: torch.Tensor,
    functional_penalty: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W + lambda_gp * GP + lambda_cls * CE(real), GP) of one critic batch."""
    with torch.no_grad():
        fake = generator(z, labels)
    real_scores, real_logits = critic(real)
    fake_scores, _ = critic(fake)
    a = alpha.view(-1, 1, 1, 1)
    score_gradient = (
        _score_gradient_func if functional_penalty else _score_gradient_autograd
    )
    penalty = gradient_penalty(score_gradient(critic, a * real + (1 - a) * fake))
    loss = fake_scores.mean() - real_scores.mean() + LAMBDA_GP * penalty
    return loss + LAMBDA_CLS * F.cross_entropy(real_logits, labels), penalty


def generator_loss(
    generator: Generator, critic: Critic, labels: torch.Tensor, z: torch.Tensor
) -> torch.Tensor:
    """-E[D(G(z, y))] + lambda_cls * CE(aux(G(z, y)), y)."""
    scores, logits = critic(generator(z, labels))
    return -scores.mean() + LAMBDA_CLS * F.cross_entropy(logits, labels)


class PlainWGANGP:
    """One training iteration: `n_critic` critic updates, then one generator update.

    Each critic update takes its own share of the `n_critic * batch` images
    and labels, as `keras_mergan.methods.WassersteinGAN` does; the generator
    update draws images of the first share's labels. Adam (lr 1e-4, betas
    (0, 0.9)) per network. `compiled` runs both losses through
    `torch.compile` (the backward passes and Adam stay eager); `precision`
    is "float32" or "bfloat16" (autocast).
    """

    def __init__(
        self,
        generator: Generator,
        critic: Critic,
        n_critic: int = N_CRITIC,
        compiled: bool = False,
        precision: str = "float32",
    ):
        self.generator, self.critic, self.n_critic = generator, critic, n_critic
        self.device = next(generator.parameters()).device
        self.latent_dim = generator.dense.in_features
        self.optimizers = [
            torch.optim.Adam(
                net.parameters(), lr=LEARNING_RATE, betas=BETAS, eps=ADAM_EPSILON
            )
            for net in (generator, critic)
        ]
        self.autocast = torch.autocast(
            self.device.type, torch.bfloat16, enabled=precision == "bfloat16"
        )
        self.critic_loss, self.generator_loss = critic_loss, generator_loss
        self.functional_penalty = compiled
        if compiled:
            self.critic_loss = torch.compile(critic_loss)
            self.generator_loss = torch.compile(generator_loss)

    def _update(self, optimizer, loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        """One iteration on `n_critic` batches; the last losses, by name."""
        generator_optimizer, critic_optimizer = self.optimizers
        images = images.view(self.n_critic, -1, *images.shape[1:])
        labels = labels.view(self.n_critic, -1)
        batch = labels.shape[1]
        self.critic.requires_grad_(True)
        for real, y in zip(images, labels, strict=True):
            z = torch.randn(batch, self.latent_dim, device=self.device)
            alpha = torch.rand(batch, device=self.device)
            with self.autocast:
                loss, penalty = self.critic_loss(
                    self.generator,
                    self.critic,
                    real,
                    y,
                    z,
                    alpha,
                    functional_penalty=self.functional_penalty,
                )
            self._update(critic_optimizer, loss)
        # The generator's update needs no gradient of the critic's weights.
        self.critic.requires_grad_(False)
        z = torch.randn(batch, self.latent_dim, device=self.device)
        with self.autocast:
            g_loss = self.generator_loss(self.generator, self.critic, labels[0], z)
        self._update(generator_optimizer, g_loss)
        # Tensors, not floats: reading one waits for the device.
        return {
            "critic_loss": loss.detach(),
            "gradient_penalty": penalty.detach(),
            "generator_loss": g_loss.detach(),
        }


def _dense_from_keras(linear: nn.Linear, layer, shape_hw_c=None, rows=False):
    """Copies a Keras Dense layer into `linear`.

    `shape_hw_c` = (h, w, c): the Dense's inputs (`rows=True`) or outputs come
    from / go to a Keras (h, w, c) layout that torch orders (c, h, w).
    """
    kernel, bias = (torch.as_tensor(v) for v in layer.get_weights())
    if shape_hw_c is not None:
        h, w, c = shape_hw_c
        if rows:
            kernel = (
                kernel.reshape(h, w, c, -1).permute(2, 0, 1, 3).reshape(h * w * c, -1)
            )
        else:
            kernel = (
                kernel.reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, h * w * c)
            )
            bias = bias.reshape(h, w, c).permute(2, 0, 1).reshape(-1)
    linear.weight.copy_(kernel.T)
    linear.bias.copy_(bias)


def _conv_from_keras(conv, layer):
    """Keras (kh, kw, a, b) kernels -> torch (b, a, kh, kw), for both conv kinds."""
    kernel, bias = (torch.as_tensor(v) for v in layer.get_weights())
    conv.weight.copy_(kernel.permute(3, 2, 0, 1))
    conv.bias.copy_(bias)


def _layers_by_role(model) -> dict:
    """`model`'s layers by name without the model's prefix ("dense", "cbn0")."""
    return {layer.name.removeprefix(f"{model.name}_"): layer for layer in model.layers}


@torch.no_grad()
def load_keras_weights(
    generator: Generator, critic: Critic, keras_generator, keras_critic
):
    """Copies the weights of `build_dcgan_generator` / `build_dcgan_critic` models.

    Keras' Conv2D kernels are (kh, kw, in, out) and Conv2DTranspose kernels
    (kh, kw, out, in); torch's are (out, in, kh, kw) and (in, out, kh, kw):
    the same permutation for both. Dense kernels are transposed, and those
    next to a Reshape / Flatten permuted from (h, w, c) to (c, h, w).
    """
    g_layers = _layers_by_role(keras_generator)
    width = generator.width
    _dense_from_keras(generator.dense, g_layers["dense"], (4, 4, 4 * width))
    for i, (norm, deconv) in enumerate(
        zip(generator.norms, generator.deconvs, strict=True)
    ):
        tables = (norm.gamma, norm.beta, norm.running_mean, norm.running_var)
        for table, value in zip(tables, g_layers[f"cbn{i}"].get_weights(), strict=True):
            table.copy_(torch.as_tensor(value))
        _conv_from_keras(deconv, g_layers[f"deconv{i}"])
    c_layers = _layers_by_role(keras_critic)
    for i, conv in enumerate(critic.convs):
        _conv_from_keras(conv, c_layers[f"conv{i}"])
    _, h, w, c = c_layers["flatten"].input.shape
    _dense_from_keras(critic.score, c_layers["wgan_head"], (h, w, c), rows=True)
    _dense_from_keras(critic.logits, c_layers["acgan_head"], (h, w, c), rows=True)
