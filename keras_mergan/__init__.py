"""Continual learning of conditional GANs on Keras 3."""
