from keras_mergan.layers.conditional_batch_norm import ConditionalBatchNormalization

__all__ = ["ConditionalBatchNormalization"]
