"""A leaky ReLU whose second derivative suits the gradient penalty."""

import keras

from keras_mergan.backend import training_backend


@keras.saving.register_keras_serializable(package="keras_mergan")
class PenaltyLeakyReLU(keras.layers.LeakyReLU):
    """`keras.layers.LeakyReLU` computed by the training backend's `leaky_relu`.

    Same values, same derivative, same config as `LeakyReLU`. A WGAN-GP critic
    is differentiated twice (the gradient penalty); TF's gradient of its own
    leaky-ReLU gradient op returns a zeros tensor for the features, which the
    double backprop then carries back through every critic layer (about 10%
    of a DCGAN-32 training step's CPU time). The backend module chooses a
    formulation without that term (`tf.where` on TF, the native op on JAX
    and torch, where it costs nothing extra).

    Example:

    >>> layer = PenaltyLeakyReLU(negative_slope=0.5)
    >>> keras.ops.convert_to_numpy(layer(keras.ops.array([-1.0, 2.0]))).tolist()
    [-0.5, 2.0]
    """

    def call(self, inputs):
        return training_backend().leaky_relu(inputs, self.negative_slope)
