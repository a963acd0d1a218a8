"""The share of real data in a replay method's batches (Keras-free)."""

# `mixing_ratio` that gives every task seen the same share of a batch.
BALANCED = "balanced"


def checked_mixing_ratio(value: float | str | None) -> float | str:
    """`value` as a number in (0, 1] or `BALANCED`; None (older configs) is
    `BALANCED`.

    Example:

    >>> checked_mixing_ratio("0.5"), checked_mixing_ratio(None)
    (0.5, 'balanced')
    """
    if value is None or value == BALANCED:
        return BALANCED
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = float("nan")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(
            f"mixing_ratio must be in (0, 1] or {BALANCED!r}, got {value!r}"
        )
    return ratio
