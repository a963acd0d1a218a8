"""An adaptive per-task budget: train each task until its categories are learned.

With `RunConfig(iters_per_task="auto")` (`--iters-per-task auto`) a task
ends once its categories are learned, or on a plateau, instead of after a
fixed count. Every `check_every`
iterations `AdaptiveBudget` scores the generator on a small, fixed sample
with the run's evaluator, using only what a deployment has at hand:

- **new categories** (the task's own): the evaluator's accuracy and
  confident share (p >= 0.9) of generated images of each, averaged, and
  the same scores of the task's real images of it, the bar they are held
  to (Fashion-MNIST's shirts are not confidently recognised even when
  real); a category the evaluator does not know (a label space grown later) is
  scored by the KID of its samples against the task's real images of it,
  on the evaluator's features, as `-log(KID)`; LT-GANs, whose generator
  takes no class, by the confident share of its samples that fall in the
  new categories, relative to their even share;
- **old categories** (replayed): the same scores for them, compared with
  their own earlier values in the task. The earlier tasks' real data is
  never read.

The rule (`keras_mergan.run.plateau.PlateauRule`): after `min_iterations`,
while the old categories' score has not fallen by more than
`old_tolerance` over the last `patience` checks, a task stops when its new
categories are learned (accuracy at least `learned_accuracy` times the
real images', confident share at least `learned_confident` times theirs),
or when no signal of theirs has
improved by `min_delta` over its best for `patience` checks (a plateau
below that). Values are the mean of the last two checks, so that one lucky sample does
not set the bar. Whatever happens, a task ends at `max_iterations`.

Checks draw the same latent vectors each time, so the same weights give
the same scores: a resumed run stops where the uninterrupted one did. The
checks' history is saved beside the training state (`resume/`).
"""

from __future__ import annotations

import json
import math
import time
import weakref
from pathlib import Path

import keras
import numpy as np

from keras_mergan.data.tasks import TaskStream
from keras_mergan.evaluation.accuracy import class_sampler
from keras_mergan.evaluation.evaluator import CONFIDENCE_THRESHOLD
from keras_mergan.evaluation.scores import kernel_distance
from keras_mergan.evaluation.unconditional import class_distribution
from keras_mergan.run.plateau import PlateauRule
from keras_mergan.run_folder import CHECKPOINT_FOLDER, atomic_open
from keras_mergan.sampling import fixed_latents

#: The history of the checks in the current task, beside the training state.
BUDGET_STATE = "budget.json"

# Tasks a callback of this module ended, by model: told apart from another
# callback's stop (which ends the task sequence).
_ended_by_budget: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def ended_by_budget(model: keras.Model) -> bool:
    """Whether the adaptive budget stopped `model`'s current fit at a task end."""
    return _ended_by_budget.get(model, False)


class AdaptiveBudget(keras.callbacks.Callback):
    """Stops each task of a `TaskStream` fit on a plateau (`PlateauRule`).

    The stream's `steps_per_task` is the cap. Stopping sets
    `model.stop_training`, which ends the fit: `fit_tasks` then fits the
    next task. Place it after `TaskSequence` and before `RunRecorder`, which
    records `report()` in the task's `metrics.json`.

    Args:
        stream: the whole task sequence; `steps_per_task` is the cap.
        evaluator: the run's `Evaluator`.
        rule: the stopping rule.
        class_names: category names by label, for the summary line.
        conditional: whether the generator draws the class it is asked for
            (every method but LT-GANs).
        run_dir: the run folder; the checks' history goes to its `resume/`
            folder, so that a task resumed part-way (a fit whose first epoch
            is short) reads back the checks up to its step and decides as
            the first try did.
        seed: seed of the checks' latent vectors.

    Example:

    >>> # model.fit(stream, ..., callbacks=[TaskSequence(stream),
    >>> #     AdaptiveBudget(stream, evaluator, PlateauRule()), recorder])
    """

    def __init__(
        self,
        stream: TaskStream,
        evaluator,
        rule: PlateauRule,
        class_names,
        conditional: bool = True,
        run_dir: str | Path | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if stream.steps_per_task != rule.max_iterations:
            raise ValueError(
                f"the stream's steps_per_task ({stream.steps_per_task}) must be "
                f"the budget's cap ({rule.max_iterations})"
            )
        self.stream = stream
        self.evaluator = evaluator
        self.rule = rule
        self.class_names = list(class_names)
        self.conditional = conditional
        self.state_path = (
            None
            if run_dir is None
            else Path(run_dir) / CHECKPOINT_FOLDER / BUDGET_STATE
        )
        self.seed = seed
        self.checks: list[dict] = []
        self._task = 0
        self._steps_before = 0
        self._stopped_at = 0
        self._started = 0.0
        self._check_seconds = 0.0
        self._real_features: dict[int, np.ndarray] = {}
        self._reference: dict[int, list[float]] = {}

    # -- Keras hooks ---------------------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        _ended_by_budget[self.model] = False
        self._task = epoch
        self._steps_before = self.stream.steps_per_task - self.params.get(
            "steps", self.stream.steps_per_task
        )
        self._stopped_at = 0
        self._reason = "cap"
        self._started = time.time()
        self._check_seconds = 0.0
        self._real_features = {}
        self._reference = {}
        self.checks = self._saved_checks(epoch, self._steps_before)

    def on_train_batch_end(self, batch, logs=None):
        step = self._steps_before + batch + 1
        if step % self.rule.check_every or step >= self.stream.steps_per_task:
            return
        started = time.time()
        self.checks.append({"iteration": step, **self._scores()})
        self._check_seconds += time.time() - started
        self._save_checks()
        reason = self._stop_reason()
        if step >= self.rule.min_iterations and reason:
            self._stopped_at, self._reason = step, reason
            _ended_by_budget[self.model] = True
            self.model.stop_training = True

    # -- the report ----------------------------------------------------------

    def report(self) -> dict:
        """What `metrics.json` records of the task that just ended."""
        iterations = self._stopped_at or self.stream.steps_per_task
        reason = self._reason
        elapsed = max(time.time() - self._started, 1e-9)
        return {
            "stop_reason": reason,
            "summary": self._summary(reason, iterations),
            "rule": self.rule.to_dict(),
            "checks": self.checks,
            # Of this fit's time: a resumed task's earlier part is not timed.
            "check_share": round(self._check_seconds / elapsed, 4),
        }

    def _summary(self, reason: str, iterations: int) -> str:
        new = self._new_classes()
        last = self.checks[-1] if self.checks else {}
        cells = []
        for c in new:
            # As the rule saw them: the mean of the last two checks.
            accuracy = self._recent("new_accuracy", c)
            confident = self._recent("new_confident", c)
            reference = last.get("new_reference", {}).get(str(c), [1.0, 1.0])
            name = self.class_names[c]
            if accuracy is None:
                cells.append(name)
                continue
            if confident is None:
                confident = accuracy
            if _learned_share(accuracy, confident, reference, self.rule) >= 1:
                cells.append(f"{name} learned ({100 * accuracy:.0f}%)")
            else:
                cells.append(f"{name} at {100 * accuracy:.0f}%")
        learned = ", ".join(cells) or "no new category"
        if reason == "learned":
            line = f"stopped at {iterations} iterations: {learned}"
        elif reason == "plateau":
            line = f"stopped at {iterations} iterations, on a plateau: {learned}"
        else:
            trend = "still rising" if self._rising() else "no longer rising"
            line = f"reached the {iterations}-iteration cap: {learned}, {trend}"
        if self._old_classes():
            line += ", old categories " + (
                "steady" if self._old_steady() else "falling"
            )
        return line

    # -- the rule ------------------------------------------------------------

    def _series(self, name: str, label: int | None = None) -> list[float]:
        """Score `name` (category `label`'s, for per-category scores) at each
        check, as the rule sees it."""
        if label is None:
            values = [c[name] for c in self.checks if c.get(name) is not None]
        else:
            values = [
                c[name][str(label)]
                for c in self.checks
                if str(label) in c.get(name, {})
            ]
        # The mean of two consecutive checks: one lucky sample sets no bar.
        return [
            float(np.mean(values[max(0, i - 1) : i + 1])) for i in range(len(values))
        ]

    def _recent(self, name: str, label: int) -> float | None:
        series = self._series(name, label)
        return series[-1] if series else None

    def _improved_lately(self, name: str) -> bool:
        values = self._series(name)
        patience = self.rule.patience
        if len(values) <= patience:
            return True
        best_before = max(values[:-patience])
        return max(values[-patience:]) >= best_before + self.rule.min_delta

    def _new_signals(self) -> list[str]:
        return [n for n in ("new_score", "new_kid_score") if self._series(n)]

    def _rising(self) -> bool:
        return any(self._improved_lately(n) for n in self._new_signals())

    def _old_steady(self) -> bool:
        values = self._series("old_score")
        if not values:
            return True
        # Against the check a patience window ago, or the task's first one.
        earlier = values[max(0, len(values) - 1 - self.rule.patience)]
        return values[-1] >= earlier - self.rule.old_tolerance

    def _learned(self) -> bool:
        values = self._series("new_learned")
        # Categories scored by KID alone have no threshold: they plateau.
        unknown_rising = bool(self._series("new_kid_score")) and (
            self._improved_lately("new_kid_score")
        )
        return bool(values) and values[-1] >= 1 and not unknown_rising

    def _stop_reason(self) -> str | None:
        """ "learned" or "plateau" when the task should stop now, else None."""
        if not self._old_steady() or not self._new_signals():
            return None
        if self._learned():
            return "learned"
        return None if self._rising() else "plateau"

    # -- the checks ----------------------------------------------------------

    def _new_classes(self) -> list[int]:
        before = set(self.stream.seen_classes(self._task - 1)) if self._task else set()
        return [c for c in self.stream.tasks[self._task] if c not in before]

    def _old_classes(self) -> list[int]:
        new = set(self._new_classes())
        return [c for c in self.stream.seen_classes(self._task) if c not in new]

    def _scores(self) -> dict:
        known = self.evaluator.num_classes
        new = self._new_classes()
        old = [c for c in self._old_classes() if c < known]
        if not self.conditional:
            return self._unconditional_scores(new, old)
        scores: dict = {}
        new_known = [c for c in new if c < known]
        if new_known:
            accuracy, confident = self._class_scores(new_known, self.rule.samples, 1)
            reference = self._real_scores(new_known)
            scores["new_accuracy"] = {str(c): accuracy[c] for c in new_known}
            scores["new_confident"] = {str(c): confident[c] for c in new_known}
            scores["new_reference"] = {str(c): reference[c] for c in new_known}
            scores["new_score"] = float(
                np.mean([(accuracy[c] + confident[c]) / 2 for c in new_known])
            )
            scores["new_learned"] = min(
                _learned_share(accuracy[c], confident[c], reference[c], self.rule)
                for c in new_known
            )
        unknown = [c for c in new if c >= known]
        if unknown:
            distances = [self._kid(c) for c in unknown]
            scores["new_kid"] = {
                str(c): d for c, d in zip(unknown, distances, strict=True)
            }
            scores["new_kid_score"] = float(
                np.mean([-math.log(max(d, 1e-6)) for d in distances])
            )
        if old:
            per_class = max(16, self.rule.old_samples // len(old))
            accuracy, confident = self._class_scores(old, per_class, 2)
            scores["old_score"] = float(
                np.mean([(accuracy[c] + confident[c]) / 2 for c in old])
            )
        return scores

    def _class_scores(self, classes, per_class: int, stream: int):
        sampler = class_sampler(self.model, seed=[self.seed, stream])
        return self.evaluator.scores_per_class(sampler, classes, n_per_class=per_class)

    def _real_scores(self, classes: list[int]) -> dict[int, list[float]]:
        """The evaluator's `[accuracy, confident share]` on the task's real
        images of each class: what its generated images are measured against."""
        missing = [c for c in classes if c not in self._reference]
        if missing:
            accuracy, confident = self.evaluator.scores_per_class(
                lambda c, n: self.stream.images_of(c, n),
                missing,
                n_per_class=4 * self.rule.samples,
            )
            for c in missing:
                self._reference[c] = [accuracy[c], confident[c]]
        return {c: self._reference[c] for c in classes}

    def _kid(self, label: int) -> float:
        if label not in self._real_features:
            real = self.stream.images_of(label, 4 * self.rule.samples)
            self._real_features[label] = self.evaluator.features(real)
        generated = class_sampler(self.model, seed=[self.seed, 3])(
            label, self.rule.samples
        )
        return float(
            kernel_distance(
                self._real_features[label], self.evaluator.features(generated)
            )
        )

    def _unconditional_scores(self, new: list[int], old: list[int]) -> dict:
        seen = self.stream.seen_classes(self._task)
        z = fixed_latents(
            self.rule.samples * len(seen), self.model.latent_dim, self.seed
        )
        images = self.model.generate_unconditional(z)
        probabilities = self.evaluator.predict_proba(images)
        predicted = np.argmax(probabilities, axis=-1)
        confident = np.max(probabilities, axis=-1) >= CONFIDENCE_THRESHOLD

        def share(classes):
            # Each class's confident share against its even share, capped at 1.
            return [
                min(1.0, float(np.mean(confident & (predicted == c))) * len(seen))
                for c in classes
            ]

        scores: dict = {}
        new_known = [c for c in new if c < self.evaluator.num_classes]
        if new_known:
            shares = share(new_known)
            scores["new_accuracy"] = {
                str(c): s for c, s in zip(new_known, shares, strict=True)
            }
            scores["new_score"] = float(np.mean(shares))
            scores["new_learned"] = min(shares) / self.rule.learned_accuracy
        if old:
            scores["old_score"] = float(np.mean(share(old)))
        scores["seen_class_fraction"] = class_distribution(
            self.evaluator, images, seen
        )["seen_class_fraction"]
        return scores

    # -- the history, for an exact resume -------------------------------------

    def _saved_checks(self, task: int, step: int) -> list[dict]:
        if not step or self.state_path is None or not self.state_path.exists():
            return []
        saved = json.loads(self.state_path.read_text())
        if saved.get("task") != task:
            return []
        return [c for c in saved["checks"] if c["iteration"] <= step]

    def _save_checks(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.state_path) as f:
            json.dump({"task": self._task, "checks": self.checks}, f)


def _learned_share(
    accuracy: float, confident: float, real: list[float], rule: PlateauRule
) -> float:
    """How far generated images have come towards learned (1 or more: there):
    the lower of their accuracy and confident share, each over the real
    images' (at most 1) and then over the rule's bar for it. A score the
    evaluator gives no real image of the class asks nothing of the
    generated ones."""
    ratios = [
        (min(1.0, value / reference) if reference > 0 else 1.0) / bar
        for value, reference, bar in zip(
            (accuracy, confident),
            real,
            (rule.learned_accuracy, rule.learned_confident),
            strict=True,
        )
    ]
    return min(ratios)
