"""Tests of keras_mergan.evaluation.continual: the accuracy matrix and its summaries."""

import numpy as np
import pytest

from keras_mergan.evaluation.continual import (
    AccuracyMatrix,
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    class_forgetting,
    summarize,
)

NAN = np.nan
# Three tasks learning classes "b", then "a", then "c".
VALUES = np.array(
    [
        [0.9, NAN, NAN],
        [0.6, 1.0, NAN],
        [0.7, 0.4, 0.8],
    ]
)


def test_summaries_of_a_hand_made_matrix():
    assert average_accuracy(VALUES).tolist() == pytest.approx([0.9, 0.8, 19 / 30])
    assert average_incremental_accuracy(VALUES) == pytest.approx(
        (0.9 + 0.8 + 19 / 30) / 3
    )
    # best earlier value minus the last: b 0.9 - 0.7, a 1.0 - 0.4; c is new
    forgetting = class_forgetting(VALUES)
    assert forgetting[:2].tolist() == pytest.approx([0.2, 0.6])
    assert np.isnan(forgetting[2])
    # last value minus the value when learned: b 0.7 - 0.9, a 0.4 - 1.0
    assert backward_transfer(VALUES) == pytest.approx(-0.4)
    assert backward_transfer(VALUES[:1, :1]) is None


def test_rows_in_any_class_order_are_named_by_class():
    names = ["zero", "one", "two"]
    rows = [
        {"task": 2, "accuracy": {"1": 0.6, "0": 1.0}},
        {"task": 1, "accuracy": {"1": 0.9}},
        {"task": 3, "accuracy": {"1": 0.7, "0": 0.4, "2": 0.8}},
        {"task": 4},  # an unconditional method's task: no accuracy
    ]
    matrix = AccuracyMatrix.from_rows(rows, names)
    assert matrix.tasks == (1, 2, 3)
    assert matrix.classes == ("one", "zero", "two")
    np.testing.assert_array_equal(matrix.values, VALUES)
    summary = summarize(matrix)
    assert summary["forgetting"] == pytest.approx({"one": 0.2, "zero": 0.6})
    assert summary["mean_forgetting"] == pytest.approx(0.4)
    assert list(summary["average_accuracy"]) == ["1", "2", "3"]
    again = AccuracyMatrix.from_dict(matrix.to_dict())
    assert again.classes == matrix.classes
    np.testing.assert_array_equal(again.values, matrix.values)
    assert matrix.to_dict()["values"][0] == [0.9, None, None]


def test_a_single_task_has_nothing_forgotten_and_bad_shapes_are_refused():
    summary = summarize(AccuracyMatrix((1,), ("a",), np.array([[0.5]])))
    assert summary["forgetting"] == {} and summary["mean_forgetting"] is None
    assert summary["average_incremental_accuracy"] == 0.5
    with pytest.raises(ValueError, match="shape"):
        AccuracyMatrix((1, 2), ("a",), np.array([[0.5]]))
    with pytest.raises(ValueError, match="seen class"):
        average_accuracy(np.array([[NAN]]))
