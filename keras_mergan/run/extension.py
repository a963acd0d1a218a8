"""Extending a finished run with new tasks: the config that continues it,
and what may not change.

Imports no ML framework, so that `keras-mergan train` checks an extension's
settings before the backend starts.
"""

import os
from pathlib import Path

from keras_mergan.run.config import RunConfig
from keras_mergan.run_folder import RunInfo, finished_tasks, read_run_info


class ExtensionError(ValueError):
    """A run cannot be extended as asked (one line saying why)."""


#: Settings a run extended with new tasks must keep: they shape the model.
FIXED_WHEN_EXTENDING = ("method", "architecture", "width", "latent_dim", "image_size")


def check_extension(run_dir: Path, stored: RunInfo, config: RunConfig) -> None:
    """Refuse to extend a run that is unfinished or whose model would change.

    Raises:
        ExtensionError: one line naming what stands in the way.
    """
    done = len(finished_tasks(run_dir))
    if done < stored.num_tasks:
        raise ExtensionError(
            f"{run_dir} has finished {done} of its {stored.num_tasks} tasks: "
            "finish it first (repeat its command), then add tasks"
        )
    _refuse_model_changes(run_dir, stored.config, config.to_dict())


def _refuse_model_changes(run_dir, stored: dict, wanted: dict) -> None:
    changed = [
        f"--{name.replace('_', '-')} ({stored[name]} there, {wanted[name]} now)"
        for name in FIXED_WHEN_EXTENDING
        if name in stored and name in wanted and stored[name] != wanted[name]
    ]
    if changed:
        raise ExtensionError(
            f"cannot extend {run_dir}: {', '.join(changed)} would change the "
            "model; new tasks continue the same one"
        )


def extension_config(
    run_dir: str | os.PathLike, add_tasks: str | None = None, **settings
) -> RunConfig:
    """The config that continues the run in `run_dir`: its own, with `settings`.

    `add_tasks` appends tasks to the run's ('/' separates tasks, ',' the
    categories of one: "2", "bird", "2/3"); `settings` are `RunConfig`
    fields to change (a `dataset` holding only the new categories, say).
    The dataset defaults to the run's first one, not to the data an earlier
    extension brought.

    Example:

    >>> # train_run(extension_config("runs/jtr", "2", dataset="digit2.npz"),
    >>> #           "runs/jtr")
    """
    info = read_run_info(run_dir)
    stored = RunConfig.from_run_dir(run_dir).to_dict()
    _refuse_model_changes(run_dir, stored, settings)
    values = {**stored, "dataset": info.dataset, **settings}
    unfinished = len(finished_tasks(run_dir)) < info.num_tasks
    if add_tasks and unfinished and str(stored["tasks"]).endswith(f"/{add_tasks}"):
        # The same extension again, after it stopped part-way: resume it.
        values["tasks"] = stored["tasks"]
    elif add_tasks:
        kept = "/".join(",".join(str(c) for c in task) for task in info.tasks)
        values["tasks"] = f"{kept}/{add_tasks}"
    return RunConfig.from_dict(values)
