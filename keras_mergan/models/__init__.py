from keras_mergan.models.dcgan import build_dcgan_critic, build_dcgan_generator
from keras_mergan.models.resnet import build_resnet_critic, build_resnet_generator

__all__ = [
    "build_dcgan_critic",
    "build_dcgan_generator",
    "build_resnet_critic",
    "build_resnet_generator",
]
