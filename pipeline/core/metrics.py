"""Task metrics on a 0..100 scale: MCC, F1, accuracy, Pearson and Spearman correlation.

Degenerate inputs never give NaN: constant predictions (or constant labels) score 0 for MCC and the correlations.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from pipeline.core.tasks import TaskSpec


def _mcc(predictions: np.ndarray, labels: np.ndarray) -> float:
    # MCC is undefined when labels and predictions together hold one class (sklearn warns, then says 0).
    if len(np.union1d(labels, predictions)) < 2:
        return 0.0
    return float(np.nan_to_num(matthews_corrcoef(labels, predictions), nan=0.0))


def _f1(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    # Two classes: F1 of class 1, the positive class of MRPC and QQP. More: the unweighted mean over the classes.
    average = "binary" if num_labels == 2 else "macro"
    return float(f1_score(labels, predictions, pos_label=1, average=average, zero_division=0.0))


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(accuracy_score(labels, predictions))


def _correlation(fn: Callable, predictions: np.ndarray, labels: np.ndarray) -> float:
    # A constant input has no defined correlation (scipy warns and returns NaN); report 0 instead.
    if len(labels) < 2 or np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0
    return float(np.nan_to_num(fn(predictions, labels)[0], nan=0.0))


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mcc": _mcc,
    "accuracy": _accuracy,
    "pearson": lambda p, y: _correlation(stats.pearsonr, p, y),
    "spearman": lambda p, y: _correlation(stats.spearmanr, p, y),
}


def _prepare(task: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and turn predictions into class ids [N] (classification) or scores [N] (regression)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"{task.name}: labels must be a non-empty 1-D array, got shape {labels.shape}")
    if len(predictions) != len(labels):
        raise ValueError(f"{task.name}: {len(predictions)} predictions for {len(labels)} labels")
    if not np.isfinite(predictions).all():
        raise ValueError(f"{task.name}: predictions contain NaN or inf")
    if task.kind == "regression":
        if predictions.ndim == 2 and predictions.shape[1] == 1:
            predictions = predictions[:, 0]
        if predictions.ndim != 1:
            raise ValueError(f"{task.name}: regression predictions must be [N] or [N, 1], got {predictions.shape}")
        scores = labels.astype(np.float64)
        if not np.isfinite(scores).all():
            raise ValueError(f"{task.name}: labels contain NaN or inf")
        return predictions, scores
    if predictions.ndim != 2 or predictions.shape[1] != task.num_labels:
        raise ValueError(
            f"{task.name}: predictions must be logits or probabilities [N, {task.num_labels}], got {predictions.shape}"
        )
    label_ids = labels.astype(np.int64)
    if not np.array_equal(label_ids, labels) or label_ids.min() < 0 or label_ids.max() >= task.num_labels:
        raise ValueError(f"{task.name}: labels must be class indices 0..{task.num_labels - 1}")
    return predictions.argmax(axis=1), label_ids


def compute_metrics(task: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every metric in `task.metrics`, scaled to 0..100.

    Args:
        task: The task; its `metrics` name what is computed.
        predictions: Classification: logits or probabilities [N, C] (the argmax is the prediction).
            Regression: scores [N] or [N, 1] on the label's original scale (STS-B: 0..5).
        labels: Gold class indices or scores [N].

    Returns:
        `{metric name: value}` in `task.metrics` order; F1 is binary with class 1 as the positive class for two
        classes, macro-averaged (over the classes present) for more.

    Raises:
        ValueError: Empty input, mismatched lengths, wrong shapes, non-finite predictions or invalid labels.
    """
    predictions, labels = _prepare(task, predictions, labels)
    metrics = _METRICS | {"f1": partial(_f1, num_labels=task.num_labels)}
    return {name: 100.0 * metrics[name](predictions, labels) for name in task.metrics}


def main_score(task: TaskSpec, metrics: dict[str, float]) -> float:
    """The paper's per-task number: `metrics[task.main_metric]` (CoLA MCC, STS-B Spearman, otherwise accuracy)."""
    if task.main_metric not in metrics:
        raise ValueError(f"{task.name}: metrics lack {task.main_metric!r}; got {sorted(metrics)}")
    return metrics[task.main_metric]
