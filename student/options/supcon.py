"""`student.supcon_weight`: the supervised contrastive loss (Khosla et al., 2020) of the features the heads read.

A clean pass's loss gets `supcon_weight` × the loss over its classification rows, with same-label examples of the
same task as positives and the task's other examples as negatives; each micro-batch of each process on its own.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import torch
import torch.nn.functional as F

from pipeline.core.config import StudentConfig
from student.options.hooks import Batch, Options, Run


def supervised_contrastive_loss(
    features: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., 2020, L^sup_out) within groups, vectorised over all pairs.

    With z the L2-normalised features, A(i) the other rows of row i's group (its task) and P(i) ⊆ A(i) those with
    its label: loss_i = −1/|P(i)| · Σ_{p ∈ P(i)} log( exp(z_i·z_p/τ) / Σ_{a ∈ A(i)} exp(z_i·z_a/τ) ). Rows of other
    tasks are neither positives nor negatives: their labels mean something else.

    Args:
        features: [N, F] the vectors the heads read.
        labels: [N] class indices.
        groups: [N] each row's task id.
        temperature: τ.
    Returns:
        The mean of loss_i over the rows that have a positive (scalar); 0 when none has.
    """
    z = F.normalize(features.float(), dim=-1)
    sim = z @ z.T / temperature
    others = (groups[:, None] == groups[None, :]) & ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    positive = others & (labels[:, None] == labels[None, :])
    anchors = positive.any(1)  # an anchor has a positive, hence a non-empty denominator
    if not anchors.any():
        return sim.sum() * 0.0  # zero, still attached to the graph
    sim, others, positive = sim[anchors], others[anchors], positive[anchors].float()
    log_prob = sim - torch.logsumexp(sim.masked_fill(~others, float("-inf")), dim=1, keepdim=True)
    return (-(log_prob * positive).sum(1) / positive.sum(1)).mean()


def weighted_supcon(
    classification: tuple[bool, ...], weight: float, temperature: float, features: torch.Tensor, batch: Batch
) -> torch.Tensor:
    """weight × `supervised_contrastive_loss` of the batch's rows of classification tasks (`classification[τ]`),
    grouped by task. features: [B, F], the vectors the heads read."""
    classes = torch.tensor(classification, device=features.device)[batch["task_ids"]]
    labels, groups = batch["labels"][classes].long(), batch["task_ids"][classes]
    return weight * supervised_contrastive_loss(features[classes], labels, groups, temperature)


def add(opts: Options, sc: StudentConfig, run: Run) -> Options:
    """With `supcon_weight` > 0, the weighted supervised contrastive loss as an auxiliary loss."""
    if sc.supcon_weight <= 0:
        return opts
    classification = tuple(t.kind == "classification" for t in run.tasks)
    supcon = partial(weighted_supcon, classification, sc.supcon_weight, sc.supcon_temperature)
    return dataclasses.replace(opts, aux_losses=(*opts.aux_losses, supcon))
