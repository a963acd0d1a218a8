import keras
import numpy as np
import pytest
from keras import ops

from keras_mergan.data.tasks import TaskSequence, TaskStream
from keras_mergan.methods import ConditionalWGANGP
from keras_mergan.models.resnet import build_resnet_critic, build_resnet_generator


@pytest.mark.parametrize("image_size, channels", [(64, 3), (32, 1)])
def test_shapes_follow_image_size_and_channels(image_size, channels):
    generator = build_resnet_generator(4, channels, 16, image_size, width=4)
    critic = build_resnet_critic(4, channels, image_size, width=4)
    images = generator([np.zeros((3, 16), "float32"), np.array([0, 1, 3])])
    assert tuple(images.shape) == (3, image_size, image_size, channels)
    score, logits = critic(images)
    assert tuple(score.shape) == (3, 1) and tuple(logits.shape) == (3, 4)
    values = ops.convert_to_numpy(images)
    assert np.all(np.abs(values) <= 1.0)


def test_sizes_that_are_not_four_times_a_power_of_two_are_refused():
    with pytest.raises(ValueError, match="image_size"):
        build_resnet_generator(2, image_size=48)
    with pytest.raises(ValueError, match="image_size"):
        build_resnet_critic(2, image_size=4)


def test_widths_follow_the_wgan_gp_schedule():
    generator = build_resnet_generator(2, image_size=64, width=2)
    critic = build_resnet_critic(2, image_size=64, width=2)
    assert [
        generator.get_layer(f"generator_block{i}_conv1").filters for i in range(4)
    ] == [
        16,
        8,
        4,
        2,
    ]
    assert [critic.get_layer(f"critic_block{i}_conv1").filters for i in range(4)] == [
        4,
        8,
        16,
        16,
    ]


def test_generation_is_batch_independent_and_trains_in_the_gan():
    gan = ConditionalWGANGP(
        build_resnet_generator(3, 3, 16, 16, width=4),
        build_resnet_critic(3, 3, 16, width=4),
        latent_dim=16,
        n_critic=1,
        seed=0,
    )
    gan.compile()
    images = np.random.default_rng(0).uniform(-1, 1, (24, 16, 16, 3))
    stream = TaskStream(images.astype("float32"), np.arange(24) % 3, [[0, 1]], 1, 2, 1)
    before = [ops.convert_to_numpy(v).copy() for v in gan.generator.trainable_variables]
    gan.fit(
        stream, epochs=1, steps_per_epoch=1, callbacks=[TaskSequence(stream)], verbose=0
    )
    after = [ops.convert_to_numpy(v) for v in gan.generator.trainable_variables]
    assert any(not np.allclose(b, a) for b, a in zip(before, after, strict=True))

    z = keras.random.normal((4, 16), seed=1)
    labels = np.array([0, 1, 2, 0])
    together = gan.generate(z, labels)
    alone = np.concatenate(
        [gan.generate(z[i : i + 1], labels[i : i + 1]) for i in range(4)]
    )
    np.testing.assert_allclose(together, alone, atol=1e-5)
