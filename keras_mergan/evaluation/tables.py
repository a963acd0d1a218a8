"""Text tables of a run's results, as the CLI prints them.

`format_accuracy_table` is the per-task accuracy table printed after
training; `format_evaluation` adds what
`keras_mergan.evaluation.run_scores.evaluate_run` reports (continual-learning
summaries, FID, KID, precision/recall).
"""

from collections.abc import Sequence

__all__ = [
    "format_accuracy_table",
    "format_class_shares",
    "format_continual",
    "format_evaluation",
]


def format_accuracy_table(results: Sequence[dict], class_names: Sequence[str]) -> str:
    """Markdown table: one row per task, accuracy % per class and the mean.

    One column per class some row scores, in the order the classes were
    first seen (a run over 9, 4, 7 of ten digits shows those three). Rows
    holding ``fid`` or ``reverse_accuracy`` (from `evaluate_run`) add those
    columns.

    Example:
        >>> rows = [{"task": 1, "accuracy": {"1": 0.5}, "mean_accuracy": 0.5},
        ...         {"task": 2, "accuracy": {"1": 0.4, "0": 1.0}, "mean_accuracy": 0.7}]
        >>> print(format_accuracy_table(rows, ["zero", "one", "two"]))
        | task | one | zero | mean |
        |---|---|---|---|
        | 1 | 50.0 |  | 50.00 |
        | 2 | 40.0 | 100.0 | 70.00 |
    """
    extra = [
        (key, title)
        for key, title in (("fid", "FID"), ("reverse_accuracy", "reverse acc."))
        if any(key in row for row in results)
    ]
    shown = list(dict.fromkeys(c for row in results for c in row["accuracy"]))
    titles = [
        "task",
        *(class_names[int(c)] for c in shown),
        "mean",
        *(title for _, title in extra),
    ]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for row in results:
        cells = [str(row["task"])]
        cells += [
            f"{100 * row['accuracy'][c]:.1f}" if c in row["accuracy"] else ""
            for c in shown
        ]
        cells.append(f"{100 * row['mean_accuracy']:.2f}")
        for key, _ in extra:
            value = row.get(key)
            if value is None:
                cells.append("")
            else:
                cells.append(f"{value:.2f}" if key == "fid" else f"{100 * value:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_class_shares(results: Sequence[dict], class_names: Sequence[str]) -> str:
    """Markdown table of a generator that draws no class: per task, the share
    (%) of its samples the evaluator puts in each seen class, the share it
    confidently puts in a seen class, and the FID where the rows have it.

    Example:
        >>> rows = [{"task": 2, "seen_classes": [0, 1], "confidence": 0.9,
        ...          "generated_classes": {"0": 0.5, "1": 0.25, "2": 0.25},
        ...          "seen_class_fraction": 0.6, "fid": 12.5}]
        >>> print(format_class_shares(rows, ["zero", "one", "two"]))
        | task | zero | one | seen, p >= 0.9 | FID |
        |---|---|---|---|---|
        | 2 | 50.0 | 25.0 | 60.0 | 12.50 |
    """
    shown = list(dict.fromkeys(c for row in results for c in row["seen_classes"]))
    confidence = results[0]["confidence"]
    with_fid = any("fid" in row for row in results)
    titles = [
        "task",
        *(class_names[int(c)] for c in shown),
        f"seen, p >= {confidence:g}",
        *(["FID"] if with_fid else []),
    ]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for row in results:
        shares = row["generated_classes"]
        cells = [str(row["task"])]
        cells += [
            f"{100 * shares[str(c)]:.1f}" if c in row["seen_classes"] else ""
            for c in shown
        ]
        cells.append(f"{100 * row['seen_class_fraction']:.1f}")
        if with_fid:
            cells.append(_number(row.get("fid")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_evaluation(report: dict) -> str:
    """Accuracy table (class-share table for a generator that draws no
    class), continual summaries, and FID, KID, precision/recall tables."""
    names = report["class_names"]
    scored = [row for row in report["tasks"] if "accuracy" in row]
    classless = [row for row in report["tasks"] if "generated_classes" in row]
    parts = []
    if scored:
        parts.append(format_accuracy_table(scored, names))
    if classless:
        parts.append(
            "Share (%) of the samples the evaluator puts in each seen class\n\n"
            + format_class_shares(classless, names)
        )
    text = "\n\n".join(parts)
    if report.get("continual"):
        text += "\n\n" + format_continual(report["continual"])
    tables = (
        ("fid", "FID on evaluator features (lower is better)", _number),
        ("kid", "KID on evaluator features (unbiased, lower is better)", _small),
        (
            "precision_recall",
            "Precision / recall (%) on evaluator features, k = 3 (higher is better)",
            _precision_recall,
        ),
    )
    for key, title, cell in tables:
        rows = [row for row in report["tasks"] if f"{key}_per_class" in row]
        if not rows:
            continue
        # The classes some row scores, in the order first seen, as the
        # accuracy table shows them: a run over 0-2 has no column for 3-9.
        shown = list(dict.fromkeys(c for row in rows for c in row[f"{key}_per_class"]))
        lines = ["| task | " + " | ".join(names[int(c)] for c in shown) + " | all |"]
        lines.append("|" + "---|" * (len(shown) + 2))
        for row in rows:
            per_class = row[f"{key}_per_class"]
            cells = [cell(per_class.get(c)) for c in shown]
            lines.append(
                f"| {row['task']} | " + " | ".join(cells) + f" | {cell(row[key])} |"
            )
        text += f"\n\n{title}\n\n" + "\n".join(lines)
    return text


def format_continual(summary: dict) -> str:
    """Lines of `keras_mergan.evaluation.continual.summarize`'s scores, in %.

    Example:
        >>> print(format_continual({
        ...     "average_accuracy": {"1": 1.0, "2": 0.7},
        ...     "average_incremental_accuracy": 0.85,
        ...     "forgetting": {"3": 0.5},
        ...     "mean_forgetting": 0.5,
        ...     "backward_transfer": -0.5,
        ... }))
        Average accuracy (%) after each task: 1: 100.00, 2: 70.00
        Average incremental accuracy: 85.00%
        Forgetting (%) per class (best earlier minus last): 3: 50.00; mean 50.00
        Backward transfer: -50.00%
    """

    def percent(value):
        return "-" if value is None else f"{100 * value:.2f}"

    def listed(values: dict) -> str:
        return ", ".join(f"{key}: {percent(value)}" for key, value in values.items())

    lines = [
        f"Average accuracy (%) after each task: {listed(summary['average_accuracy'])}",
        "Average incremental accuracy: "
        f"{percent(summary['average_incremental_accuracy'])}%",
    ]
    if summary["forgetting"]:
        lines.append(
            "Forgetting (%) per class (best earlier minus last): "
            f"{listed(summary['forgetting'])}; "
            f"mean {percent(summary['mean_forgetting'])}"
        )
    if summary["backward_transfer"] is not None:
        lines.append(f"Backward transfer: {percent(summary['backward_transfer'])}%")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _small(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _precision_recall(value: dict | None) -> str:
    if value is None:
        return ""
    return f"{100 * value['precision']:.0f} / {100 * value['recall']:.0f}"
