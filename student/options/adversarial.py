"""`student.adversarial`: adversarial training on the word embeddings, FGM, FGSM and PGD.

The perturbation δ is added to the output of the word-embedding lookup (before position embeddings and LayerNorm),
as in Miyato et al. (2017) and FreeLB (Zhu et al., 2020). One step: backward of the clean loss (which also gives
g = ∂loss/∂embeddings), δ from g, backward of the loss at the perturbed embeddings, δ removed; the parameters get
the sum of both gradients.

  fgm:  δ = ε · g / ‖g‖                       (Miyato et al., 2017)
  fgsm: δ = ε · sign(g)                        (Goodfellow et al., 2015)
  pgd:  δ_0 = 0, δ_k = Π_ε(δ_{k−1} + α · g_{k−1} / ‖g_{k−1}‖), K steps, g_k the gradient at δ_k  (Madry et al., 2018)

‖·‖ is the L2 norm of one example's whole [T, H] block, and Π_ε projects each example's δ onto the L2 ball of
radius ε. Padding positions get g = 0, hence δ = 0. The log shows the loss at the final δ as `adv_loss`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial

import torch
from accelerate import Accelerator
from torch import nn

from pipeline.core.config import StudentConfig
from pipeline.core.training import backward_if_trained
from student.options.hooks import Batch, Logged, LossOf, Options, Run, last_syncs

LOGGED = {"clean": "loss", "adversarial": "adv_loss"}  # the passes the log shows (not PGD's probes), by log key


class EmbeddingPerturbation:
    """Adds δ to a module's output through a forward hook, for as long as the `with` block lasts.

    `deltas` holds one δ per call of the module in a forward pass (a siamese model embeds two inputs); a call with
    no δ set gets a zero δ that requires grad, so the backward pass leaves ∂loss/∂output in its `.grad`.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.deltas: list[torch.Tensor] = []
        self.calls = 0

    def __enter__(self) -> EmbeddingPerturbation:
        self.handle = self.module.register_forward_hook(self._add)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    def _add(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.calls == len(self.deltas):
            self.deltas.append(torch.zeros_like(output, requires_grad=True))
        delta = self.deltas[self.calls]
        self.calls += 1
        return output + delta.to(output.dtype)

    def use(self, deltas: list[torch.Tensor]) -> None:
        """The δs of the next forward pass, one per call ([] = zero δs that collect gradients)."""
        self.deltas, self.calls = list(deltas), 0


def _per_example_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm over everything but the first dimension, shaped to broadcast against `x`."""
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))


def first_step(method: str, grad: torch.Tensor, epsilon: float) -> torch.Tensor:
    """FGM's ε · g/‖g‖ (per example) or FGSM's ε · sign(g). grad: [B, T, H] → δ [B, T, H]."""
    if method == "fgsm":
        return epsilon * grad.sign()
    return epsilon * grad / _per_example_norm(grad)


def pgd_step(delta: torch.Tensor, grad: torch.Tensor, alpha: float, epsilon: float) -> torch.Tensor:
    """One PGD step: δ + α · g/‖g‖, projected back onto the L2 ball of radius ε (per example)."""
    delta = delta + alpha * grad / _per_example_norm(grad)
    return delta * (epsilon / _per_example_norm(delta)).clamp(max=1.0)


def adversarial_backward(
    model: nn.Module,
    accelerator,
    embeddings: nn.Module,
    loss_of: Callable[[str], torch.Tensor],
    sc: StudentConfig,
    sync: AbstractContextManager,
) -> None:
    """Backward of the clean loss plus the adversarial loss of one micro-batch.

    Args:
        model: the prepared model (its gradient all-reduce waits for the last backward).
        accelerator: the Accelerator (backward, loss scaling, `no_sync`).
        embeddings: the word-embedding module δ is added to.
        loss_of: runs a forward pass and returns the loss; its argument says which pass this is: "clean", "probe"
            (one of PGD's ascent passes, which only find δ) or "adversarial" (the pass at the final δ).
        sc: `student.adversarial` (fgm, fgsm or pgd), `adv_epsilon` ε, and PGD's `adv_alpha` α and `adv_steps` K.
        sync: the context of the micro-batch's last backward (`no_sync` except on the step's last micro-batch).
    """
    with EmbeddingPerturbation(embeddings) as perturb:
        with accelerator.no_sync(model):
            accelerator.backward(loss_of("clean"))
        grads = [d.grad for d in perturb.deltas]
        if sc.adversarial == "pgd":
            deltas = [torch.zeros_like(g) for g in grads]
            for k in range(sc.adv_steps):
                deltas = [pgd_step(d, g, sc.adv_alpha, sc.adv_epsilon) for d, g in zip(deltas, grads)]
                if k < sc.adv_steps - 1:  # the gradient at δ_k, for the next step only: no parameter gradient
                    perturb.use([d.requires_grad_() for d in deltas])
                    with accelerator.no_sync(model):
                        grads = torch.autograd.grad(loss_of("probe"), perturb.deltas)
                    deltas = [d.detach() for d in deltas]
        else:
            deltas = [first_step(sc.adversarial, g, sc.adv_epsilon) for g in grads]
        perturb.use(deltas)
        with sync:
            backward_if_trained(accelerator, loss_of("adversarial"))


def _pass_loss(loss_of: LossOf, batch: Batch, logged: Logged, kind: str) -> torch.Tensor:
    """`adversarial_backward`'s `loss_of`: a pass over `batch` (auxiliary losses on the clean pass only); the
    record of a logged pass goes to `logged`."""
    loss, per_task = loss_of(batch, clean=kind == "clean")
    if kind in LOGGED:
        logged.append((LOGGED[kind], per_task))
    return loss


def backward(
    sc: StudentConfig, step: int, model: nn.Module, accelerator: Accelerator, batches: list[Batch], loss_of: LossOf
) -> Logged:
    """`adversarial_backward` of each micro-batch in turn, the gradients summed over them."""
    embeddings = accelerator.unwrap_model(model).encoder.get_input_embeddings()  # where δ goes
    logged: Logged = []
    for k, batch in enumerate(batches):
        sync = last_syncs(accelerator, model, k, len(batches))
        adversarial_backward(model, accelerator, embeddings, partial(_pass_loss, loss_of, batch, logged), sc, sync)
    return logged


def add(opts: Options, sc: StudentConfig, run: Run) -> Options:
    """With `adversarial` other than none, the clean plus the adversarial backward of every micro-batch."""
    if sc.adversarial == "none":
        return opts
    return dataclasses.replace(opts, backward=partial(backward, sc))
