from keras_mergan.models.dcgan import build_dcgan_critic, build_dcgan_generator

__all__ = ["build_dcgan_critic", "build_dcgan_generator"]
