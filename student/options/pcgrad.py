"""PCGrad gradient surgery (Yu et al., 2020, "Gradient Surgery for Multi-Task Learning", Algorithm 1).

`student.mixing: pcgrad`: the plan and micro-batches of `summed` (`mixing.py`), one per task. Each task's gradient of
the shared parameters is projected onto the normal plane of every other task's gradient it conflicts with (negative
dot product), the others taken in random order; the projected gradients are summed. Task heads are not shared: each
gets its own task's gradient, as without surgery.

PCGrad runs on one process: it needs every task's whole gradient in one place, before any is summed, and
DistributedDataParallel only ever all-reduces sums.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from functools import partial

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn

from pipeline.core.config import ConfigError, StudentConfig
from student.options.hooks import Batch, Logged, LossOf, Options, Run


def pcgrad_coefficients(gram: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """PCGrad's projection of per-task gradients, as coefficients over the original gradients.

    For each task i, over the other tasks j in a random order: if g_i^PC · g_j < 0, then
    g_i^PC ← g_i^PC − (g_i^PC · g_j) / ‖g_j‖² · g_j, where g_j is task j's original gradient. Every g_i^PC is thus a
    combination Σ_k A[i, k] g_k of the original gradients, and every dot product it needs is a row of A times the
    Gram matrix G[k, j] = g_k · g_j: the surgery runs on T × T numbers, not on T copies of the gradient.

    Args:
        gram: [T, T] the tasks' gradients' dot products (a task absent from the step has a zero row and column: it
            is never projected against, since its dot products are 0).
        rng: draws each task's order of the others (seeded by the caller, so a resumed run draws the same).
    Returns:
        [T, T] A, with g^PC = A @ g.
    """
    tasks = len(gram)
    coefficients = np.eye(tasks)
    for i in range(tasks):
        for j in rng.permutation(tasks):
            if j == i:
                continue
            dot = coefficients[i] @ gram[:, j]
            if dot < 0:
                coefficients[i, j] -= dot / gram[j, j]
    return coefficients


def _coefficients(grads: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """`pcgrad_coefficients` of the [T, P] task gradients (their Gram matrix in float64), as grads' dtype."""
    return torch.from_numpy(pcgrad_coefficients((grads @ grads.T).double().cpu().numpy(), rng)).to(grads)


def project_conflicting(grads: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """[T, P] each task's flattened gradient → [T, P] the projected gradients g_i^PC (`pcgrad_coefficients`)."""
    return _coefficients(grads, rng) @ grads


def projected_sum(grads: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Σ_i g_i^PC, what the optimizer gets, as one weighted sum of the original gradients: Σ_k (Σ_i A[i, k]) g_k."""
    return _coefficients(grads, rng).sum(0) @ grads


def pcgrad_backward(model: nn.Module, task_losses: Iterable[tuple[int, torch.Tensor]], num_tasks: int, rng) -> None:
    """Set every trainable parameter's `.grad` to the PCGrad combination of the tasks' gradients.

    Args:
        model: the (unwrapped) MultiTaskModel; parameters named `heads.*` are task-specific, all others shared.
        task_losses: (task index, loss) pairs, each loss on some of that task's rows of the step; a task's gradient
            is the sum over its pairs. Taken one at a time: each loss's graph is freed before the next forward.
        num_tasks: T.
        rng: for `pcgrad_coefficients`.

    Memory: the [T, P] task gradients (P: the trainable parameters), once; the surgery itself needs only their
    [T, T] Gram matrix, and the sum of the projected gradients is one weighted sum of them, Σ_k (Σ_i A[i, k]) g_k.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for n, p in named if not n.startswith("heads.")] + [p for n, p in named if n.startswith("heads.")]
    shared = sum(p.numel() for n, p in named if not n.startswith("heads."))
    grads = torch.zeros(num_tasks, sum(p.numel() for p in params), device=params[0].device)
    for task, loss in task_losses:
        if not loss.requires_grad:  # nothing that trains touches it (a frozen encoder under a parameter-free head)
            continue
        parts = torch.autograd.grad(loss, params, allow_unused=True)  # heads of other tasks: None
        offset = 0
        for g, p in zip(parts, params):
            if g is not None:
                grads[task, offset : offset + p.numel()] += g.reshape(-1)
            offset += p.numel()
    head_total = grads[:, shared:].sum(0)  # each head: its own task's gradient (the others' rows are 0 there)
    total = torch.cat([projected_sum(grads[:, :shared], rng), head_total])
    offset = 0
    for p in params:
        p.grad = total[offset : offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()


def _task_losses(
    batches: list[Batch], loss_of: LossOf, accelerator: Accelerator, logged: Logged
) -> Iterator[tuple[int, torch.Tensor]]:
    """(task, scaled loss) of each single-task batch, one forward at a time; each record goes to `logged`."""
    for batch in batches:
        loss, per_task = loss_of(batch)
        logged.append(("loss", per_task))
        yield int(batch["task_ids"][0]), loss if accelerator.scaler is None else accelerator.scaler.scale(loss)


def backward(
    num_tasks: int, seed: int, step: int, model: nn.Module, accelerator: Accelerator, batches: list[Batch],
    loss_of: LossOf,
) -> Logged:  # fmt: skip
    """The step's gradient by `pcgrad_backward`, its task order drawn from (seed, step): a resumed run draws the
    same. `batches` hold one task each (`mixing.split_by_task`)."""
    logged: Logged = []
    task_losses = _task_losses(batches, loss_of, accelerator, logged)
    pcgrad_backward(accelerator.unwrap_model(model), task_losses, num_tasks, np.random.default_rng([seed, step]))
    return logged


def add(opts: Options, sc: StudentConfig, run: Run) -> Options:
    """With `mixing: pcgrad`, PCGrad's backward; refused on more than one process."""
    if sc.mixing != "pcgrad":
        return opts
    if run.processes > 1:
        raise ConfigError(
            f"'student.mixing' pcgrad runs on one process (it projects each task's whole gradient); this run has "
            f"{run.processes}. Run it without `accelerate launch`, or choose 'student.mixing' summed"
        )
    return dataclasses.replace(opts, backward=partial(backward, len(run.tasks), sc.seed))
