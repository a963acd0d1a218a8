"""Named sets of training settings, kept as data.

A preset gives values to the `RunConfig` fields a user leaves unset: first its
`values` (every method), then its `method_values` for the run's method. An
explicit value always wins over the preset, and `run.json` records the
resolved values, never only the preset's name.

- `paper`: the papers' settings (MeRGAN, WGAN-GP, EWC, DGR, LT-GANs),
  4000 iterations per task.
- `auto` (the default) is not a set of values: it picks by the run's
  iterations per task (`resolve_preset`): `short` below `fast`'s 1000,
  `fast` below `paper`'s 4000, `paper` at or above it, so that every budget
  gets the settings measured to hold up at it.
- `fast`: settings for budgets far below the paper's, behind this
  project's short-budget Table 1 rows (MNIST, 1000 iterations per task, 10
  tasks: JTR 98.25%, RA 96.49%): a linear learning-rate warm-up over each
  task's first 100 iterations (a fresh Adam's first steps are where a short
  task forgets most), JTR's old classes weighing together as much as the new
  one, RA's alignment as a per-pixel mean squared error that does not fade
  with the number of old classes, and EWC's lambda at the scale of this
  package's per-sample Fisher.
- `short`: `fast` with a faster Adam (learning rate 5e-4, beta1 0.5) for a
  few hundred iterations per task, where WGAN-GP's Adam (1e-4, beta1 0)
  leaves each task's generator unconverged: JTR over digits 0, 1, 2 at 300
  iterations per task kept 47% with `fast` and 98% with these
  (`benchmarks/results/short_budget_presets.md`); DGR's split-MNIST solver benchmark
  found the same (4% against 83% of confident task-1 samples).
"""

from dataclasses import dataclass, field
from types import MappingProxyType

from keras_mergan.methods import paper

# The default: the preset whose budget the run's iterations per task reach.
AUTO = "auto"
DEFAULT_PRESET = AUTO


@dataclass(frozen=True)
class Preset:
    """Values for the `RunConfig` fields a run leaves unset.

    Example:

    >>> PRESETS["fast"].values_for("ra")["ra_scaling"]
    'mean'
    """

    description: str
    values: dict = field(default_factory=dict)
    method_values: dict = field(default_factory=dict)
    # Dataset name (`ImageDataset.name`) -> method -> values, applied once
    # the dataset is known to the fields still unset, in a run that keeps the
    # preset's `method_values` (a value tuned for one formulation of a loss
    # means nothing for another).
    dataset_values: dict = field(default_factory=dict)

    def values_for(self, method: str) -> dict:
        """The preset's values for a run of `method`."""
        return {**self.values, **self.method_values.get(method, {})}


# WGAN-GP's Adam, which both presets keep.
_ADAM = {"learning_rate": paper.LEARNING_RATE, "beta_1": paper.BETA_1}
_JTR_FAST = {"replay_scaling": "mean"}
_RA_FAST = {"ra_scaling": "mean", "lambda_ra": 33.0}

PRESETS = MappingProxyType(
    {
        "paper": Preset(
            description="the papers' settings, 4000 iterations per task",
            values={
                **_ADAM,
                "iters_per_task": paper.ITERS_PER_TASK,
                "warmup_iterations": 0,
            },
            method_values={
                "jtr": {"replay_scaling": paper.REPLAY_SCALING},
                "ra": {"ra_scaling": paper.RA_SCALING},
                "jtr+ra": {
                    "replay_scaling": paper.REPLAY_SCALING,
                    "ra_scaling": paper.RA_SCALING,
                },
            },
            # The MeRGAN paper's lambda_RA for SVHN; other datasets keep its
            # MNIST value, the model's default.
            dataset_values={
                "svhn": {
                    "ra": {"lambda_ra": paper.LAMBDA_RA_SVHN},
                    "jtr+ra": {"lambda_ra": paper.LAMBDA_RA_SVHN},
                }
            },
        ),
        "fast": Preset(
            description="short-budget settings (1000 iterations per task, "
            "learning-rate warm-up, balanced replay, mean-squared alignment)",
            values={**_ADAM, "iters_per_task": 1000, "warmup_iterations": 100},
            method_values={
                "jtr": _JTR_FAST,
                "ra": _RA_FAST,
                "jtr+ra": {**_JTR_FAST, **_RA_FAST},
                # The paper's 1e9 belongs to its own Fisher's scale: with this
                # package's per-sample Fisher it holds the generator at the
                # first task's weights.
                "ewc": {"lambda_ewc": 3e3},
            },
        ),
        "short": Preset(
            description="a few hundred iterations per task: fast's settings "
            "with Adam at learning rate 5e-4, beta1 0.5",
            values={
                "learning_rate": 5e-4,
                "beta_1": 0.5,
                "iters_per_task": 300,
                "warmup_iterations": 100,
            },
            method_values={
                "jtr": _JTR_FAST,
                "ra": _RA_FAST,
                "jtr+ra": {**_JTR_FAST, **_RA_FAST},
                "ewc": {"lambda_ewc": 3e3},
            },
        ),
    }
)


def resolve_preset(name: str, iters_per_task: int | str | None) -> str:
    """The preset a run uses: `name`, or for `"auto"` the one for its budget.

    Example:

    >>> resolve_preset("auto", 300), resolve_preset("auto", 1000)
    ('short', 'fast')
    >>> resolve_preset("auto", None), resolve_preset("auto", 4000)
    ('paper', 'paper')
    >>> resolve_preset("paper", 300), resolve_preset("auto", "auto")
    ('paper', 'short')
    """
    if name != AUTO:
        return name
    if iters_per_task == "auto":
        # A budget that stops once a task is learned pays for a slow
        # learning rate in iterations: short's faster Adam learns a task in
        # fewer, and neither has a schedule tied to the task's length.
        return "short"
    if iters_per_task is None:
        return "paper"
    if iters_per_task < PRESETS["fast"].values["iters_per_task"]:
        return "short"
    if iters_per_task < PRESETS["paper"].values["iters_per_task"]:
        return "fast"
    return "paper"
