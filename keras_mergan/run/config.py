"""`RunConfig`: everything a training run needs, as one typed, frozen value.

`keras-mergan train`'s options are this dataclass's fields (`--iters-per-task`
is `iters_per_task`), and `keras_mergan.run.training.train_run(config, run_dir)`
does what the command does. `run.json` holds the resolved config under
`"config"`, and `RunConfig.from_run_dir` reads it back.
"""

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from keras_mergan.backend.precision import PRECISIONS
from keras_mergan.methods import METHODS, paper
from keras_mergan.methods.mixing import BALANCED, checked_mixing_ratio
from keras_mergan.run.plateau import AUTO_BUDGET, PlateauRule, checked_budget
from keras_mergan.run.presets import AUTO, DEFAULT_PRESET, PRESETS, resolve_preset
from keras_mergan.run_folder import RUN_INFO, read_run_info

ARCHITECTURES = ("dcgan", "resnet")
# Channels of the first critic / last generator convolution in each
# architecture's paper: MeRGAN's DCGAN-32 and WGAN-GP's ResNet.
DEFAULT_WIDTHS = {"dcgan": 32, "resnet": 64}
SCALINGS = ("reference", "mean")


def _option(default, help: str, **cli):
    """A field with its one line of `--help` (and argparse extras)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class RunConfig:
    """A training run: method, data, task sequence and hyper-parameters.

    Fields left at None take their value from `preset` (see
    `keras_mergan.run.presets`; `"auto"` becomes the preset whose budget the
    run's iterations per task reach), then from the method's own
    default; explicit values always win. After construction every
    preset-given field is set, so the config written to `run.json` reads
    back unchanged.

    Example:

    >>> config = RunConfig(method="ra", preset="fast", tasks="0-2")
    >>> config.iters_per_task, config.ra_scaling, config.lambda_ra
    (1000, 'mean', 33.0)
    >>> short = RunConfig(method="ra", iters_per_task=300)
    >>> short.preset, short.iters_per_task, short.ra_scaling
    ('short', 300, 'mean')
    >>> RunConfig(method="ra").preset
    'paper'
    """

    method: str = _option("sft", "continual-learning method", choices=tuple(METHODS))
    preset: str = _option(
        DEFAULT_PRESET,
        "settings for unset options: 'paper' (the papers', 4000 iterations per "
        "task), 'fast' (1000), 'short' (300) or 'auto': short below "
        "--iters-per-task 1000 and for 'auto', fast below 4000, else paper "
        "(run.json records the one used)",
        choices=(AUTO, *PRESETS),
    )
    dataset: str = _option(
        "digits",
        "'digits' (built in), 'mnist', an .npz file, SVHN's train_32x32.mat or "
        "a folder of category folders; several joined with '+' make each whole "
        "dataset one category (e.g. 'mnist+train_32x32.mat' with --tasks "
        "mnist/svhn)",
    )
    tasks: str | None = _option(
        None,
        "task sequence, e.g. '0-9', '0,1/2,3', 'bedroom/kitchen' (default: "
        "every category, --classes-per-task at a time)",
    )
    classes_per_task: int = _option(1, "categories per task when --tasks has no '/'")
    iters_per_task: int | str | None = _option(
        None,
        "training iterations (n_critic critic + 1 generator updates) per task, "
        f"or '{AUTO_BUDGET}': each task trains until its categories are learned "
        "(evaluator scores every 50 iterations, stopped on a plateau; needs "
        "--eval-samples > 0)",
        type=checked_budget,
    )
    max_iters_per_task: int = _option(
        paper.ITERS_PER_TASK,
        f"--iters-per-task {AUTO_BUDGET}: the most iterations a task may train",
    )
    min_iters_per_task: int = _option(
        200, f"--iters-per-task {AUTO_BUDGET}: the least iterations a task trains"
    )
    batch_size: int = _option(64, "real images per critic update")
    n_critic: int = _option(5, "critic updates per generator update (WGAN-GP)")
    latent_dim: int = _option(128, "length of the generator's noise vector z")
    lambda_gp: float = _option(10.0, "weight of WGAN-GP's gradient penalty")
    lambda_cls: float = _option(1.0, "weight of the AC-GAN classification loss")
    image_size: int = _option(
        32, "image height and width (dcgan: 32; resnet: 4 * 2**k)"
    )
    stream_images: bool | None = _option(
        None,
        "folders: decode each batch from disk as it is drawn instead of every "
        "image up front (default: for folders of more than 50,000 images)",
    )
    replay_batch: int | None = _option(
        None,
        "jtr, ra, jtr+ra: replayed images per update, split over the old "
        "classes (default --batch-size, as in the paper)",
    )
    lambda_ra: float | None = _option(
        None,
        "ra, jtr+ra: weight of the replay alignment (paper preset: "
        f"{paper.LAMBDA_RA:g}, the paper's MNIST value; {paper.LAMBDA_RA_SVHN:g} "
        "on SVHN)",
    )
    ra_scaling: str | None = _option(
        None,
        "ra, jtr+ra: 'reference': the reference code's summed L2, whose weight "
        "falls with the number of old classes; 'mean': a per-pixel mean "
        "squared error",
        choices=SCALINGS,
    )
    replay_scaling: str | None = _option(
        None,
        "jtr, jtr+ra: 'reference': each old class weighs as much as the current "
        "task; 'mean': old classes together weigh as much as the current task",
        choices=SCALINGS,
    )
    learning_rate: float | None = _option(None, "Adam learning rate of both networks")
    beta_1: float | None = _option(None, "Adam's beta1 of both networks")
    warmup_iterations: int | None = _option(
        None,
        "iterations over which each task's fresh Adam warms up linearly from 0 "
        "to --learning-rate",
    )
    lambda_ewc: float | None = _option(
        None, f"ewc: weight of the Fisher penalty (paper preset: {paper.LAMBDA_EWC:g})"
    )
    fisher_samples: int | None = _option(
        None, "ewc: generated samples the Fisher is estimated from (default 256)"
    )
    fisher_batch_size: int | None = _option(
        None, "ewc: samples per squared gradient (default 1: per-sample Fisher)"
    )
    mixing_ratio: float | str | None = _option(
        None,
        "dgr, ltgan: fraction of real images in a batch from the second task "
        f"on, the rest replayed, or '{BALANCED}' for 1 / tasks seen, the same "
        f"share for every task (default: dgr {BALANCED}, ltgan 0.5, the "
        "papers')",
        type=checked_mixing_ratio,
    )
    student: bool | None = _option(
        None, "ltgan: train a VAE student on the replay mix (default: on)"
    )
    student_beta: float | None = _option(
        None, "ltgan: weight of the student's KL term (default 1: the ELBO)"
    )
    architecture: str = _option(
        "dcgan",
        "dcgan: MeRGAN's DCGAN-32 (32x32 images); resnet: WGAN-GP's ResNet "
        "(e.g. --image-size 64)",
        choices=ARCHITECTURES,
    )
    width: int | None = _option(
        None,
        "channels of the first critic / last generator convolution (default: "
        "dcgan 32, resnet 64)",
    )
    precision: str = _option(
        "float32",
        "float32, or bfloat16 compute with float32 weights (losses, batch-norm "
        "statistics and exports stay float32); auto: bfloat16 where the "
        "backend and device gain from it",
        choices=PRECISIONS,
    )
    devices: int = _option(
        1,
        "data parallel: split each batch over N devices (jax and tensorflow; "
        "on a CPU, N virtual devices share its cores)",
    )
    checkpoint_every: int = _option(
        200,
        "iterations between two saved training states; after a crash the same "
        "command resumes from the last one (0: only from finished tasks)",
    )
    seed: int = _option(0, "seed of weights, noise, data order and evaluation")
    eval_samples: int = _option(
        1000,
        "generated images per class scored by the evaluator after each task (0: off)",
    )
    eval_every: int = _option(
        0,
        "also score every N iterations inside a task, for forgetting curves "
        "(0: only at task ends)",
    )
    evaluator: str | None = _option(
        None,
        "a .keras classifier to score the run with instead of the dataset's own: "
        "input images [N, H, W, C] in [-1, 1] as the run's, one output per "
        "category of the run in run.json's order (e.g. one trained on a "
        "labelled pool of every category)",
    )
    export: bool = _option(False, "export each task's generator (SavedModel, ONNX)")

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(
                f"method must be one of {sorted(METHODS)}, got {self.method!r}"
            )
        if self.preset != AUTO and self.preset not in PRESETS:
            raise ValueError(
                f"preset must be one of {[AUTO, *PRESETS]}, got {self.preset!r}"
            )
        object.__setattr__(self, "iters_per_task", checked_budget(self.iters_per_task))
        object.__setattr__(
            self, "preset", resolve_preset(self.preset, self.iters_per_task)
        )
        self._refuse_foreign_options()
        preset_values = PRESETS[self.preset].values_for(self.method)
        for name, value in preset_values.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.width is None:
            object.__setattr__(self, "width", DEFAULT_WIDTHS.get(self.architecture))
        taken = METHODS[self.method].hyperparameters
        if self.replay_batch is None and "replay_batch" in taken:
            object.__setattr__(self, "replay_batch", self.batch_size)
        self._validate()

    def _refuse_foreign_options(self) -> None:
        taken = set(METHODS[self.method].hyperparameters)
        foreign = sorted(
            name
            for name in _METHOD_SPECIFIC
            if name not in taken and getattr(self, name) is not None
        )
        if foreign:
            flags = ", ".join(_flag(name) for name in foreign)
            raise ValueError(f"{flags}: not an option of --method {self.method}")

    def _validate(self) -> None:
        if self.iters_per_task == AUTO_BUDGET:
            if self.eval_samples < 1:
                raise ValueError(
                    f"--iters-per-task {AUTO_BUDGET} needs the evaluator's scores: "
                    "--eval-samples must be > 0"
                )
            self.budget_rule()
        checks = {
            "iters_per_task": 1,
            "max_iters_per_task": 1,
            "min_iters_per_task": 1,
            "batch_size": 1,
            "n_critic": 1,
            "latent_dim": 1,
            "classes_per_task": 1,
            "image_size": 4,
            "replay_batch": 1,
            "width": 1,
            "devices": 1,
            "fisher_samples": 1,
            "fisher_batch_size": 1,
            "checkpoint_every": 0,
            "warmup_iterations": 0,
            "eval_samples": 0,
            "eval_every": 0,
        }
        for name, least in checks.items():
            value = getattr(self, name)
            if isinstance(value, int) and value < least:
                raise ValueError(f"{_flag(name)} must be >= {least}, got {value}")
        for name in ("lambda_gp", "lambda_cls", "lambda_ra", "lambda_ewc"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{_flag(name)} must be >= 0, got {value}")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.beta_1 < 1:
            raise ValueError(f"--beta-1 must be in [0, 1), got {self.beta_1}")
        if self.mixing_ratio is not None:
            try:
                ratio = checked_mixing_ratio(self.mixing_ratio)
            except ValueError:
                raise ValueError(
                    f"--mixing-ratio must be in (0, 1] or '{BALANCED}', "
                    f"got {self.mixing_ratio!r}"
                ) from None
            object.__setattr__(self, "mixing_ratio", ratio)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"--architecture must be one of {ARCHITECTURES}, "
                f"got {self.architecture!r}"
            )
        if self.architecture == "dcgan" and self.image_size != 32:
            raise ValueError(
                f"--architecture dcgan generates 32x32 images, not "
                f"{self.image_size}x{self.image_size}: use --architecture resnet "
                "for other sizes (64 for LSUN-style folders)"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"--precision must be one of {PRECISIONS}, got {self.precision!r}"
            )

    @property
    def adaptive(self) -> bool:
        """Whether each task trains until its categories are learned."""
        return self.iters_per_task == AUTO_BUDGET

    @property
    def steps_per_task(self) -> int:
        """Iterations a task may train: the fixed budget, or the adaptive cap."""
        return self.max_iters_per_task if self.adaptive else self.iters_per_task

    def budget_rule(self) -> PlateauRule | None:
        """The stopping rule of an adaptive budget; None for a fixed one."""
        if not self.adaptive:
            return None
        return PlateauRule(
            min_iterations=self.min_iters_per_task,
            max_iterations=self.max_iters_per_task,
        )

    def method_options(self) -> dict:
        """Keyword arguments of the method's model class, beside its networks."""
        method = METHODS[self.method]
        options = {name: getattr(self, name) for name in method.shared_hyperparameters}
        for name in method.hyperparameters:
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        return options

    def for_dataset(self, dataset_name: str) -> "RunConfig":
        """This config with the preset's values for `dataset_name` filled in.

        They apply to fields still unset, in a run that keeps the preset's
        method-specific values (SVHN's lambda_RA belongs to the reference
        scaling, say).
        """
        preset = PRESETS[self.preset]
        kept = all(
            getattr(self, name) == value
            for name, value in preset.method_values.get(self.method, {}).items()
        )
        values = preset.dataset_values.get(dataset_name, {}).get(self.method, {})
        unset = {n: v for n, v in values.items() if getattr(self, n) is None}
        return dataclasses.replace(self, **unset) if kept and unset else self

    def to_dict(self) -> dict:
        """The fields as JSON-able values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """A config from `to_dict`'s output; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown RunConfig fields: {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_run_dir(cls, run_dir: str | os.PathLike) -> "RunConfig":
        """The config a run folder's `run.json` was trained with."""
        info = read_run_info(run_dir)
        if "learning_rate" not in info.config:
            raise ValueError(
                f"{Path(run_dir) / RUN_INFO} predates RunConfig: it records no config"
            )
        return cls.from_dict(info.config)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# Options that only some methods take (`Method.hyperparameters`).
_METHOD_SPECIFIC = tuple(
    sorted({name for method in METHODS.values() for name in method.hyperparameters})
)
