"""The distillation loss with teacher annealing (Clark et al., 2019, section 3).

For an example with gold label y and teacher output t, at mixing weight λ:
  classification: target = λ·onehot(y) + (1 − λ)·softmax(t);  loss = −Σ_c target_c · log softmax(z)_c
  regression:     target = λ·y + (1 − λ)·t;                     loss = (z − target)²
λ = 1 is plain supervised training (teachers, "Multi"); λ = 0 is pure distillation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from pipeline.core.tasks import TaskSpec


def annealing_lambda(step: int, total_steps: int, fixed: float | None = None) -> float:
    """λ for the optimizer step about to be taken: `step / total_steps` (0 at the start, 1 at the end), or `fixed`."""
    if fixed is not None:
        return fixed
    return min(1.0, step / max(1, total_steps))


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a distribution.

    Args:
        logits: [B, C] student logits.
        target: [B, C] target probabilities (rows sum to 1).
    Returns:
        [B] per-example loss.
    """
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1)


def classification_loss(
    logits: torch.Tensor, gold: torch.Tensor, teacher_logits: torch.Tensor | None, lam: float
) -> torch.Tensor:
    """Annealed soft-target CE. logits [B, C], gold [B] class indices, teacher_logits [B, C] or None → [B]."""
    target = F.one_hot(gold.long(), logits.shape[-1]).float()
    if lam < 1.0:
        if teacher_logits is None:
            raise ValueError("λ < 1 needs teacher outputs (run the distill stage)")
        target = lam * target + (1.0 - lam) * F.softmax(teacher_logits.float(), dim=-1)
    return soft_cross_entropy(logits, target)


def regression_loss(pred: torch.Tensor, gold: torch.Tensor, teacher: torch.Tensor | None, lam: float) -> torch.Tensor:
    """Annealed squared error. pred, gold, teacher: [B] in the scaled label space → [B]."""
    target = gold.float()
    if lam < 1.0:
        if teacher is None:
            raise ValueError("λ < 1 needs teacher outputs (run the distill stage)")
        target = lam * target + (1.0 - lam) * teacher.float()
    return (pred.float() - target) ** 2


def multitask_loss(
    outputs: torch.Tensor,
    task_ids: torch.Tensor,
    labels: torch.Tensor,
    tasks: list[TaskSpec],
    lam: float,
    teacher: torch.Tensor | None = None,
    weights: Sequence[float] | None = None,
) -> tuple[torch.Tensor, dict[str, tuple[float, int]]]:
    """Mean annealed loss over a batch that mixes tasks.

    Args:
        outputs: [B, C_max] model outputs, row i's task in its first C_τ columns.
        task_ids: [B] index into `tasks`.
        labels: [B] class index or scaled regression label.
        tasks: the model's tasks, in task-id order.
        lam: λ, the weight of the gold label.
        teacher: [B, C_max] teacher outputs laid out like `outputs`, or None when λ = 1.
        weights: per task id, the factor its examples' losses count with in the mean (None: 1 each).
    Returns:
        The batch-mean loss (scalar) and, per task present, (sum of its examples' losses, count) for logging,
        unweighted.
    """
    total = outputs.new_zeros((), dtype=torch.float32)
    per_task = {}
    for t in torch.unique(task_ids).tolist():
        rows = (task_ids == t).nonzero(as_tuple=True)[0]
        spec = tasks[t]
        width = spec.num_labels
        out = outputs[rows, :width]
        teach = None if teacher is None else teacher[rows, :width]
        if spec.kind == "regression":
            losses = regression_loss(out[:, 0], labels[rows], None if teach is None else teach[:, 0], lam)
        else:
            losses = classification_loss(out, labels[rows], teach, lam)
        total = total + losses.sum() * (1.0 if weights is None else weights[t])
        per_task[spec.name] = (losses.detach().sum().item(), rows.numel())
    return total / outputs.shape[0], per_task
