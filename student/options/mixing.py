"""`student.mixing`: how the tasks share an optimizer step.

  mixed (BAM, the default)  each slot of a batch draws its task from p(τ) ∝ |D_τ|^α (`multitask_plan`)
  round-robin               task-homogeneous batches, the tasks in turn
  summed                    one batch of every task per step; the loss is the sum of the tasks' mean losses
  pcgrad                    summed, with PCGrad's gradient surgery (`pcgrad.py`)

Each plan is length-grouped (`student.group_by_length`) so that every step keeps its tasks and their counts.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from pipeline.core.config import StudentConfig
from pipeline.core.sampling import group_by_length, multitask_plan, shuffled_rows, task_probabilities
from student.options.hooks import Options

PER_TASK = ("summed", "pcgrad")  # a batch of every task per step, run as one micro-batch per task


def round_robin_plan(sizes: list[int], batch_size: int, total_steps: int, seed: int) -> np.ndarray:
    """Task-homogeneous batches, the tasks in turn: step s is a batch of task s mod T, the next rows of that task's
    shuffled stream. Every task gets the same number of steps whatever its size (task sampling does not apply)."""
    rng = np.random.default_rng(seed)
    owner = np.arange(total_steps) % len(sizes)
    plan = np.empty((total_steps, batch_size, 2), dtype=np.int64)
    plan[:, :, 0] = owner[:, None]
    for t, n in enumerate(sizes):
        steps = np.flatnonzero(owner == t)
        if len(steps):
            plan[steps, :, 1] = shuffled_rows(n, len(steps) * batch_size, rng).reshape(len(steps), batch_size)
    return plan


def summed_plan(sizes: list[int], batch_size: int, total_steps: int, seed: int) -> np.ndarray:
    """One batch of every task per step: [total_steps, T · batch_size, 2], step s holding `batch_size` rows of task
    0, then `batch_size` of task 1, …, each the next rows of that task's shuffled stream. Every task sees the same
    number of examples whatever its size (task sampling does not apply)."""
    rng = np.random.default_rng(seed)
    count = total_steps * batch_size
    blocks = [
        np.stack([np.full(count, t), shuffled_rows(n, count, rng)], axis=-1).reshape(total_steps, batch_size, 2)
        for t, n in enumerate(sizes)
    ]
    return np.concatenate(blocks, axis=1)


def group_task_batches_by_length(batches: np.ndarray, lengths: list[np.ndarray], window: int, seed: int) -> np.ndarray:
    """`group_by_length` for task-homogeneous batches [N, B, 2] that keeps every batch's task. Within each window of
    `window` batches, each task's examples are sorted by token length, cut into batches again, and dealt in random
    order to that task's own batches. Which examples each task sees, and where its batches are, stay the plan's.
    `window` 0 = off."""
    if window <= 0:
        return batches
    batch = batches.shape[1]
    rng = np.random.default_rng([seed, 0x6C656E])
    out = batches.copy()
    for start in range(0, len(batches), window):
        block = batches[start : start + window]
        owner = block[:, 0, 0]
        for t in np.unique(owner):
            slots = np.flatnonzero(owner == t)
            pairs = block[slots].reshape(-1, 2)
            pairs = pairs[np.argsort(lengths[t][pairs[:, 1]], kind="stable")]  # ties keep the plan's random order
            out[start + slots] = pairs.reshape(-1, batch, 2)[rng.permutation(len(slots))]
    return out


def examples_per_step(mixing: str, batch_size: int, num_tasks: int) -> int:
    """Rows of one optimizer step: `batch_size`, or one batch of every task when the task losses are summed."""
    return batch_size * num_tasks if mixing in PER_TASK else batch_size


def student_plan(
    mixing: str,
    sizes: list[int],
    lengths: list[np.ndarray],
    batch_size: int,
    total_steps: int,
    alpha: float,
    seed: int,
    shuffle_all: bool,
    window: int,
    weights: list[float] | None = None,
) -> np.ndarray:
    """The student's plan for `student.mixing`, length-grouped over windows of `window` steps (0 = off).

    mixed: `multitask_plan` (task weights `weights`, None = 1 each) then `group_by_length` (BAM). round-robin:
    `round_robin_plan`; summed and pcgrad: `summed_plan`; both grouped by `group_task_batches_by_length`, so each
    step keeps its tasks and their counts.
    """
    if mixing == "mixed":
        plan = multitask_plan(sizes, batch_size, total_steps, alpha, seed, shuffle_all, weights)
        return group_by_length(plan, lengths, window, seed)
    if mixing == "round-robin":
        plan = round_robin_plan(sizes, batch_size, total_steps, seed)
        return group_task_batches_by_length(plan, lengths, window, seed)
    plan = summed_plan(sizes, batch_size, total_steps, seed)
    blocks = plan.reshape(-1, batch_size, 2)  # block s·T + τ: task τ's batch of step s
    return group_task_batches_by_length(blocks, lengths, window * len(sizes), seed).reshape(plan.shape)


def sampling_weights(sc: StudentConfig, names: list[str]) -> list[float] | None:
    """Each task's `student.sampling_weights` entry (1 where it has none), in task-id order; None when none is set."""
    return [sc.sampling_weights.get(name, 1.0) for name in names] if sc.sampling_weights else None


def plan_of(
    sc: StudentConfig, names: list[str], sizes: list[int], lengths: list[np.ndarray], total_steps: int
) -> np.ndarray:
    """`student_plan` with the run's `student` keys."""
    args = (sc.batch_size, total_steps, sc.alpha, sc.seed, sc.shuffle_all, sc.group_by_length)
    return student_plan(sc.mixing, sizes, lengths, *args, sampling_weights(sc, names))


def reported_probabilities(sc: StudentConfig, names: list[str], sizes: list[int]) -> np.ndarray:
    """p(τ) of the plan: w_τ · |D_τ|^α for BAM (size-proportional when shuffling all data together); uniform
    otherwise, as every task gets the same number of batches."""
    if sc.mixing != "mixed":
        return task_probabilities(sizes, 0.0)
    if sc.shuffle_all:
        return task_probabilities(sizes, 1.0)
    return task_probabilities(sizes, sc.alpha, sampling_weights(sc, names))


def split_by_task(parts: list[np.ndarray]) -> list[np.ndarray]:
    """A batch per task of each micro-batch: PCGrad needs each task's own gradient, and summed pads each task to its
    own lengths (the loss, a sum of task means, is the same as over the whole step)."""
    return [part[part[:, 0] == t] for part in parts for t in np.unique(part[:, 0])]


def options(sc: StudentConfig, names: list[str]) -> Options:
    """The options' first calls: how `sc.mixing` plans the run of the tasks `names` (with their
    `sampling_weights`) and cuts a step into micro-batches; the rest BAM's."""
    return Options(
        examples_per_step=partial(examples_per_step, sc.mixing, sc.batch_size),
        plan=partial(plan_of, sc, names),
        task_probabilities=partial(reported_probabilities, sc, names),
        split=split_by_task if sc.mixing in PER_TASK else list,
    )
