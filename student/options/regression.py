"""`student.task_loss`, `task_weights`, `swap_pairs`: how a regression task (and a pair task) counts in the
multitask loss.

  task_loss mean (BAM)   each example's loss counts once; a regression task's squared error is on labels scaled to
                         [0, 1] by the task's declared range (STS-B: score / 5)
  task_loss label-scale  a regression task's squared error × (hi − lo)²: the error on the label's own scale
  task_loss standardised a regression task's head predicts standardised values (z, returned as z · σ + μ by the
                         head, with μ and σ the mean and standard deviation of its scaled training labels) and its
                         squared error is ÷ σ²: exactly the error of standardised targets, (z − (y − μ) / σ)², so
                         the task trains the same whatever range it declares
  task_loss prior        every task's loss ÷ the loss of predicting its label prior from its training labels: a
                         regression task as standardised (÷ σ², the squared error of predicting μ), a
                         classification task's cross-entropy ÷ the entropy of its label frequencies; each task's
                         loss is 1 for a model that knows only its training labels' distribution
  task_loss running      every task's loss ÷ a running estimate of its size (student/options/running_loss.py)
  task_weights           each named task's loss × its weight, on top of task_loss (e.g. standardised with
                         {stsb: 0.6}: STS-B's share of the gradient between BAM's and standardised's)
  swap_pairs             the named pair tasks read each training pair in the swapped order with probability 1/2
                         (the sentences of MRPC or STS-B are unordered); the teacher's target is the stored order's

docs/regression.md has the measured effect of each on glue-small.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.stats import entropy

from pipeline.core.config import ConfigError, StudentConfig
from pipeline.core.data import scaled_labels
from pipeline.core.tasks import TaskSpec
from student.options.hooks import Options, Run

SWAP_SALT = 0x73776170  # "swap": the swap draws' own stream, apart from the plan's


def standardisation(tasks: list[TaskSpec], labels: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    """Per regression task, (μ, σ) of its scaled training labels (`labels`: each task's, as stored)."""
    stats = {}
    for task, raw in zip(tasks, labels):
        if task.kind == "regression":
            scaled = scaled_labels(task, raw.astype(np.float64))
            stats[task.name] = (float(scaled.mean()), float(scaled.std()))
            if not stats[task.name][1] > 0:
                raise ConfigError(
                    f"'student.task_loss' standardised: the training labels of '{task.name}' are all equal "
                    "(standard deviation 0); use mean"
                )
    return stats


def label_entropies(tasks: list[TaskSpec], labels: list[np.ndarray]) -> dict[str, float]:
    """Per classification task, the entropy (nats) of its training labels' frequencies: the cross-entropy of
    predicting that prior for every example."""
    entropies = {}
    for task, raw in zip(tasks, labels):
        if task.kind != "regression":
            entropies[task.name] = float(entropy(np.bincount(raw.astype(np.int64), minlength=task.num_labels)))
            if not entropies[task.name] > 0:
                raise ConfigError(
                    f"'student.task_loss' prior: the training labels of '{task.name}' are all one class (entropy 0); "
                    "use mean"
                )
    return entropies


def loss_weights(
    task_loss: str, tasks: list[TaskSpec], stats: dict[str, tuple[float, float]], task_weights: dict[str, float],
    entropies: dict[str, float] | None = None,
) -> tuple[float, ...]:  # fmt: skip
    """Per task id, the factor its examples' losses count with (`multitask_loss`'s `weights`): (hi − lo)² for a
    regression task with label-scale, 1 / σ² with standardised and prior (`stats`: `standardisation`'s), 1 / H for
    a classification task with prior (`entropies`: `label_entropies`'), else 1 (with running too: its moving factor
    multiplies these); times the task's entry in `task_weights` (`student.task_weights`, 1 where it has none)."""
    weights = []
    for task in tasks:
        if task_loss == "prior" and task.kind != "regression":
            weight = 1.0 / entropies[task.name]
        elif task.kind != "regression" or task_loss in ("mean", "running"):  # running: student/options/running_loss.py
            weight = 1.0
        elif task_loss == "label-scale":
            lo, hi = task.label_range
            weight = float((hi - lo) ** 2)
        else:
            weight = 1.0 / stats[task.name][1] ** 2
        weights.append(weight * task_weights.get(task.name, 1.0))
    return tuple(weights)


def swap_draws(seed: int, step: int, rows: np.ndarray, swapped_tasks: np.ndarray) -> np.ndarray:
    """Which (task, row) pairs of `rows` [N, 2] step `step` reads in the swapped order: a fair coin per example and
    step, drawn from (seed, step, task, row) alone, so that every process count and micro-batching draws the same;
    never for a task not in `swapped_tasks` (a boolean mask by task id)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=bool)
    keys = [np.random.SeedSequence([seed, SWAP_SALT, step, int(t), int(r)]).generate_state(1)[0] for t, r in rows]
    return swapped_tasks[rows[:, 0]] & (np.asarray(keys, dtype=np.uint32) & 1).astype(bool)


def add(opts: Options, sc: StudentConfig, run: Run) -> Options:
    if sc.task_loss != "mean" or sc.task_weights:
        labels = [s.labels for s in run.train]
        stats = standardisation(run.tasks, labels) if sc.task_loss in ("standardised", "prior") else {}
        entropies = label_entropies(run.tasks, labels) if sc.task_loss == "prior" else None
        weights = loss_weights(sc.task_loss, run.tasks, stats, sc.task_weights, entropies)
        opts = dataclasses.replace(opts, loss_weights=weights, head_affine=stats or None)
    if not sc.swap_pairs:
        return opts
    names = [t.name for t in run.tasks]
    single = [t.name for t in run.tasks if t.name in sc.swap_pairs and len(t.text_columns) != 2]
    if single:
        raise ConfigError(f"'student.swap_pairs' names {single}: not sentence-pair tasks, nothing to swap")
    untyped = [
        t.name for t, s in zip(run.tasks, run.train) if t.name in sc.swap_pairs and not (s.token_type_ids == 1).any()
    ]
    if untyped:
        raise ConfigError(
            f"'student.swap_pairs' names {untyped}: this tokenizer marks no second sentence (no token type 1), so the "
            "pairs cannot be cut in two; leave them out"
        )
    mask = np.array([name in sc.swap_pairs for name in names])
    return dataclasses.replace(opts, swaps=lambda step, rows: swap_draws(sc.seed, step, rows, mask))
