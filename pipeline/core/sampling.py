"""Which examples each optimizer step sees: the whole run's plan, drawn once from the seed.

The plan is an int array [total_steps, batch, 2] of (task index, row). Being a pure function of the seed and the
sizes, it makes resuming exact (start at step s) and lets every process take its own slice of each global batch.
"""

from __future__ import annotations

import math

import numpy as np


def task_probabilities(sizes: list[int], alpha: float) -> np.ndarray:
    """p(τ) ∝ |D_τ|^alpha (alpha 1: size-proportional; 0: uniform; the paper: 0.75)."""
    weights = np.asarray(sizes, dtype=np.float64) ** alpha
    return weights / weights.sum()


def steps_for(num_examples: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps for `epochs` passes over `num_examples` at `batch_size` (at least 1)."""
    return max(1, math.ceil(epochs * num_examples / batch_size))


def _stream(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` rows of 0..n-1: back-to-back random permutations, so each row appears once per pass."""
    passes = math.ceil(count / n)
    return np.concatenate([rng.permutation(n) for _ in range(passes)] or [np.zeros(0, np.int64)])[:count]


def single_task_plan(size: int, batch_size: int, total_steps: int, seed: int, task: int = 0) -> np.ndarray:
    """Plan for one task: shuffled passes over its rows, batches of `batch_size`."""
    rng = np.random.default_rng(seed)
    rows = _stream(size, total_steps * batch_size, rng)
    return np.stack([np.full_like(rows, task), rows], axis=-1).reshape(total_steps, batch_size, 2)


def multitask_plan(
    sizes: list[int], batch_size: int, total_steps: int, alpha: float, seed: int, shuffle_all: bool = False
) -> np.ndarray:
    """Mixed-task plan. Each slot draws its task from p(τ) ∝ |D_τ|^alpha, then the next row of that task's
    shuffled stream. `shuffle_all` instead shuffles all examples together (the paper's "no task sampling")."""
    rng = np.random.default_rng(seed)
    count = total_steps * batch_size
    if shuffle_all:
        owner = np.repeat(np.arange(len(sizes)), sizes)
        local = np.concatenate([np.arange(n) for n in sizes])
        order = _stream(len(owner), count, rng)
        pairs = np.stack([owner[order], local[order]], axis=-1)
    else:
        tasks = rng.choice(len(sizes), size=count, p=task_probabilities(sizes, alpha))
        rows = np.zeros(count, dtype=np.int64)
        for t, n in enumerate(sizes):
            slots = np.flatnonzero(tasks == t)
            if len(slots):
                rows[slots] = _stream(n, len(slots), rng)
        pairs = np.stack([tasks, rows], axis=-1)
    return pairs.reshape(total_steps, batch_size, 2)


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
            plan[steps, :, 1] = _stream(n, len(steps) * batch_size, rng).reshape(len(steps), batch_size)
    return plan


def summed_plan(sizes: list[int], batch_size: int, total_steps: int, seed: int) -> np.ndarray:
    """One batch of every task per step: [total_steps, T · batch_size, 2], step s holding `batch_size` rows of task
    0, then `batch_size` of task 1, …, each the next rows of that task's shuffled stream. Every task sees the same
    number of examples whatever its size (task sampling does not apply)."""
    rng = np.random.default_rng(seed)
    count = total_steps * batch_size
    blocks = [
        np.stack([np.full(count, t), _stream(n, count, rng)], axis=-1).reshape(total_steps, batch_size, 2)
        for t, n in enumerate(sizes)
    ]
    return np.concatenate(blocks, axis=1)


def examples_per_step(mixing: str, batch_size: int, num_tasks: int) -> int:
    """Rows of one optimizer step: `batch_size`, or one batch of every task when the task losses are summed."""
    return batch_size * num_tasks if mixing in ("summed", "pcgrad") else batch_size


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
) -> np.ndarray:
    """The student's plan for `student.mixing`, length-grouped over windows of `window` steps (0 = off).

    mixed: `multitask_plan` then `group_by_length` (BAM). round-robin: `round_robin_plan`; summed and pcgrad:
    `summed_plan`; both grouped by `group_task_batches_by_length`, so each step keeps its tasks and their counts.
    """
    if mixing == "mixed":
        plan = multitask_plan(sizes, batch_size, total_steps, alpha, seed, shuffle_all)
        return group_by_length(plan, lengths, window, seed)
    if mixing == "round-robin":
        plan = round_robin_plan(sizes, batch_size, total_steps, seed)
        return group_task_batches_by_length(plan, lengths, window, seed)
    plan = summed_plan(sizes, batch_size, total_steps, seed)
    blocks = plan.reshape(-1, batch_size, 2)  # block s·T + τ: task τ's batch of step s
    return group_task_batches_by_length(blocks, lengths, window * len(sizes), seed).reshape(plan.shape)


def group_by_length(plan: np.ndarray, lengths: list[np.ndarray], window: int, seed: int) -> np.ndarray:
    """Batches of similar length, so dynamic padding pads little. Within each window of `window` consecutive
    batches, the examples are sorted by token length and cut into batches again, and the window's batches are
    shuffled. A window only reorders its own examples, so which examples (and tasks) the run sees, and how often,
    is exactly the plan's; at every window boundary the per-task counts so far are unchanged. `window` 0 = off.
    """
    if window <= 0:
        return plan
    steps, batch, _ = plan.shape
    rng = np.random.default_rng([seed, 0x6C656E])  # its own stream: switching grouping on does not change the plan
    out = np.empty_like(plan)
    for start in range(0, steps, window):
        block = plan[start : start + window].reshape(-1, 2)
        size = np.array([lengths[t][r] for t, r in block])
        block = block[np.argsort(size, kind="stable")]  # ties keep the plan's random order
        batches = block.reshape(-1, batch, 2)
        out[start : start + len(batches)] = batches[rng.permutation(len(batches))]
    return out


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


def rank_slice(plan_step: np.ndarray, rank: int, world: int, grad_accum: int) -> list[np.ndarray]:
    """This process's micro-batches of one global batch [B, 2]: B / world rows, split into `grad_accum` parts."""
    mine = plan_step[rank::world]
    return np.array_split(mine, grad_accum)
