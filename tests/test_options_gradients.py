"""The multitask options that change a step's gradient, each against a reference computation: PCGrad,
adversarial training on the embeddings, gradual unfreezing with layer-wise learning rates."""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from options_helpers import _batch, _loss, _tiny_model

from pipeline.core.accel import make_accelerator
from pipeline.core.config import ConfigError, StudentConfig
from pipeline.core.model import MultiTaskModel
from pipeline.core.training import make_optimizer, set_lr
from student.options import check_options
from student.options.adversarial import adversarial_backward
from student.options.pcgrad import pcgrad_backward, project_conflicting
from student.options.unfreeze import drop_frozen_grads, freeze_deeper, trainable_depth

# ---------------------------------------------------------------------------------------------------------------------
# PCGrad


def test_pcgrad_on_two_parameters_by_hand() -> None:
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    out = project_conflicting(grads, np.random.default_rng(0))
    # g1·g2 = −1 < 0:  g1 − (−1 / ‖g2‖² = 2)·g2 = (0.5, 0.5);  g2 − (−1 / ‖g1‖² = 1)·g1 = (0, 1)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    torch.testing.assert_close(out.sum(0), torch.tensor([0.5, 1.5]))
    assert out[0] @ grads[1] == pytest.approx(0.0) and out[1] @ grads[0] == pytest.approx(0.0)
    agreeing = torch.tensor([[1.0, 0.5], [0.2, 1.0]])
    torch.testing.assert_close(project_conflicting(agreeing, np.random.default_rng(0)), agreeing)


def _pcgrad_by_loops(grads: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Algorithm 1 of Yu et al. (2020) in plain Python floats, drawing the same orders."""
    g = grads.tolist()
    out = []
    for i in range(len(g)):
        gi = list(g[i])
        for j in rng.permutation(len(g)):
            if j == i:
                continue
            dot = sum(a * b for a, b in zip(gi, g[j]))
            if dot < 0:
                norm = sum(b * b for b in g[j])
                gi = [a - dot / norm * b for a, b in zip(gi, g[j])]
        out.append(gi)
    return torch.tensor(out)


def test_pcgrad_matches_the_papers_algorithm_with_random_orders() -> None:
    grads = torch.randn(4, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    grads[3] = 0.0  # a task absent from the step: no projection against it, no NaN
    out = project_conflicting(grads, np.random.default_rng(11))
    torch.testing.assert_close(out, _pcgrad_by_loops(grads, np.random.default_rng(11)).double())
    assert (out[3] == 0).all()


@pytest.mark.parametrize("seeds", [(1, 3), (1, 2)], ids=["conflict", "agreement"])
def test_pcgrad_backward_projects_the_shared_gradient_and_keeps_each_heads_own(seeds: tuple[int, int]) -> None:
    model = _tiny_model()
    batches = [_batch([0, 0, 0], seed=seeds[0]), _batch([1, 1, 1, 1], seed=seeds[1])]
    named = list(model.named_parameters())
    per_task = [torch.autograd.grad(_loss(model, b), [p for _, p in named], allow_unused=True) for b in batches]
    flat = [torch.cat([g.reshape(-1) for (n, _), g in zip(named, gs) if not n.startswith("heads.")]) for gs in per_task]
    g1, g2 = flat
    dot = g1 @ g2
    assert (dot < 0) == (seeds == (1, 3))
    # two tasks, by hand: each gradient loses its component along the other's when they conflict; else plain sum
    expected = (g1 - dot / (g2 @ g2) * g2) + (g2 - dot / (g1 @ g1) * g1) if dot < 0 else g1 + g2

    pcgrad_backward(model, ((t, _loss(model, b)) for t, b in enumerate(batches)), 2, np.random.default_rng(0))
    got = torch.cat([p.grad.reshape(-1) for n, p in named if not n.startswith("heads.")])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    for t, name in enumerate(model.task_names):
        for (n, p), g in zip(named, per_task[t]):
            if n.startswith(f"heads.{name}."):
                torch.testing.assert_close(p.grad, g)


def test_summed_steps_split_by_task_give_the_whole_steps_gradient() -> None:
    """The student runs a summed step as one micro-batch per task, each loss scaled by rows / batch_size (`loss_of`):
    the gradient is the whole step's, the sum over tasks of each task's mean loss."""
    model, batch_size = _tiny_model(), 3
    whole = _batch([0, 1, 0, 1, 0, 1])
    named = [p for _, p in model.named_parameters()]
    expected = torch.autograd.grad(_loss(model, whole) * 6 / batch_size, named, allow_unused=True)
    total = [torch.zeros_like(p) for p in named]
    for t in (0, 1):
        rows = (whole["task_ids"] == t).nonzero().squeeze(1)
        part = {k: v[rows] for k, v in whole.items()}
        grads = torch.autograd.grad(_loss(model, part) * len(rows) / batch_size, named, allow_unused=True)
        total = [a + (torch.zeros_like(a) if g is None else g) for a, g in zip(total, grads)]
    for got, want in zip(total, expected):
        torch.testing.assert_close(got, torch.zeros_like(got) if want is None else want, atol=1e-6, rtol=1e-5)


def test_pcgrad_runs_on_one_process_only() -> None:
    with pytest.raises(ConfigError, match="'student.mixing' pcgrad runs on one process"):
        check_options(StudentConfig(mixing="pcgrad"), [], [], processes=2)
    check_options(StudentConfig(mixing="pcgrad"), [], [], processes=1)
    check_options(StudentConfig(mixing="summed"), [], [], processes=2)


# ---------------------------------------------------------------------------------------------------------------------
# Adversarial training on the embeddings


def _grad_at(model: MultiTaskModel, batch: dict, delta: torch.Tensor) -> torch.Tensor:
    """∂loss/∂(word-embedding output) at output + δ, computed by making that output a leaf."""
    leaf = {}

    def replace(module, inputs, output):
        leaf["x"] = (output.detach() + delta).requires_grad_()
        return leaf["x"]

    handle = model.encoder.get_input_embeddings().register_forward_hook(replace)
    loss = _loss(model, batch)
    handle.remove()
    return torch.autograd.grad(loss, leaf["x"])[0]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.flatten(1).norm(dim=1).view(-1, 1, 1)


@pytest.mark.parametrize("method", ["fgm", "fgsm", "pgd"])
def test_adversarial_perturbation_is_the_hand_computed_one(method: str) -> None:
    eps, alpha, steps = 0.7, 0.5, 3
    sc = StudentConfig(adversarial=method, adv_epsilon=eps, adv_alpha=alpha, adv_steps=steps)
    model, batch = _tiny_model(), _batch([0, 1, 0, 1])
    seen = []  # what reaches LayerNorm: word embeddings (+ δ) + token-type and position embeddings
    model.encoder.embeddings.LayerNorm.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))

    g = _grad_at(model, batch, torch.zeros(4, 7, 16))
    if method == "fgm":
        expected = eps * _unit(g)
    elif method == "fgsm":
        expected = eps * g.sign()
    else:
        expected = torch.zeros_like(g)
        for k in range(steps):
            expected = expected + alpha * _unit(g)
            norms = expected.flatten(1).norm(dim=1).view(-1, 1, 1)
            expected = torch.where(norms > eps, expected * eps / norms, expected)
            if k < steps - 1:
                g = _grad_at(model, batch, expected)
    seen.clear()
    model.zero_grad()
    embeddings = model.encoder.get_input_embeddings()
    passes = []  # what adversarial_backward says each pass is: the clean pass, PGD's K − 1 probes, the adversarial one

    def loss_of(kind: str) -> torch.Tensor:
        passes.append(kind)
        return _loss(model, batch)

    adversarial_backward(model, make_accelerator(), embeddings, loss_of, sc, nullcontext())
    assert passes == ["clean", *["probe"] * (steps - 1 if method == "pgd" else 0), "adversarial"]
    assert len(seen) == len(passes)
    applied = seen[-1] - seen[0]
    torch.testing.assert_close(applied, expected, atol=1e-5, rtol=1e-4)
    assert (applied[0, 5:] == 0).all(), "padding is not perturbed"
    norms = applied.flatten(1).norm(dim=1)
    if method == "pgd":
        assert (norms <= eps * (1 + 1e-5)).all() and (norms >= eps * (1 - 1e-5)).any()  # the projection acted
    if method == "fgm":
        torch.testing.assert_close(norms, torch.full((4,), eps))
        # the parameters got the clean gradient plus the gradient at the perturbed embeddings
        names = [n for n, _ in model.named_parameters()]
        got = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        _loss(model, batch).backward()
        handle = model.encoder.get_input_embeddings().register_forward_hook(lambda m, i, o: o + expected)
        _loss(model, batch).backward()
        handle.remove()
        for name, a, p in zip(names, got, model.parameters()):
            torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-5, msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# Gradual unfreezing with layer-wise learning rates


def test_freezing_by_requires_grad_is_the_same_update_without_the_frozen_backward() -> None:
    """One process freezes with `requires_grad` (gradients never computed); several compute and drop them. Same
    step; the first never runs the backward pass below the lowest layer that trains."""
    batch, depth = _batch([0, 1, 0, 1]), trainable_depth(3, 3)  # depth ≤ 1 trains: heads and pooler
    dropped, frozen = _tiny_model(), _tiny_model()
    optimizers = [make_optimizer(m, 1e-2, 0.9, 0.01) for m in (dropped, frozen)]
    _loss(dropped, batch).backward()
    drop_frozen_grads(optimizers[0], depth)
    freeze_deeper(optimizers[1], depth)
    needs_grad = []  # does the embeddings' output (the bottom of the graph) need a gradient?
    hook = frozen.encoder.embeddings.register_forward_hook(lambda m, i, out: needs_grad.append(out.requires_grad))
    _loss(frozen, batch).backward()
    hook.remove()
    assert needs_grad == [False]
    deep = {id(p) for g in optimizers[1].param_groups if g["depth"] > depth for p in g["params"]}
    for p in frozen.parameters():
        assert (p.grad is None) == (id(p) in deep)
    for optimizer in optimizers:
        optimizer.step()
    for (name, a), b in zip(dropped.named_parameters(), frozen.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    freeze_deeper(optimizers[1], math.inf)
    assert all(p.requires_grad for p in frozen.parameters())


def test_trainable_depth_adds_one_depth_every_k_steps() -> None:
    assert trainable_depth(0, 0) == math.inf
    assert [trainable_depth(s, 3) for s in range(10)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert trainable_depth(5, 2.5) == 2  # fractional: an epoch count converted to steps


def test_frozen_depths_stay_put_and_unfreeze_at_their_layerwise_rate() -> None:
    lr, decay, wd, multiplier = 1e-2, 0.9, 0.01, 0.5
    model, batch = _tiny_model(), _batch([0, 1, 0, 1])
    optimizer = make_optimizer(model, lr, decay, wd)
    set_lr(optimizer, multiplier)
    for group in optimizer.param_groups:  # the layer-wise schedule, untouched by freezing
        assert group["lr"] == pytest.approx(lr * decay ** group["depth"] * multiplier)
    depth_of = {id(p): g["depth"] for g in optimizer.param_groups for p in g["params"]}
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _loss(model, batch).backward()
    drop_frozen_grads(optimizer, trainable_depth(3, 3))  # depth ≤ 1 trains: heads and pooler
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    for name, p in model.named_parameters():
        frozen = depth_of[id(p)] > 1
        assert torch.equal(p, before[name]) == frozen, name
        assert (p not in optimizer.state) == frozen, name  # no optimizer state while frozen

    # everything unfrozen: a parameter trained for the first time takes AdamW's first step at its own rate
    at_step_1 = {n: p.detach().clone() for n, p in model.named_parameters()}
    _loss(model, batch).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    drop_frozen_grads(optimizer, trainable_depth(12, 3))
    optimizer.step()
    for name, p in model.named_parameters():
        group = group_of[id(p)]
        if group["depth"] <= 1:
            assert optimizer.state[p]["step"] == 2, name
            continue
        assert optimizer.state[p]["step"] == 1, name
        ref = at_step_1[name].clone().requires_grad_()
        ref.grad = grads[name]
        torch.optim.AdamW(
            [ref], lr=group["lr"], betas=(0.9, 0.999), eps=1e-6, weight_decay=group["weight_decay"]
        ).step()
        torch.testing.assert_close(p.detach(), ref.detach(), atol=1e-7, rtol=1e-6, msg=name)
