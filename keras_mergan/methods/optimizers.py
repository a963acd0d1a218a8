"""The WGAN-GP Adam, with an optional warm-up at the start of every task."""

import keras

from keras_mergan.methods import paper


def wgan_adam(
    name: str,
    learning_rate: float = paper.LEARNING_RATE,
    warmup_steps: int = 0,
    beta_1: float = paper.BETA_1,
) -> keras.optimizers.Adam:
    """Adam with WGAN-GP's betas (0, 0.9) and the paper's learning rate 1e-4.

    With `warmup_steps`, the learning rate rises linearly from 0 over the
    first `warmup_steps` updates, then stays constant. The methods give each
    task a fresh Adam (its step counter included), so the warm-up repeats at
    every task start: a fresh Adam's first updates are full-size steps in the
    direction of the gradient's sign, which is where a short task's
    generator forgets most.

    Args:
        name: the optimizer's name.
        learning_rate: the rate after the warm-up.
        warmup_steps: updates of linear warm-up (0: none, the paper's).
        beta_1: first-moment decay; 0 in WGAN-GP, 0.5 (DCGAN's) converges
            faster when a task has only a few hundred iterations.

    Example:

    >>> optimizer = wgan_adam("generator_adam", warmup_steps=100)
    >>> float(optimizer.learning_rate)
    0.0
    """
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if not 0.0 <= beta_1 < 1.0:
        raise ValueError(f"beta_1 must be in [0, 1), got {beta_1}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    rate = learning_rate
    if warmup_steps:
        # alpha=1: no decay after the warm-up.
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=1,
            alpha=1.0,
            warmup_target=learning_rate,
            warmup_steps=warmup_steps,
        )
    return keras.optimizers.Adam(
        learning_rate=rate, beta_1=beta_1, beta_2=0.9, name=name
    )
