"""The multitask options that change what a step holds or what the heads see, each against a reference
computation: how tasks share a step (the plans), the supervised contrastive loss, siamese pair heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from options_helpers import _batch, _tiny_model

from pipeline.core.accel import make_accelerator
from pipeline.core.config import ConfigError, StudentConfig
from pipeline.core.data import TokenizedSplit, collate
from pipeline.core.sampling import group_by_length, multitask_plan
from pipeline.core.tasks import get_glue_task
from pipeline.core.training import model_inputs
from student.options import check_options, get_options
from student.options.mixing import examples_per_step, round_robin_plan, student_plan, summed_plan
from student.options.supcon import supervised_contrastive_loss
from student.train import forward_loss

# ---------------------------------------------------------------------------------------------------------------------
# How tasks share a step: the plans

SIZES = [7, 20, 13]


def _passes(rows: np.ndarray, n: int) -> None:
    """`rows` are back-to-back permutations of 0..n-1 (the last one possibly cut short)."""
    for start in range(0, len(rows), n):
        chunk = rows[start : start + n]
        assert len(set(chunk.tolist())) == len(chunk) and chunk.max() < n


def test_round_robin_plan_takes_the_tasks_in_turn() -> None:
    plan = round_robin_plan(SIZES, 4, 30, seed=3)
    assert plan.shape == (30, 4, 2)
    np.testing.assert_array_equal(plan[:, :, 0], np.repeat((np.arange(30) % 3)[:, None], 4, axis=1))
    for t, n in enumerate(SIZES):
        _passes(plan[plan[:, 0, 0] == t][:, :, 1].ravel(), n)


def test_summed_plan_holds_one_batch_of_every_task_per_step() -> None:
    plan = summed_plan(SIZES, 4, 10, seed=3)
    assert plan.shape == (10, 12, 2)
    for t, n in enumerate(SIZES):
        block = plan[:, 4 * t : 4 * t + 4]
        assert (block[:, :, 0] == t).all()
        _passes(block[:, :, 1].ravel(), n)
    assert examples_per_step("summed", 4, 3) == examples_per_step("pcgrad", 4, 3) == 12
    assert examples_per_step("mixed", 4, 3) == examples_per_step("round-robin", 4, 3) == 4


def _lengths(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 60, n) for n in SIZES]


def test_mixed_plan_is_bams_plan() -> None:
    lengths = _lengths()
    expected = group_by_length(multitask_plan(SIZES, 4, 25, 0.75, 1, False), lengths, 5, 1)
    np.testing.assert_array_equal(student_plan("mixed", SIZES, lengths, 4, 25, 0.75, 1, False, 5), expected)


@pytest.mark.parametrize("mixing", ["round-robin", "summed"])
def test_length_grouping_keeps_each_steps_tasks_and_examples(mixing: str) -> None:
    lengths, window, steps = _lengths(), 6, 24
    raw = student_plan(mixing, SIZES, lengths, 4, steps, 0.75, 1, False, 0)
    grouped = student_plan(mixing, SIZES, lengths, 4, steps, 0.75, 1, False, window)
    np.testing.assert_array_equal(grouped[:, :, 0], raw[:, :, 0])  # same task in every slot
    for start in range(0, steps, window):  # each window holds the same examples of each task
        a, b = raw[start : start + window], grouped[start : start + window]
        for t in range(len(SIZES)):
            assert sorted(a[a[:, :, 0] == t][:, 1]) == sorted(b[b[:, :, 0] == t][:, 1])

    def padded(plan: np.ndarray) -> int:  # tokens of the task batches padded to their longest example
        blocks = plan.reshape(-1, 4, 2)
        return sum(4 * max(lengths[t][r] for t, r in b) for b in blocks)

    assert padded(grouped) < padded(raw)


# ---------------------------------------------------------------------------------------------------------------------
# Supervised contrastive loss


def _supcon_by_loops(features: torch.Tensor, labels: list[int], groups: list[int], tau: float) -> torch.Tensor:
    """Khosla et al. (2020), eq. 2, one anchor and one pair at a time, within groups."""
    z = [f / f.norm() for f in features]
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i and groups[a] == groups[i]]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(torch.exp(z[i] @ z[a] / tau) for a in others)
        terms = [torch.log(torch.exp(z[i] @ z[p] / tau) / denominator) for p in positives]
        losses.append(-sum(terms) / len(positives))
    return torch.stack(losses).mean()


def test_supcon_matches_a_reference_with_loops_and_its_gradient_too() -> None:
    g = torch.Generator().manual_seed(3)
    features = torch.randn(10, 5, generator=g, dtype=torch.float64)
    labels = [0, 1, 0, 1, 1, 0, 2, 2, 0, 1]
    groups = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]  # the last two rows: no positive, no anchor
    a, b = features.clone().requires_grad_(), features.clone().requires_grad_()
    got = supervised_contrastive_loss(a, torch.tensor(labels), torch.tensor(groups), 0.2)
    expected = _supcon_by_loops(b, labels, groups, 0.2)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
    got.backward()
    expected.backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)


def test_supcon_without_positives_is_zero_with_a_gradient() -> None:
    features = torch.randn(3, 4, requires_grad=True)
    loss = supervised_contrastive_loss(features, torch.tensor([0, 1, 0]), torch.tensor([0, 0, 1]), 0.1)
    loss.backward()
    assert loss.item() == 0.0 and (features.grad == 0).all()


def test_forward_loss_adds_the_weighted_supcon_of_classification_rows() -> None:
    model = _tiny_model(("sst2", "stsb")).eval()
    batch = _batch([0, 1, 0, 1, 0, 0])
    tasks = [get_glue_task("sst2"), get_glue_task("stsb")]
    sc = StudentConfig(supcon_weight=0.3, supcon_temperature=0.5)
    acc = make_accelerator()
    with torch.no_grad():
        plain, _ = forward_loss(model, batch, tasks, 1.0, acc)
        total, _ = forward_loss(model, batch, tasks, 1.0, acc, get_options(sc, tasks, [], 1).aux_losses)
        _, features = model(**model_inputs(batch), return_features=True)
    rows = [0, 2, 4, 5]  # sst2: classification; stsb rows are left out
    supcon = _supcon_by_loops(features[rows], batch["labels"][rows].long().tolist(), [0] * 4, 0.5)
    torch.testing.assert_close(total, plain + 0.3 * supcon, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Siamese pair heads


def _split(task: str, examples: list[tuple[list[int], list[int]]]) -> TokenizedSplit:
    """A tokenised split from (token ids, token types) per example."""
    ids = np.concatenate([np.asarray(i, np.int32) for i, _ in examples])
    types = np.concatenate([np.asarray(t, np.int8) for _, t in examples])
    offsets = np.concatenate([[0], np.cumsum([len(i) for i, _ in examples])])
    labels = np.arange(len(examples), dtype=np.float32) % 2
    return TokenizedSplit(task, "train", [str(i) for i in range(len(examples))], ids, types, offsets, labels, "x", "y")


CLS, SEP = 2, 3
PAIRS = [
    ([CLS, 10, 11, SEP, 20, 21, 22, SEP], [0, 0, 0, 0, 1, 1, 1, 1]),
    ([CLS, 12, SEP, 23, 24, SEP], [0, 0, 0, 1, 1, 1]),
]
SINGLE = [([CLS, 30, 31, 32, SEP], [0, 0, 0, 0, 0])]


def test_collate_cuts_pairs_by_token_type() -> None:
    splits = [_split("mrpc", PAIRS), _split("sst2", SINGLE)]
    batch = collate([(0, 0), (1, 0), (0, 1)], splits, [get_glue_task("mrpc"), get_glue_task("sst2")], split_pairs=True)
    assert batch["input_ids"].tolist() == [[CLS, 10, 11, SEP, 0], [CLS, 30, 31, 32, SEP], [CLS, 12, SEP, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["token_type_ids"].abs().sum() == 0
    assert batch["input_ids_b"].tolist() == [[CLS, 20, 21, 22, SEP], [0, 0, 0, 0, 0], [CLS, 23, 24, SEP, 0]]
    assert batch["attention_mask_b"].tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]]
    assert "input_ids_b" not in collate([(0, 0)], splits, [get_glue_task("mrpc"), get_glue_task("sst2")])


@torch.no_grad()
def test_siamese_features_are_those_of_each_sentence_encoded_alone() -> None:
    tasks = [get_glue_task(n) for n in ("mrpc", "stsb", "sst2")]
    model = _tiny_model(("mrpc", "stsb", "sst2"), pair_mode="siamese").eval()
    assert model.heads["mrpc"].in_features == 4 * 16 and not list(model.heads["stsb"].parameters())
    assert model.heads["sst2"].in_features == 16
    splits = [_split("mrpc", PAIRS), _split("stsb", PAIRS[::-1]), _split("sst2", SINGLE)]
    items = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1)]
    out, features = model(**model_inputs(collate(items, splits, tasks, split_pairs=True)), return_features=True)

    def alone(ids: list[int]) -> torch.Tensor:
        ids = torch.tensor([ids])
        return model.pool(ids, torch.ones_like(ids), torch.zeros_like(ids))[0]

    for i, (t, r) in enumerate(items):
        ids, types = (PAIRS if t == 0 else PAIRS[::-1] if t == 1 else SINGLE)[r]
        if t == 2:
            x = alone(ids)
            torch.testing.assert_close(out[i, :2], model.heads["sst2"](x), atol=1e-5, rtol=0)
            continue
        a = [tok for tok, ty in zip(ids, types) if ty == 0]
        b = [CLS] + [tok for tok, ty in zip(ids, types) if ty == 1]
        u, v = alone(a), alone(b)
        x = torch.cat([u, v, (u - v).abs(), u * v])
        torch.testing.assert_close(features[i], x, atol=1e-5, rtol=0)
        if t == 0:
            torch.testing.assert_close(out[i, :2], model.heads["mrpc"](x), atol=1e-5, rtol=0)
        else:
            torch.testing.assert_close(out[i, 0], F.cosine_similarity(u, v, dim=0), atol=1e-5, rtol=0)
            assert (out[i, 1:] == 0).all()


def test_siamese_needs_token_types_that_mark_the_second_sentence() -> None:
    flat = _split("mrpc", [([CLS, 10, SEP, 20, SEP], [0, 0, 0, 0, 0])])  # e.g. a RoBERTa tokenizer
    with pytest.raises(ConfigError, match="'student.pair_mode' siamese"):
        check_options(StudentConfig(pair_mode="siamese"), [get_glue_task("mrpc")], [flat], processes=1)
    check_options(StudentConfig(pair_mode="siamese"), [get_glue_task("mrpc")], [_split("mrpc", PAIRS)], processes=1)
