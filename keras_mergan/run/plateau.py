"""The adaptive budget's stopping rule, as data (`keras_mergan.run.budget`).

Imports no ML framework: `RunConfig` builds it before the backend starts.
"""

import dataclasses

#: `iters_per_task`'s value for an adaptive budget.
AUTO_BUDGET = "auto"


@dataclasses.dataclass(frozen=True)
class PlateauRule:
    """When an adaptive task stops; see the module doc.

    Attributes:
        min_iterations: a task trains at least this long.
        max_iterations: and never longer than this.
        check_every: iterations between two checks.
        samples: generated images per new category in a check (old
            categories share `old_samples`, at least 16 each).
        old_samples: generated images over all old categories in a check.
        patience: checks without an improvement that make a plateau.
        min_delta: the least gain that counts as an improvement (scores in
            [0, 1]; `-log(KID)` for categories the evaluator does not know).
        old_tolerance: how far the old categories' score may fall over the
            patience window for them to count as steady.
        learned_accuracy: a new category is learned when the evaluator's
            accuracy on its samples reaches this fraction of the evaluator's
            accuracy on the task's real images of it, and
        learned_confident: their confident share this fraction of the real
            images' (lower: the confident share of generated images trails
            their accuracy by about ten points even once they are legible).
            A task whose new categories are all learned stops without
            waiting for a plateau.

    Example:

    >>> rule = PlateauRule(min_iterations=200, max_iterations=4000)
    >>> rule.check_every, rule.patience
    (50, 4)
    """

    min_iterations: int = 200
    max_iterations: int = 4000
    check_every: int = 50
    samples: int = 64
    old_samples: int = 256
    patience: int = 4
    min_delta: float = 0.02
    old_tolerance: float = 0.02
    learned_accuracy: float = 0.95
    learned_confident: float = 0.8

    def __post_init__(self):
        if not 1 <= self.min_iterations <= self.max_iterations:
            raise ValueError(
                "--min-iters-per-task must be between 1 and --max-iters-per-task, "
                f"got {self.min_iterations} and {self.max_iterations}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def checked_budget(value: int | str | None) -> int | str | None:
    """`value` as a whole number of iterations, or `AUTO_BUDGET`.

    Example:

    >>> checked_budget("300"), checked_budget("auto")
    (300, 'auto')
    """
    if value is None or value == AUTO_BUDGET:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number.is_integer():
        raise ValueError(
            f"--iters-per-task must be a whole number or '{AUTO_BUDGET}', got {value!r}"
        )
    return int(number)
