from keras_mergan.layers.conditional_batch_norm import (
    ConditionalBatchNormalization,
    per_label_batch_statistics,
)
from keras_mergan.layers.leaky_relu import PenaltyLeakyReLU
from keras_mergan.layers.matmul_conv import SpaceToDepthConv2D, SubPixelConv2DTranspose

__all__ = [
    "ConditionalBatchNormalization",
    "PenaltyLeakyReLU",
    "SpaceToDepthConv2D",
    "SubPixelConv2DTranspose",
    "per_label_batch_statistics",
]
