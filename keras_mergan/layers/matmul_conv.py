"""Strided 2-D convolutions written as one matrix multiplication each.

Why: XLA on CPU (JAX, TF with `jit_compile`) hands plain convolutions to a
fast library, but a strided convolution's input gradient and a transposed
convolution become convolutions with a dilated (or reversed) operand, which
it runs in a slow generic loop; the gradient penalty's double backprop
multiplies them (a DCGAN-32 WGAN-GP step spent ~90% of its time there).
Written as slicing + reshapes + one `matmul`, every derivative, up to the
second order, is again slicing/padding + `matmul`, which XLA runs fast.

- Transposed convolution = sub-pixel convolution: a stride-1 convolution
  producing `sy * sx * filters` channels, one group per output phase
  (output pixel modulo the stride), followed by depth-to-space (pixel
  shuffle). Its kernel is a zero-padded, reshaped and flipped view of the
  `Conv2DTranspose` kernel; for 5x5 stride 2 the 3x3 phase kernels hold 36
  taps for 25 weights (1.44x the multiply-adds, still far faster under XLA).
- Strided convolution = space-to-depth of the input, then one patch matrix
  whose columns are, in `(ky, kx, channel)` order, exactly the taps of the
  kernel: no zero taps, and the `Conv2D` kernel is used as is.

The layers keep the variables of `keras.layers.Conv2DTranspose` /
`keras.layers.Conv2D` (shapes, names, initialisers, config), so weights are
interchangeable with those layers; only the order of the floating-point sums
differs (about 1e-6 relative).
"""

import math

import keras
from keras import ops

from keras_mergan.backend import training_backend

IMPLEMENTATIONS = ("auto", "matmul", "native")


def _check_implementation(implementation: str) -> str:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}"
        )
    return implementation


def _use_matmul(layer, input_shape) -> bool:
    if layer.implementation == "native":
        return False
    if (
        layer.implementation == "auto"
        and not training_backend().prefer_matmul_convolutions()
    ):
        return False
    spatial = tuple(input_shape[1:-1])
    # Configurations the matmul forms do not cover run natively.
    return (
        layer.data_format == "channels_last"
        and len(spatial) == 2
        and all(d is not None for d in spatial)
        and tuple(layer.dilation_rate) == (1, 1)
        and getattr(layer, "groups", 1) == 1
        and getattr(layer, "output_padding", None) is None
    )


def _pad_or_crop(x, axis: int, before: int, after: int):
    """Pads `axis` with zeros (positive amounts) or crops it (negative)."""
    if before < 0 or after < 0:
        index = [slice(None)] * len(x.shape)
        index[axis] = slice(max(-before, 0), x.shape[axis] - max(-after, 0))
        x = x[tuple(index)]
    if before > 0 or after > 0:
        widths = [[0, 0] for _ in x.shape]
        widths[axis] = [max(before, 0), max(after, 0)]
        x = ops.pad(x, widths)
    return x


def _patch_matmul(x, kernel_matrix, taps_h: int, taps_w: int, out_h: int, out_w: int):
    """Stride-1 "valid" convolution of NHWC `x` as patches @ kernel matrix.

    `kernel_matrix` rows are ordered `(ty, tx, channel)`.
    """
    channels = x.shape[-1]
    patches = ops.concatenate(
        [
            x[:, ty : ty + out_h, tx : tx + out_w, :]
            for ty in range(taps_h)
            for tx in range(taps_w)
        ],
        axis=-1,
    )
    patches = ops.reshape(patches, (-1, taps_h * taps_w * channels))
    y = ops.matmul(patches, kernel_matrix)
    return ops.reshape(y, (-1, out_h, out_w, kernel_matrix.shape[-1]))


def _transpose_geometry(size: int, kernel: int, stride: int, padding: str):
    """(P, out_size, d0, taps) of one spatial axis of a transposed convolution.

    Output o receives x[i] * w[k] for o = stride * i + k - P. The left/right
    pads mirror Keras' own conversion of `padding` (`output_padding=None`),
    so the output size and alignment match every backend's Conv2DTranspose.
    """
    if padding == "valid":
        left = kernel - 1
        right = kernel - 1 + max(kernel, stride) - kernel
    else:
        pad_len = stride + kernel - 2
        left = min(pad_len // 2 + pad_len % 2, kernel - 1)
        right = pad_len - left
    p = kernel - 1 - left
    out_size = (size - 1) * stride + left + right - kernel + 2
    # Phase r of output o = stride * m + r reads x[m + d] through
    # k = r + P - stride * d in [0, kernel): over all phases d spans [d0, d1].
    d0 = -((kernel - 1 - p) // stride)
    d1 = (stride - 1 + p) // stride
    return p, out_size, d0, d1 - d0 + 1


def _conv_geometry(size: int, kernel: int, stride: int, padding: str):
    """(P, out_size) of one spatial axis of a strided convolution (TF's rule)."""
    if padding == "valid":
        return 0, (size - kernel) // stride + 1
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + kernel - size, 0)
    return total // 2, out_size


def conv_transpose_matmul(inputs, kernel, strides: tuple[int, int], padding: str):
    """`ops.conv_transpose(inputs, kernel, strides, padding)` as one matmul.

    Sub-pixel form. `inputs` is NHWC with a static spatial size, `kernel` has
    Keras' `(kh, kw, filters, in_channels)` layout; no output padding, no
    dilation.
    """
    _, height, width, in_channels = inputs.shape
    kh, kw, filters, _ = kernel.shape
    sy, sx = strides
    py, out_h, d0y, ty = _transpose_geometry(height, kh, sy, padding)
    px, out_w, d0x, tx = _transpose_geometry(width, kw, sx, padding)
    # Tap t of phase r holds w[r + P - s * (d0 + t)] = w[c0 + s * (T-1-t) + r]
    # with c0 = P - s * (d0 + T - 1): pad the kernel to [c0, c0 + s * T),
    # split each axis into (T, s) and flip the tap axis.
    c0y, c0x = py - sy * (d0y + ty - 1), px - sx * (d0x + tx - 1)
    sub = _pad_or_crop(kernel, 0, -c0y, c0y + sy * ty - kh)
    sub = _pad_or_crop(sub, 1, -c0x, c0x + sx * tx - kw)
    sub = ops.reshape(sub, (ty, sy, tx, sx, filters, in_channels))
    sub = ops.flip(sub, axis=(0, 2))
    sub = ops.transpose(sub, (0, 2, 5, 1, 3, 4))
    sub = ops.reshape(sub, (ty * tx * in_channels, sy * sx * filters))
    # Output cell m of every phase reads input rows m + d0 .. m + d0 + T - 1.
    rows, cols = -(-out_h // sy), -(-out_w // sx)
    x = _pad_or_crop(inputs, 1, -d0y, rows + d0y + ty - 1 - height)
    x = _pad_or_crop(x, 2, -d0x, cols + d0x + tx - 1 - width)
    y = _patch_matmul(x, sub, ty, tx, rows, cols)
    # Depth-to-space: channel (ry, rx, f) of cell (m, n) -> pixel (s*m+ry, s*n+rx).
    y = ops.reshape(y, (-1, rows, cols, sy, sx, filters))
    y = ops.transpose(y, (0, 1, 3, 2, 4, 5))
    y = ops.reshape(y, (-1, rows * sy, cols * sx, filters))
    if rows * sy != out_h or cols * sx != out_w:
        y = y[:, :out_h, :out_w, :]
    return y


def conv_matmul(inputs, kernel, strides: tuple[int, int], padding: str):
    """`ops.conv(inputs, kernel, strides, padding)` as one matmul.

    Space-to-depth form. `inputs` is NHWC with a static spatial size,
    `kernel` has Keras' `(kh, kw, in_channels, filters)` layout; no dilation,
    no groups.
    """
    _, height, width, in_channels = inputs.shape
    kh, kw, _, filters = kernel.shape
    sy, sx = strides
    py, out_h = _conv_geometry(height, kh, sy, padding)
    px, out_w = _conv_geometry(width, kw, sx, padding)
    # y[i] = sum_k x[s*i + k - P] w[k]; with k = s*t + r that is cell i + t,
    # phase r of the padded input split into cells of s pixels. Reshapes, not
    # strided slices (whose gradients XLA materialises one padded copy per
    # tap), do the split.
    ty_count, tx_count = math.ceil(kh / sy), math.ceil(kw / sx)
    rows, cols = out_h + ty_count - 1, out_w + tx_count - 1
    x = _pad_or_crop(inputs, 1, py, rows * sy - height - py)
    x = _pad_or_crop(x, 2, px, cols * sx - width - px)
    x = ops.reshape(x, (-1, rows, sy, cols, sx, in_channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    # The same split of the kernel: (ty, tx, ry, rx, in, out), zero-padded.
    sub = ops.pad(
        kernel, [[0, sy * ty_count - kh], [0, sx * tx_count - kw], [0, 0], [0, 0]]
    )
    sub = ops.reshape(sub, (ty_count, sy, tx_count, sx, in_channels, filters))
    sub = ops.transpose(sub, (0, 2, 1, 3, 4, 5))
    # One slice per cell offset (ty, tx), holding only the phases that meet
    # a real tap: no zero columns, and few ops for XLA to run and transpose.
    taps, weights = [], []
    for ty in range(ty_count):
        for tx in range(tx_count):
            ny, nx = min(sy, kh - sy * ty), min(sx, kw - sx * tx)
            taps.append(
                ops.reshape(
                    x[:, ty : ty + out_h, tx : tx + out_w, :ny, :nx, :],
                    (-1, out_h, out_w, ny * nx * in_channels),
                )
            )
            weights.append(
                ops.reshape(sub[ty, tx, :ny, :nx], (ny * nx * in_channels, filters))
            )
    patches = ops.concatenate(taps, axis=-1)
    patches = ops.reshape(patches, (-1, kh * kw * in_channels))
    y = ops.matmul(patches, ops.concatenate(weights, axis=0))
    return ops.reshape(y, (-1, out_h, out_w, filters))


@keras.saving.register_keras_serializable(package="keras_mergan")
class SubPixelConv2DTranspose(keras.layers.Conv2DTranspose):
    """`keras.layers.Conv2DTranspose` that can run as a sub-pixel matmul.

    Same arguments, variables and outputs as `Conv2DTranspose`, so weights
    load into or from a `Conv2DTranspose` of the same configuration. With
    the matmul form the transposed convolution is one patch matrix times a
    rearranged kernel, then depth-to-space, which XLA on CPU runs and
    differentiates several times faster than its own transposed convolution.

    Args:
        implementation: `"matmul"` (sub-pixel form), `"native"`
            (`ops.conv_transpose`, exactly `Conv2DTranspose`) or `"auto"`:
            the matmul form where the training backend prefers it
            (`prefer_matmul_convolutions()`: JAX on CPU). Configurations the
            matmul form does not cover (channels_first, dilation,
            `output_padding`, unknown spatial size) always run natively.
        **kwargs: the arguments of `keras.layers.Conv2DTranspose`.

    Example:

    >>> layer = SubPixelConv2DTranspose(
    ...     64, 5, strides=2, padding="same", implementation="matmul"
    ... )
    >>> layer(keras.random.normal((2, 4, 4, 128))).shape
    (2, 8, 8, 64)
    """

    def __init__(self, *args, implementation: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.implementation = _check_implementation(implementation)

    def call(self, inputs):
        if not _use_matmul(self, inputs.shape):
            return super().call(inputs)
        outputs = conv_transpose_matmul(
            inputs, self.kernel, tuple(self.strides), self.padding
        )
        if self.use_bias:
            outputs = ops.add(outputs, ops.reshape(self.bias, (1, 1, 1, -1)))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs

    def get_config(self) -> dict:
        config = super().get_config()
        config["implementation"] = self.implementation
        return config


@keras.saving.register_keras_serializable(package="keras_mergan")
class SpaceToDepthConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` that can run as a space-to-depth matmul.

    Same arguments, variables and outputs as `Conv2D`, so weights load into
    or from a `Conv2D` of the same configuration. With the matmul form the
    convolution is one patch matrix (built from a space-to-depth view of the
    input) times the kernel, so its gradients, and the gradient penalty's
    second derivatives, avoid XLA's slow dilated-operand convolutions.

    Args:
        implementation: `"matmul"` (space-to-depth form), `"native"`
            (`ops.conv`, exactly `Conv2D`) or `"auto"`: the matmul form where
            the training backend prefers it (`prefer_matmul_convolutions()`:
            JAX on CPU). Configurations the matmul form does not cover
            (channels_first, dilation, groups, unknown spatial size) always
            run natively.
        **kwargs: the arguments of `keras.layers.Conv2D`.

    Example:

    >>> layer = SpaceToDepthConv2D(
    ...     32, 5, strides=2, padding="same", implementation="matmul"
    ... )
    >>> layer(keras.random.normal((2, 32, 32, 1))).shape
    (2, 16, 16, 32)
    """

    def __init__(self, *args, implementation: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.implementation = _check_implementation(implementation)

    def convolution_op(self, inputs, kernel):
        if not _use_matmul(self, inputs.shape):
            return super().convolution_op(inputs, kernel)
        return conv_matmul(inputs, kernel, tuple(self.strides), self.padding)

    def get_config(self) -> dict:
        config = super().get_config()
        config["implementation"] = self.implementation
        return config
