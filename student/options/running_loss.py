"""`student.task_loss: running`: each task's loss ÷ a running estimate of its size (per-task loss normalisation).

Each task's loss counts in the step with the factor 1 / m̂_τ, where m̂_τ is an exponential moving average (decay
`DECAY`, bias-corrected as Adam's moments are) of the task's mean loss per step, over the steps before this one
that held the task; before its first such step a task counts with 1 (BAM's loss). A task whose loss is c times
larger for the same model (a regression task declaring another range under `label-scale`, a loss in other units)
counts with a c times smaller factor, so each task's weighted loss stays near 1 whatever its scale. It is the
weighting learned uncertainty weights (Kendall et al., 2018) reach at their optimum (1 / (2 × the task's loss)),
without parameters to learn. The step's per-task sums are summed over the processes before the estimate moves, so
every process weighs alike; the estimate travels in the checkpoints (`state`, `restore`), so a resumed run weighs
as an uninterrupted one. `student.task_weights` multiply on top.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn

from pipeline.core.config import StudentConfig
from student.options.hooks import Backward, Batch, Logged, LossOf, Options, Run

DECAY = 0.99  # per step that holds the task: an average over about its last 100 such steps
STATE_KEY = "running_loss"  # the estimate's entry in a checkpoint's state.json


class RunningScales(Sequence[float]):
    """Per task id, the factor its losses count with: `fixed[t]` / the running mean of its loss (`fixed[t]` alone
    before the task's first step). `multitask_loss` reads it as its `weights`."""

    def __init__(self, fixed: Sequence[float], names: Sequence[str] = (), decay: float = DECAY) -> None:
        self.names = list(names) or [str(t) for t in range(len(fixed))]  # for the log line
        self.fixed = np.asarray(fixed, dtype=np.float64)
        self.decay = decay
        self.average = np.zeros(len(fixed))  # the moving average, not yet bias-corrected
        self.seen = np.zeros(len(fixed), dtype=np.int64)  # steps that held the task

    def __len__(self) -> int:
        return len(self.fixed)

    def __getitem__(self, t: int) -> float:  # type: ignore[override]
        if not self.seen[t]:
            return float(self.fixed[t])
        return float(self.fixed[t] / max(self.estimate()[t], 1e-12))  # a loss of exactly 0 stays finite

    def estimate(self) -> np.ndarray:
        """Per task, the bias-corrected running mean of its loss (0 where the task was not seen yet)."""
        correction = 1.0 - self.decay ** np.maximum(self.seen, 1)
        return np.where(self.seen > 0, self.average / correction, 0.0)

    def update(self, sums: np.ndarray, counts: np.ndarray) -> None:
        """Move each task present in a step (`counts` > 0) towards its mean loss there, `sums` / `counts`."""
        present = counts > 0
        means = np.divide(sums, counts, out=np.zeros(len(self)), where=present)
        self.average = np.where(present, self.decay * self.average + (1.0 - self.decay) * means, self.average)
        self.seen = self.seen + present

    def state(self) -> dict[str, Any]:
        """The estimate, as a checkpoint's state.json holds it (floats round-trip exactly through JSON)."""
        return {STATE_KEY: {"average": self.average.tolist(), "seen": self.seen.tolist()}}

    def restore(self, state: dict[str, Any]) -> None:
        """Take up the estimate a checkpoint's state.json recorded (`state`: the whole file)."""
        saved = state[STATE_KEY]
        self.average = np.asarray(saved["average"], dtype=np.float64)
        self.seen = np.asarray(saved["seen"], dtype=np.int64)

    def log(self) -> dict[str, Any]:
        """For the log line: each task's factor as it stands."""
        return {"loss_weight": dict(zip(self.names, list(self)))}


def step_totals(logged: Logged, names: list[str]) -> np.ndarray:
    """[tasks, 2]: each task's summed loss and examples over the step's clean passes (log key `loss`)."""
    totals = np.zeros((len(names), 2))
    for key, per_task in logged:
        if key == "loss":
            for name, (total, count) in per_task.items():
                totals[names.index(name)] += (total, count)
    return totals


def updating(backward: Backward, scales: RunningScales, names: list[str]) -> Backward:
    """`backward`, after which the scales move by the step's per-task losses summed over every process."""

    def run(step: int, model: nn.Module, accelerator: Accelerator, batches: list[Batch], loss_of: LossOf) -> Logged:
        logged = backward(step, model, accelerator, batches, loss_of)
        totals = torch.from_numpy(step_totals(logged, names)).to(accelerator.device)
        totals = accelerator.reduce(totals, reduction="sum").cpu().numpy()
        scales.update(totals[:, 0], totals[:, 1])
        return logged

    return run


def add(opts: Options, sc: StudentConfig, run: Run) -> Options:
    """With `task_loss: running`, the running scales as the loss weights (times `task_weights`, which
    `regression.add` set before), and the backward that moves them."""
    if sc.task_loss != "running":
        return opts
    names = [t.name for t in run.tasks]
    scales = RunningScales(opts.loss_weights or [1.0] * len(names), names)
    return dataclasses.replace(
        opts,
        loss_weights=scales,
        backward=updating(opts.backward, scales, names),
        state=scales.state,
        restore=scales.restore,
        log=scales.log,
    )
