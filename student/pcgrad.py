"""PCGrad gradient surgery (Yu et al., 2020, "Gradient Surgery for Multi-Task Learning", Algorithm 1).

Each task's gradient of the shared parameters is projected onto the normal plane of every other task's gradient it
conflicts with (negative dot product), the others taken in random order; the projected gradients are summed. Task
heads are not shared: each gets its own task's gradient, as without surgery.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn


def project_conflicting(grads: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """PCGrad's projection of per-task gradients.

    For each task i, over the other tasks j in a random order: if g_i^PC · g_j < 0, then
    g_i^PC ← g_i^PC − (g_i^PC · g_j) / ‖g_j‖² · g_j, where g_j is task j's original gradient.

    Args:
        grads: [T, P] each task's flattened gradient (a task absent from the step has a zero row: never projected
            against, since its dot products are 0).
        rng: draws each task's order of the others (seeded by the caller, so a resumed run draws the same).
    Returns:
        [T, P] the projected gradients g_i^PC.
    """
    projected = grads.clone()
    norms = (grads * grads).sum(1)
    for i in range(len(grads)):
        for j in rng.permutation(len(grads)):
            if j == i:
                continue
            dot = projected[i] @ grads[j]
            if dot < 0:
                projected[i] -= dot / norms[j] * grads[j]
    return projected


def pcgrad_backward(model: nn.Module, task_losses: Iterable[tuple[int, torch.Tensor]], num_tasks: int, rng) -> None:
    """Set every trainable parameter's `.grad` to the PCGrad combination of the tasks' gradients.

    Args:
        model: the (unwrapped) MultiTaskModel; parameters named `heads.*` are task-specific, all others shared.
        task_losses: (task index, loss) pairs, each loss on some of that task's rows of the step; a task's gradient
            is the sum over its pairs. Taken one at a time: each loss's graph is freed before the next forward.
        num_tasks: T.
        rng: for `project_conflicting`.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for n, p in named if not n.startswith("heads.")] + [p for n, p in named if n.startswith("heads.")]
    shared = sum(p.numel() for n, p in named if not n.startswith("heads."))
    grads = torch.zeros(num_tasks, sum(p.numel() for p in params), device=params[0].device)
    for task, loss in task_losses:
        parts = torch.autograd.grad(loss, params, allow_unused=True)  # heads of other tasks: None
        grads[task] += torch.cat(
            [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(parts, params)]
        )
    grads[:, :shared] = project_conflicting(grads[:, :shared], rng)
    total = grads.sum(0)
    offset = 0
    for p in params:
        p.grad = total[offset : offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
