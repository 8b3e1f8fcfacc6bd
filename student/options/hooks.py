"""The calls the student loop makes where an option can change BAM's step, and BAM's own behaviour at each.

An `Options` holds one callable per call, every one bound to the run's config when the options are built
(`student.options.get_options`). The loop calls each at a fixed point of its step; BAM's step is what the fields
hold when no option is switched on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn

from pipeline.core.data import TokenizedSplit
from pipeline.core.tasks import TaskSpec
from pipeline.core.training import backward_if_trained

PerTask = dict[str, tuple[float, int]]  # task name → (summed loss, examples): `multitask_loss`'s record of a batch
Logged = list[tuple[str, PerTask]]  # (log key, record) of each pass the log shows, in the order they ran
LossOf = Callable[..., tuple[torch.Tensor, PerTask]]  # (batch, clean=True) → its share of the step's loss, record
Batch = dict[str, torch.Tensor]


def no_op(*args: object) -> None:
    """BAM: nothing happens here."""


def last_syncs(accelerator: Accelerator, model: nn.Module, k: int, micro_batches: int) -> AbstractContextManager:
    """The context of micro-batch k's backward: the gradient all-reduce waits for the step's last micro-batch."""
    return nullcontext() if k == micro_batches - 1 else accelerator.no_sync(model)


class Run(NamedTuple):
    """What an option may check, or size itself by, before training."""

    tasks: list[TaskSpec]
    train: list[TokenizedSplit]  # each task's training split
    processes: int


def backward_each(
    step: int, model: nn.Module, accelerator: Accelerator, batches: list[Batch], loss_of: LossOf
) -> Logged:
    """BAM's backward: each micro-batch's loss in turn, the gradients summed over them. Returns each pass's record,
    logged as `loss`."""
    logged = []
    for k, batch in enumerate(batches):
        with last_syncs(accelerator, model, k, len(batches)):
            loss, per_task = loss_of(batch)
            logged.append(("loss", per_task))
            backward_if_trained(accelerator, loss)
    return logged


StepHook = Callable[[int, int, torch.optim.Optimizer], None]  # (step, total steps, optimizer)
Backward = Callable[[int, nn.Module, Accelerator, list[Batch], LossOf], Logged]  # (step, …) → each pass's record


@dataclass(frozen=True)
class Options:
    """The multitask options of a run (docs/options.md), as the calls the loop makes. Defaults are BAM's."""

    examples_per_step: Callable[[int], int]  # (number of tasks) → rows of one optimizer step
    plan: Callable[[list[int], list[np.ndarray], int], np.ndarray]  # (sizes, lengths, total steps) → [steps, rows, 2]
    task_probabilities: Callable[[list[int]], np.ndarray]  # (sizes) → p(τ), as reported
    split: Callable[[list[np.ndarray]], list[np.ndarray]] = list  # a process's micro-batches of a step → those run
    aux_losses: tuple[Callable[[torch.Tensor, Batch], torch.Tensor], ...] = ()  # (features [B, F], batch) → a term
    # added to the loss of a clean pass (not of one at perturbed embeddings)
    backward: Backward = backward_each  # the gradients
    before_step: StepHook = no_op  # before the step's forward passes
    after_backward: StepHook = no_op  # after its backward passes, before clipping and the optimizer step
    after_training: Callable[[torch.optim.Optimizer], None] = no_op  # after the last step, before evaluation
    loss_weights: Sequence[float] | None = None  # per task id, the factor its losses count with (None: 1 each),
    # read at every pass (`task_loss: running` moves them from step to step)
    head_affine: dict[str, tuple[float, float]] | None = None  # regression task → (shift, scale) of its head's output
    swaps: Callable[[int, np.ndarray], np.ndarray | None] = lambda step, rows: None  # (step, rows [N, 2]) → which
    # pairs are read in the swapped order (None: none)
    state: Callable[[], dict[str, Any]] = dict  # what an option keeps in a checkpoint's state.json
    restore: Callable[[dict[str, Any]], None] = no_op  # given a resumed checkpoint's state.json
    log: Callable[[], dict[str, Any]] = dict  # what an option adds to each log line (and the trackers)
