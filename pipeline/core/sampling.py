"""Which examples each optimizer step sees: the whole run's plan, drawn once from the seed.

The plan is an int array [total_steps, batch, 2] of (task index, row). Being a pure function of the seed and the
sizes, it makes resuming exact (start at step s) and lets every process take its own slice of each global batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def task_probabilities(sizes: list[int], alpha: float, weights: Sequence[float] | None = None) -> np.ndarray:
    """p(τ) ∝ w_τ · |D_τ|^alpha (alpha 1: size-proportional; 0: uniform; the paper: 0.75); `weights` w per task
    (None: 1 each)."""
    p = np.asarray(sizes, dtype=np.float64) ** alpha * (1.0 if weights is None else np.asarray(weights, np.float64))
    return p / p.sum()


def steps_for(num_examples: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps for `epochs` passes over `num_examples` at `batch_size` (at least 1)."""
    return max(1, math.ceil(epochs * num_examples / batch_size))


def shuffled_rows(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` rows of 0..n-1: back-to-back random permutations, so each row appears once per pass."""
    passes = math.ceil(count / n)
    return np.concatenate([rng.permutation(n) for _ in range(passes)] or [np.zeros(0, np.int64)])[:count]


def single_task_plan(size: int, batch_size: int, total_steps: int, seed: int, task: int = 0) -> np.ndarray:
    """Plan for one task: shuffled passes over its rows, batches of `batch_size`."""
    rng = np.random.default_rng(seed)
    rows = shuffled_rows(size, total_steps * batch_size, rng)
    return np.stack([np.full_like(rows, task), rows], axis=-1).reshape(total_steps, batch_size, 2)


def multitask_plan(
    sizes: list[int], batch_size: int, total_steps: int, alpha: float, seed: int, shuffle_all: bool = False,
    weights: Sequence[float] | None = None,
) -> np.ndarray:  # fmt: skip
    """Mixed-task plan. Each slot draws its task from p(τ) ∝ w_τ · |D_τ|^alpha (`task_probabilities`), then the next
    row of that task's shuffled stream. `shuffle_all` instead shuffles all examples together (the paper's "no task
    sampling")."""
    rng = np.random.default_rng(seed)
    count = total_steps * batch_size
    if shuffle_all:
        owner = np.repeat(np.arange(len(sizes)), sizes)
        local = np.concatenate([np.arange(n) for n in sizes])
        order = shuffled_rows(len(owner), count, rng)
        pairs = np.stack([owner[order], local[order]], axis=-1)
    else:
        tasks = rng.choice(len(sizes), size=count, p=task_probabilities(sizes, alpha, weights))
        rows = np.zeros(count, dtype=np.int64)
        for t, n in enumerate(sizes):
            slots = np.flatnonzero(tasks == t)
            if len(slots):
                rows[slots] = shuffled_rows(n, len(slots), rng)
        pairs = np.stack([tasks, rows], axis=-1)
    return pairs.reshape(total_steps, batch_size, 2)


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


def rank_slice(plan_step: np.ndarray, rank: int, world: int, grad_accum: int) -> list[np.ndarray]:
    """This process's micro-batches of one global batch [B, 2]: B / world rows, split into `grad_accum` parts."""
    mine = plan_step[rank::world]
    return np.array_split(mine, grad_accum)
