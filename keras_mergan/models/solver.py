"""The solver of a Deep Generative Replay scholar: a small CNN classifier."""

from collections.abc import Sequence

import keras
from keras import layers


def build_solver(
    image_shape: Sequence[int],
    num_classes: int,
    width: int = 32,
    name: str = "solver",
) -> keras.Model:
    """CNN classifier: image in [-1, 1] -> class logits.

    Conv3x3(w, s2) -> ReLU -> Conv3x3(2w, s2) -> ReLU -> Conv3x3(4w, s2) ->
    ReLU -> Dense(8w) -> ReLU -> Dense(num_classes). No batch normalisation or
    dropout: a frozen copy labels replayed images in inference mode, and
    should label them as the trained network saw them.

    Layer names start with `name`, so an optimizer map can select the
    solver's variables by path (`"solver_.*"`).

    Example:

    >>> solver = build_solver((32, 32, 1), num_classes=10, width=8)
    >>> tuple(solver(keras.random.normal((2, 32, 32, 1))).shape)
    (2, 10)
    """
    image = keras.Input(tuple(int(d) for d in image_shape), name="image")
    x = image
    for i, filters in enumerate((width, 2 * width, 4 * width)):
        x = layers.Conv2D(
            filters, 3, strides=2, padding="same", name=f"{name}_conv{i}"
        )(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(8 * width, activation="relu", name=f"{name}_hidden")(x)
    # float32 whatever the dtype policy: the cross-entropy's input.
    logits = layers.Dense(num_classes, dtype="float32", name=f"{name}_logits")(x)
    return keras.Model(image, logits, name=name)
