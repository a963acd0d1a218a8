"""Scoring a run: the evaluator classifier, scores, continual measures, reports.

- `evaluator`: the classifier that scores generated images per category.
- `scores`: FID, KID and precision/recall on evaluator features.
- `continual`: the accuracy matrix and its continual-learning measures.
- `replay_health`: whether a replay generator still produces every old class.
- `unconditional`: the class-distribution report of unconditional methods.
- `run_scores`: `evaluate_run`, everything above for a finished run folder.
- `tables`, `plots`: the text tables and figures of a run's results.
- `classifier_tasks`: split and permuted MNIST for a solver (DGR's protocols).
"""
