"""Each task's share of the gradient the shared encoder gets: the gradient of the step's loss at the pooled vector
(the heads' input), per task over its rows. A task whose norm stays far under the others' is being starved.

The probe hooks the model's dropout on the pooled vector, so it costs one squared norm per backward pass; it logs
what this process saw (like the losses), as `grad_norm` in student/log.jsonl: per task, the root mean square over
the window's steps of that task's gradient norm in a step.
"""

from __future__ import annotations

import torch
from torch import nn


class TaskGradients:
    """Watch the next forward pass's rows (`watch`), add their gradients' squared norms by task, read and reset
    them per log line (`window`)."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.names = names
        self.squared = torch.zeros(len(names), dtype=torch.float64)
        self.steps = 0
        self.task_ids: torch.Tensor | None = None
        model.dropout.register_forward_hook(self._on_forward)

    def watch(self, task_ids: torch.Tensor) -> None:
        """The next forward pass is a training pass over rows of these tasks [B]."""
        self.task_ids = task_ids

    def _on_forward(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if self.task_ids is None or not output.requires_grad:
            return
        task_ids, self.task_ids = self.task_ids, None  # the pooled vector only (not a siamese second sentence)
        output.register_hook(lambda grad: self._add(grad, task_ids))

    def _add(self, grad: torch.Tensor, task_ids: torch.Tensor) -> None:
        per_row = grad.detach().float().pow(2).sum(-1).double().cpu()
        self.squared.index_add_(0, task_ids.cpu(), per_row)

    def step(self) -> None:
        self.steps += 1

    def window(self) -> dict[str, float]:
        """Per task, √(Σ squared norms / steps) since the last call; then starts a new window."""
        norms = (self.squared / max(1, self.steps)).sqrt().tolist()
        self.squared.zero_()
        self.steps = 0
        return dict(zip(self.names, norms))
