"""The method's losses against references: annealed classification and regression losses, the multitask loss
over a batch mixing tasks, the λ schedule.

Each reference is computed independently of the code under test (torch's own cross-entropy and MSE, formulas
written out by hand).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from method_helpers import _gen

from pipeline.core.loss import (
    annealing_lambda,
    classification_loss,
    multitask_loss,
    regression_loss,
    soft_cross_entropy,
)
from pipeline.core.tasks import get_glue_task

ATOL = 1e-5
GARBAGE = 1e4  # written into padding columns: it must not reach any loss or gradient


# ---------------------------------------------------------------------------------------------------------------------
# Classification loss


@pytest.fixture
def cls_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student logits [8, 3], gold labels [8], teacher logits [8, 3]."""
    g = _gen(1)
    return (
        torch.randn(8, 3, generator=g) * 3,
        torch.randint(0, 3, (8,), generator=g),
        torch.randn(8, 3, generator=g) * 3,
    )


def test_classification_lambda_1_is_cross_entropy_on_gold(cls_batch) -> None:
    z, y, t = cls_batch
    expected = F.cross_entropy(z, y, reduction="none")
    torch.testing.assert_close(classification_loss(z, y, None, 1.0), expected, atol=ATOL, rtol=0)
    # At λ = 1 the teacher has no weight at all.
    torch.testing.assert_close(classification_loss(z, y, t, 1.0), expected, atol=ATOL, rtol=0)


def test_classification_lambda_0_is_cross_entropy_against_teacher_softmax(cls_batch) -> None:
    z, y, t = cls_batch
    by_hand = -(torch.softmax(t, -1) * torch.log_softmax(z, -1)).sum(-1)
    by_torch = F.cross_entropy(z, torch.softmax(t, -1), reduction="none")
    got = classification_loss(z, y, t, 0.0)
    torch.testing.assert_close(got, by_hand, atol=ATOL, rtol=0)
    torch.testing.assert_close(got, by_torch, atol=ATOL, rtol=0)


def test_classification_mixed_lambda_matches_hand_mix(cls_batch) -> None:
    z, y, t = cls_batch
    lam = 0.3
    target = lam * F.one_hot(y, 3).float() + (1 - lam) * torch.softmax(t, -1)
    got = classification_loss(z, y, t, lam)
    torch.testing.assert_close(got, F.cross_entropy(z, target, reduction="none"), atol=ATOL, rtol=0)
    # CE is linear in the target: the same as mixing the two losses.
    mixed = lam * F.cross_entropy(z, y, reduction="none") + (1 - lam) * F.cross_entropy(
        z, torch.softmax(t, -1), reduction="none"
    )
    torch.testing.assert_close(got, mixed, atol=ATOL, rtol=0)


def test_classification_below_1_needs_teacher(cls_batch) -> None:
    z, y, _ = cls_batch
    with pytest.raises(ValueError, match="teacher"):
        classification_loss(z, y, None, 0.5)


def test_soft_cross_entropy_gradient_is_softmax_minus_target() -> None:
    g = _gen(2)
    z = (torch.randn(5, 4, generator=g) * 2).requires_grad_()
    target = torch.softmax(torch.randn(5, 4, generator=g), -1)
    soft_cross_entropy(z, target).sum().backward()
    torch.testing.assert_close(z.grad, torch.softmax(z.detach(), -1) - target, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Regression loss


@pytest.fixture
def reg_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predictions, gold and teacher outputs [8], in the scaled [0, 1] space."""
    g = _gen(3)
    return torch.rand(8, generator=g), torch.rand(8, generator=g), torch.rand(8, generator=g)


def test_regression_lambda_1_is_mse_on_gold(reg_batch) -> None:
    p, y, t = reg_batch
    expected = F.mse_loss(p, y, reduction="none")
    torch.testing.assert_close(regression_loss(p, y, None, 1.0), expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(regression_loss(p, y, t, 1.0), expected, atol=ATOL, rtol=0)


def test_regression_lambda_0_is_mse_on_teacher(reg_batch) -> None:
    p, y, t = reg_batch
    torch.testing.assert_close(regression_loss(p, y, t, 0.0), F.mse_loss(p, t, reduction="none"), atol=ATOL, rtol=0)


def test_regression_mixed_lambda_matches_hand_mix(reg_batch) -> None:
    p, y, t = reg_batch
    lam = 0.3
    expected = (p - (lam * y + (1 - lam) * t)) ** 2
    torch.testing.assert_close(regression_loss(p, y, t, lam), expected, atol=ATOL, rtol=0)


def test_regression_below_1_needs_teacher(reg_batch) -> None:
    p, y, _ = reg_batch
    with pytest.raises(ValueError, match="teacher"):
        regression_loss(p, y, None, 0.0)


# ---------------------------------------------------------------------------------------------------------------------
# Multitask loss over a batch that mixes a 3-class, a 2-class and a regression task

TASKS = [get_glue_task("mnli"), get_glue_task("sst2"), get_glue_task("stsb")]
TASK_IDS = torch.tensor([0, 1, 2, 0, 2, 1, 1, 0, 2, 0, 1, 0])


def _mixed_batch(seed: int = 4, pad: float = GARBAGE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """outputs [12, 3], labels [12] (float: class index or scaled score), teacher [12, 3]; padding set to `pad`."""
    g = _gen(seed)
    B = len(TASK_IDS)
    outputs = torch.randn(B, 3, generator=g) * 2
    teacher = torch.randn(B, 3, generator=g) * 2
    labels = torch.zeros(B)
    for i, t in enumerate(TASK_IDS.tolist()):
        spec = TASKS[t]
        width = spec.num_labels
        outputs[i, width:] = pad
        teacher[i, width:] = -pad
        if spec.kind == "regression":
            outputs[i, 0] = torch.rand((), generator=g)
            teacher[i, 0] = torch.rand((), generator=g)
            labels[i] = torch.rand((), generator=g)
        else:
            labels[i] = float(torch.randint(0, width, (), generator=g))
    return outputs, labels, teacher


def _reference_losses(outputs: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-example annealed losses, one row at a time, with torch's CE and written-out squared error."""
    losses = []
    for i, t in enumerate(TASK_IDS.tolist()):
        spec = TASKS[t]
        width = spec.num_labels
        if spec.kind == "regression":
            target = lam * labels[i] + (1 - lam) * teacher[i, 0]
            losses.append((outputs[i, 0] - target) ** 2)
        else:
            gold = F.one_hot(labels[i].long(), width).float()
            target = lam * gold + (1 - lam) * torch.softmax(teacher[i, :width], -1)
            losses.append(F.cross_entropy(outputs[i, :width].unsqueeze(0), target.unsqueeze(0))[()])
    return torch.stack(losses)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_multitask_loss_is_mean_of_reference_losses(lam: float) -> None:
    outputs, labels, teacher = _mixed_batch()
    ref = _reference_losses(outputs, labels, teacher, lam)
    assert torch.isfinite(ref).all()
    loss, per_task = multitask_loss(outputs, TASK_IDS, labels, TASKS, lam, teacher)
    torch.testing.assert_close(loss, ref.mean(), atol=ATOL, rtol=0)

    assert set(per_task) == {"mnli", "sst2", "stsb"}
    for t, spec in enumerate(TASKS):
        rows = TASK_IDS == t
        total, count = per_task[spec.name]
        assert count == int(rows.sum())
        assert total == pytest.approx(float(ref[rows].sum()), abs=1e-4)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_multitask_loss_ignores_padding_columns(lam: float) -> None:
    out_garbage, labels, teach_garbage = _mixed_batch(pad=GARBAGE)
    out_zero, _, teach_zero = _mixed_batch(pad=0.0)
    out_garbage.requires_grad_()
    loss_g, per_g = multitask_loss(out_garbage, TASK_IDS, labels, TASKS, lam, teach_garbage)
    loss_z, per_z = multitask_loss(out_zero, TASK_IDS, labels, TASKS, lam, teach_zero)
    assert loss_g.item() == pytest.approx(loss_z.item(), abs=ATOL)
    assert per_g.keys() == per_z.keys()
    loss_g.backward()
    for i, t in enumerate(TASK_IDS.tolist()):
        width = TASKS[t].num_labels
        assert (out_garbage.grad[i, width:] == 0).all(), f"row {i}: gradient reached a padding column"
        assert out_garbage.grad[i, :width].abs().sum() > 0


def test_multitask_loss_without_teacher_at_lambda_1() -> None:
    outputs, labels, teacher = _mixed_batch()
    loss, _ = multitask_loss(outputs, TASK_IDS, labels, TASKS, 1.0, None)
    torch.testing.assert_close(loss, _reference_losses(outputs, labels, teacher, 1.0).mean(), atol=ATOL, rtol=0)


def test_multitask_loss_reports_only_tasks_present() -> None:
    outputs, labels, teacher = _mixed_batch()
    keep = TASK_IDS != 1
    loss, per_task = multitask_loss(outputs[keep], TASK_IDS[keep], labels[keep], TASKS, 0.3, teacher[keep])
    assert set(per_task) == {"mnli", "stsb"}
    assert sum(count for _, count in per_task.values()) == int(keep.sum())
    assert float(loss) == pytest.approx(sum(s for s, _ in per_task.values()) / int(keep.sum()), rel=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Teacher annealing schedule


def test_annealing_lambda_is_linear_from_0_to_1() -> None:
    total = 200
    assert annealing_lambda(0, total) == 0.0
    assert annealing_lambda(total, total) == 1.0
    for step in (1, 50, 99, 100, 150, 199):
        assert annealing_lambda(step, total) == pytest.approx(step / total)
    values = np.array([annealing_lambda(s, total) for s in range(total + 1)])
    np.testing.assert_allclose(np.diff(values), 1 / total, atol=1e-12)


@pytest.mark.parametrize("fixed", [0.0, 1.0])
def test_annealing_lambda_fixed_value_is_honoured(fixed: float) -> None:
    for step in (0, 1, 50, 100):
        assert annealing_lambda(step, 100, fixed=fixed) == fixed
