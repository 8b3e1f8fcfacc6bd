"""`student.unfreeze_every`: gradual unfreezing, top first (Howard & Ruder, 2018).

The heads train from the start, and one more depth of the layer-wise numbering (`parameter_depth`: pooler, top
layer, …, embeddings) joins every `unfreeze_every` steps or epochs (`unfreeze_unit`). A frozen parameter is not
updated and has no optimizer state; it joins at its own layer-wise rate.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import torch

from pipeline.core.config import StudentConfig
from student.options.hooks import Options, Run


def trainable_depth(step: int, every: float) -> float:
    """Gradual unfreezing (top layers first): the deepest depth (`parameter_depth`) that trains at `step`. The heads
    (depth 0) train from the start and one more depth joins every `every` steps; `every` 0 = all (inf)."""
    return math.inf if every <= 0 else step // every


def drop_frozen_grads(optimizer: torch.optim.Optimizer, depth: float) -> None:
    """Freeze the groups deeper than `depth` for this step by dropping their gradients. AdamW skips a parameter
    without a gradient: it does not change (no update, no weight decay) and gets no optimizer state, so once it
    unfreezes it starts fresh moments at its own layer-wise rate. Several processes need this after the backward
    pass: DistributedDataParallel fixes which parameters it reduces when it wraps the model, so `requires_grad`
    must not change there (one process uses `freeze_deeper` before the forward pass instead)."""
    for group in optimizer.param_groups:
        if group["depth"] > depth:
            for p in group["params"]:
                p.grad = None


def freeze_deeper(optimizer: torch.optim.Optimizer, depth: float) -> None:
    """One process: `requires_grad` off for the groups deeper than `depth` (on for the others), so their gradients
    are never computed, and while the embeddings and the lowest layers are frozen the backward pass stops at the
    lowest layer that trains. The same update as computing and then dropping them (`drop_frozen_grads`), except
    with PCGrad: its surgery then sees only the gradients of what trains (frozen layers do not move, so their
    conflicts do not count)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.requires_grad_(group["depth"] <= depth)


def unfreeze_every_steps(sc: StudentConfig, total_steps: int) -> float:
    """`unfreeze_every` in optimizer steps (an epoch is total_steps / epochs of them)."""
    return sc.unfreeze_every * (total_steps / sc.epochs if sc.unfreeze_unit == "epochs" else 1)


def freeze_before_step(sc: StudentConfig, step: int, total_steps: int, optimizer: torch.optim.Optimizer) -> None:
    """One process: `freeze_deeper` than this step's trainable depth, before the forward pass."""
    freeze_deeper(optimizer, trainable_depth(step, unfreeze_every_steps(sc, total_steps)))


def drop_after_backward(sc: StudentConfig, step: int, total_steps: int, optimizer: torch.optim.Optimizer) -> None:
    """`drop_frozen_grads` deeper than this step's trainable depth (several processes: all of them computed)."""
    drop_frozen_grads(optimizer, trainable_depth(step, unfreeze_every_steps(sc, total_steps)))


def add(opts: Options, sc: StudentConfig, run: Run) -> Options:
    """With `unfreeze_every` > 0: in one process frozen depths have `requires_grad` off, so the backward pass stops
    at the lowest layer that trains; with several (DDP fixes the trained parameters when it wraps the model) their
    gradients are computed and dropped, the same update at full cost. After training everything is trainable again
    (the model leaves the loop)."""
    if not sc.unfreeze_every:
        return opts
    before_step = partial(freeze_before_step, sc) if run.processes == 1 else opts.before_step
    return dataclasses.replace(
        opts,
        before_step=before_step,
        after_backward=partial(drop_after_backward, sc),
        after_training=partial(freeze_deeper, depth=math.inf),
    )
