"""GLUE metrics against hand-computed values and scipy references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pipeline.core.metrics import compute_metrics, main_score
from pipeline.core.tasks import TASKS


def _logits(classes: list[int], num_labels: int = 2) -> np.ndarray:
    """One-hot rows [N, C] whose argmax is `classes`."""
    return np.eye(num_labels)[classes]


# Confusion matrix with TP=3, TN=2, FP=1, FN=2 (positive class 1).
LABELS = [1, 1, 1, 1, 1, 0, 0, 0]
PREDICTED = [1, 1, 1, 0, 0, 0, 0, 1]
TP, TN, FP, FN = 3, 2, 1, 2


def test_mcc_matches_formula() -> None:
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    metrics = compute_metrics(TASKS["cola"], _logits(PREDICTED), np.array(LABELS))
    assert list(metrics) == ["mcc"]
    assert metrics["mcc"] == pytest.approx(100 * expected)


def test_f1_and_accuracy_match_formula() -> None:
    precision, recall = TP / (TP + FP), TP / (TP + FN)
    metrics = compute_metrics(TASKS["mrpc"], _logits(PREDICTED), np.array(LABELS))
    assert metrics["f1"] == pytest.approx(100 * 2 * precision * recall / (precision + recall))
    assert metrics["accuracy"] == pytest.approx(100 * (TP + TN) / len(LABELS))
    assert main_score(TASKS["mrpc"], metrics) == metrics["accuracy"]


def test_argmax_of_probabilities_three_classes() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.5, 0.4, 0.1]])
    metrics = compute_metrics(TASKS["mnli"], probabilities, np.array([0, 2, 1, 2]))
    assert metrics == {"accuracy": pytest.approx(75.0)}


@pytest.mark.parametrize("name", ["cola", "sst2", "mrpc", "qqp", "rte", "wnli", "qnli"])
def test_perfect_binary_predictions_score_100(name: str) -> None:
    metrics = compute_metrics(TASKS[name], _logits(LABELS) * 3.0 - 1.0, np.array(LABELS, dtype=np.float32))
    assert metrics == {metric: pytest.approx(100.0) for metric in TASKS[name].metrics}


def test_regression_matches_scipy_and_accepts_column_shape() -> None:
    labels = np.array([0.0, 1.2, 2.5, 3.8, 5.0, 4.4])
    predictions = np.array([0.3, 1.0, 3.1, 3.0, 4.6, 4.9])
    metrics = compute_metrics(TASKS["stsb"], predictions, labels)
    assert metrics["pearson"] == pytest.approx(100 * stats.pearsonr(predictions, labels)[0])
    assert metrics["spearman"] == pytest.approx(100 * stats.spearmanr(predictions, labels)[0])
    assert compute_metrics(TASKS["stsb"], predictions[:, None], labels) == metrics
    assert main_score(TASKS["stsb"], metrics) == metrics["spearman"]
    assert compute_metrics(TASKS["stsb"], labels * 0.5 + 1.0, labels) == {
        "pearson": pytest.approx(100.0),
        "spearman": pytest.approx(100.0),
    }


def test_constant_inputs_give_zero_not_nan() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's ConstantInputWarning would mean a NaN was papered over late
        assert compute_metrics(TASKS["cola"], _logits([1] * 8), np.array(LABELS)) == {"mcc": 0.0}
        assert compute_metrics(TASKS["stsb"], np.full(5, 2.5), np.arange(5.0)) == {"pearson": 0.0, "spearman": 0.0}
        assert compute_metrics(TASKS["stsb"], np.arange(5.0), np.full(5, 2.5)) == {"pearson": 0.0, "spearman": 0.0}
        assert compute_metrics(TASKS["stsb"], np.array([1.0]), np.array([2.0])) == {"pearson": 0.0, "spearman": 0.0}
        assert compute_metrics(TASKS["mrpc"], _logits([0] * 8), np.array(LABELS))["f1"] == 0.0


@pytest.mark.parametrize(
    "name, predictions, labels",
    [
        ("sst2", np.zeros((0, 2)), np.zeros(0)),  # empty
        ("stsb", np.zeros(0), np.zeros(0)),  # empty
        ("sst2", np.zeros((3, 2)), np.zeros(2)),  # length mismatch
        ("sst2", np.zeros((3, 3)), np.zeros(3)),  # wrong class count
        ("sst2", np.zeros(3), np.zeros(3)),  # class ids instead of logits
        ("sst2", np.zeros((2, 2)), np.array([0, 2])),  # label outside the classes
        ("stsb", np.zeros((3, 2)), np.zeros(3)),  # regression with two outputs
        ("stsb", np.array([1.0, np.nan]), np.zeros(2)),  # NaN prediction
    ],
)
def test_invalid_input_raises(name: str, predictions: np.ndarray, labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match=name):
        compute_metrics(TASKS[name], predictions, labels)


def test_main_score_missing_metric_raises() -> None:
    with pytest.raises(ValueError, match="mcc"):
        main_score(TASKS["cola"], {"accuracy": 50.0})


@settings(max_examples=100, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=30),
    scores=st.lists(st.tuples(st.floats(0, 5), st.floats(-1, 6)), min_size=1, max_size=30),
)
def test_metrics_are_finite_and_bounded(pairs: list[tuple[int, int]], scores: list[tuple[float, float]]) -> None:
    labels, predicted = np.array(pairs).T
    values = [
        *compute_metrics(TASKS["cola"], _logits(list(predicted % 2)), labels % 2).values(),
        *compute_metrics(TASKS["mrpc"], _logits(list(predicted % 2)), labels % 2).values(),
        *compute_metrics(TASKS["mnli"], _logits(list(predicted), 3), labels).values(),
        *compute_metrics(TASKS["stsb"], np.array(scores)[:, 1], np.array(scores)[:, 0]).values(),
    ]
    assert all(math.isfinite(v) and -100.0 - 1e-9 <= v <= 100.0 + 1e-9 for v in values)
