"""The method's math against references: annealed losses, λ schedule, task sampler, layer-wise rates, the model.

Each reference is computed independently of the code under test (torch's own cross-entropy and MSE, formulas
written out by hand, parameter names mapped to depths explicitly).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import BertConfig, BertModel

from pipeline.core.config import ModelConfig
from pipeline.core.loss import (
    annealing_lambda,
    classification_loss,
    multitask_loss,
    regression_loss,
    soft_cross_entropy,
)
from pipeline.core.model import MultiTaskModel, head_spec
from pipeline.core.sampling import group_by_length, multitask_plan, rank_slice, single_task_plan, task_probabilities
from pipeline.core.tasks import get_glue_task
from pipeline.core.training import (
    get_lr_multiplier,
    layerwise_param_groups,
    length_sorted_batches,
    make_optimizer,
    micro_batch_size,
    parameter_depth,
    set_lr,
)

ATOL = 1e-5
GARBAGE = 1e4  # written into padding columns: it must not reach any loss or gradient


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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


# ---------------------------------------------------------------------------------------------------------------------
# Task sampling

SIZES = [1000, 300, 50]


@pytest.mark.parametrize("alpha", [0.0, 0.75, 1.0])
def test_task_probabilities_are_normalised_size_powers(alpha: float) -> None:
    weights = [n**alpha for n in SIZES]
    expected = [w / sum(weights) for w in weights]
    np.testing.assert_allclose(task_probabilities(SIZES, alpha), expected, rtol=1e-12)


def test_task_probabilities_special_cases() -> None:
    np.testing.assert_allclose(task_probabilities(SIZES, 0.0), [1 / 3] * 3, rtol=1e-12)
    np.testing.assert_allclose(task_probabilities(SIZES, 1.0), np.array(SIZES) / sum(SIZES), rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.75, 0.0])
def test_multitask_plan_task_frequencies_match_probabilities(alpha: float) -> None:
    batch, steps = 100, 2000
    plan = multitask_plan(SIZES, batch, steps, alpha, seed=7)
    assert plan.shape == (steps, batch, 2)
    n = batch * steps
    counts = np.bincount(plan[..., 0].ravel(), minlength=len(SIZES))
    p = task_probabilities(SIZES, alpha)
    # Each count is Binomial(n, p): a correct sampler lands within 5 standard deviations (p ≈ 6e-7 of failing).
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) <= 5 * sigma), (counts / n, p, sigma)


def test_multitask_plan_rows_are_back_to_back_permutations() -> None:
    plan = multitask_plan(SIZES, 64, 500, 0.75, seed=11)
    tasks, rows = plan[..., 0].ravel(), plan[..., 1].ravel()
    for t, n in enumerate(SIZES):
        stream = rows[tasks == t]
        assert stream.min() >= 0 and stream.max() < n
        k = len(stream) // n
        assert k >= 2, "the plan should cover each task at least twice"
        # Over the first n·k draws every row appears exactly k times...
        np.testing.assert_array_equal(np.bincount(stream[: n * k], minlength=n), np.full(n, k))
        # ...because each consecutive block of n draws is one permutation.
        blocks = np.sort(stream[: n * k].reshape(k, n), axis=1)
        np.testing.assert_array_equal(blocks, np.broadcast_to(np.arange(n), (k, n)))
        # The leftover partial pass repeats no row.
        rest = stream[n * k :]
        assert len(np.unique(rest)) == len(rest)


def test_multitask_plan_is_deterministic_in_the_seed() -> None:
    a = multitask_plan(SIZES, 16, 50, 0.75, seed=3)
    b = multitask_plan(SIZES, 16, 50, 0.75, seed=3)
    c = multitask_plan(SIZES, 16, 50, 0.75, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    s1 = multitask_plan(SIZES, 16, 50, 0.75, seed=3, shuffle_all=True)
    s2 = multitask_plan(SIZES, 16, 50, 0.75, seed=3, shuffle_all=True)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, multitask_plan(SIZES, 16, 50, 0.75, seed=4, shuffle_all=True))


def test_shuffle_all_visits_every_example_once_per_pass() -> None:
    sizes = [7, 5, 3]
    total = sum(sizes)
    passes = 3
    plan = multitask_plan(sizes, 5, passes * total // 5, alpha=0.75, seed=0, shuffle_all=True)
    pairs = plan.reshape(-1, 2)
    assert len(pairs) == passes * total
    every = {(t, r) for t, n in enumerate(sizes) for r in range(n)}
    for p in range(passes):
        chunk = [tuple(x) for x in pairs[p * total : (p + 1) * total].tolist()]
        assert len(chunk) == len(set(chunk)) and set(chunk) == every, f"pass {p}"
    # Tasks are mixed: the first pass is not simply task-by-task.
    assert not np.array_equal(pairs[:total, 0], np.sort(pairs[:total, 0]))


def test_single_task_plan_visits_every_row_once_per_pass() -> None:
    size, batch, steps = 7, 3, 7  # 21 slots = 3 passes
    plan = single_task_plan(size, batch, steps, seed=5, task=2)
    assert plan.shape == (steps, batch, 2)
    assert (plan[..., 0] == 2).all()
    rows = plan[..., 1].ravel()
    blocks = np.sort(rows.reshape(3, size), axis=1)
    np.testing.assert_array_equal(blocks, np.broadcast_to(np.arange(size), (3, size)))
    np.testing.assert_array_equal(plan, single_task_plan(size, batch, steps, seed=5, task=2))
    assert not np.array_equal(plan, single_task_plan(size, batch, steps, seed=6, task=2))


def _pair_counts(pairs: np.ndarray) -> dict[tuple[int, int], int]:
    keys, counts = np.unique(pairs.reshape(-1, 2), axis=0, return_counts=True)
    return {tuple(k): int(c) for k, c in zip(keys.tolist(), counts)}


@pytest.mark.parametrize("alpha", [0.75, 0.0])
def test_group_by_length_keeps_the_plans_examples_and_task_frequencies(alpha: float) -> None:
    rng = np.random.default_rng(0)
    lengths = [rng.integers(5, 120, size=n) for n in SIZES]
    batch, steps, window = 16, 230, 50  # the last window is partial
    plan = multitask_plan(SIZES, batch, steps, alpha, seed=3)
    grouped = group_by_length(plan, lengths, window, seed=3)
    assert grouped.shape == plan.shape
    for start in range(0, steps, window):
        # each window holds exactly the plan's (task, row) pairs, only reordered...
        assert _pair_counts(grouped[start : start + window]) == _pair_counts(plan[start : start + window])
        # ...so at every window boundary the per-task counts so far are the plan's, hence p(τ) ∝ |D_τ|^α
        end = min(start + window, steps)
        np.testing.assert_array_equal(
            np.bincount(grouped[:end, :, 0].ravel(), minlength=3), np.bincount(plan[:end, :, 0].ravel(), minlength=3)
        )

    def padding(p: np.ndarray) -> int:  # pad tokens under dynamic padding
        size = np.array([[lengths[t][r] for t, r in b] for b in p])
        return int((size.max(axis=1, keepdims=True) - size).sum())

    assert padding(grouped) < 0.25 * padding(plan)
    # the batches of a window are not left in length order (no short-to-long curriculum inside a window)
    widths = np.array([max(lengths[t][r] for t, r in b) for b in grouped[:window]])
    assert not np.all(np.diff(widths) >= 0)
    np.testing.assert_array_equal(grouped, group_by_length(plan, lengths, window, seed=3))
    np.testing.assert_array_equal(group_by_length(plan, lengths, 0, seed=3), plan)


def test_group_by_length_single_task_keeps_one_pass_per_epoch() -> None:
    size, batch = 64, 8
    lengths = [np.random.default_rng(1).integers(1, 50, size=size)]
    plan = single_task_plan(size, batch, 16, seed=2)  # 2 passes, each 8 batches
    grouped = group_by_length(plan, lengths, 8, seed=2)
    for p in range(2):
        rows = np.sort(grouped[p * 8 : (p + 1) * 8, :, 1].ravel())
        np.testing.assert_array_equal(rows, np.arange(size))
    for b in grouped:  # within a batch, lengths are a contiguous run of the window's sorted lengths
        size_b = lengths[0][b[:, 1]]
        assert size_b.max() - size_b.min() <= np.ptp(lengths[0])


def test_rank_slice_partitions_the_global_batch() -> None:
    batch, world, accum = 8, 2, 2
    step = multitask_plan(SIZES, batch, 1, 0.75, seed=0)[0]
    step[:, 1] = np.arange(batch)  # tag every slot with its index
    seen = []
    for rank in range(world):
        micro = rank_slice(step, rank, world, accum)
        assert len(micro) == accum
        for part in micro:
            assert part.shape == (batch // (world * accum), 2)
            seen.extend(part[:, 1].tolist())
    assert sorted(seen) == list(range(batch))


def test_micro_batch_size_splits_evenly_or_names_the_keys() -> None:
    assert micro_batch_size(32, 2, 2, "student") == 8
    with pytest.raises(ValueError, match=r"'student\.batch_size'.*'student\.grad_accum'"):
        micro_batch_size(30, 2, 2, "student")


# ---------------------------------------------------------------------------------------------------------------------
# Layer-wise learning rates on a tiny BERT

LR, DECAY, WD = 1e-3, 0.9, 0.01


def _tiny_bert(layers: int = 3, pooler: bool = True) -> BertModel:
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32
    )
    torch.manual_seed(0)
    return BertModel(config, add_pooling_layer=pooler)


def _model(layers: int = 3, pooler: bool = True, regression_head: str = "linear", tasks=("mnli", "stsb")):
    cfg = ModelConfig(regression_head=regression_head)
    heads = {name: head_spec(get_glue_task(name), cfg) for name in tasks}
    return MultiTaskModel(_tiny_bert(layers, pooler), heads, "pooler" if pooler else "cls", dropout=0.0)


def _expected_depth(name: str, layers: int, pooler: bool) -> int:
    """The original BAM numbering, written out by name: heads 0, pooler 1, top layer next, …, embeddings last."""
    top = 2 if pooler else 1
    if name.startswith("heads."):
        return 0
    if name.startswith("encoder.pooler."):
        return 1
    if name.startswith("encoder.embeddings."):
        return top + layers
    for i in range(layers):
        if name.startswith(f"encoder.encoder.layer.{i}."):
            return top + (layers - 1 - i)
    raise AssertionError(f"unexpected parameter {name}")


def _group_of(groups: list[dict]) -> dict[str, dict]:
    return {name: g for g in groups for name in g["names"]}


def test_groups_cover_every_parameter_exactly_once() -> None:
    model = _model()
    groups = layerwise_param_groups(model, LR, DECAY, WD)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert len(ids) == len(list(model.parameters()))


def test_depths_follow_the_bam_numbering_with_pooler() -> None:
    model = _model(layers=3)
    group = _group_of(layerwise_param_groups(model, LR, DECAY, WD))
    explicit = {
        "heads.mnli.weight": 0,
        "heads.stsb.bias": 0,
        "encoder.pooler.dense.weight": 1,
        "encoder.encoder.layer.2.attention.self.query.weight": 2,
        "encoder.encoder.layer.1.output.dense.weight": 3,
        "encoder.encoder.layer.0.intermediate.dense.bias": 4,
        "encoder.embeddings.word_embeddings.weight": 5,
        "encoder.embeddings.LayerNorm.weight": 5,
    }
    for name, depth in explicit.items():
        assert group[name]["depth"] == depth, name
    for name, _ in model.named_parameters():
        assert group[name]["depth"] == _expected_depth(name, 3, pooler=True), name
        assert parameter_depth(name, 3, has_pooler=True) == _expected_depth(name, 3, pooler=True), name


def test_group_rates_and_weight_decay() -> None:
    model = _model()
    groups = layerwise_param_groups(model, LR, DECAY, WD)
    assert {g["depth"] for g in groups} == set(range(6))
    for g in groups:
        assert g["lr"] == pytest.approx(LR * DECAY ** g["depth"], rel=1e-12)
        for name in g["names"]:
            no_decay = name.endswith(".bias") or "LayerNorm" in name
            assert g["weight_decay"] == (0.0 if no_decay else WD), name


def test_layer_count_comes_from_the_config_not_the_name() -> None:
    model = _model(layers=3)
    model.encoder.config._name_or_path = "google/bert_uncased_L-12_H-768_A-12"
    model.encoder.config.name_or_path = "google/bert_uncased_L-12_H-768_A-12"
    group = _group_of(layerwise_param_groups(model, LR, DECAY, WD))
    assert group["encoder.embeddings.word_embeddings.weight"]["depth"] == 5
    assert group["encoder.encoder.layer.0.attention.self.key.weight"]["depth"] == 4


def _other_encoder(kind: str, groups: int = 1):
    import transformers

    common = {"vocab_size": 50, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
    configs = {
        "albert": ("AlbertConfig", "AlbertModel", {
            "num_hidden_layers": 4, "num_hidden_groups": groups, "embedding_size": 8,
        }),
        "deberta-v2": ("DebertaV2Config", "DebertaV2Model", {
            "num_hidden_layers": 4, "relative_attention": True, "position_buckets": 8, "norm_rel_ebd": "layer_norm",
            "conv_kernel_size": 3,
        }),
        "distilbert": ("DistilBertConfig", "DistilBertModel", {
            "dim": 16, "hidden_dim": 32, "n_layers": 4, "n_heads": 2,
        }),
        "electra": ("ElectraConfig", "ElectraModel", {"num_hidden_layers": 4, "embedding_size": 8}),
        "roberta": ("RobertaConfig", "RobertaModel", {"num_hidden_layers": 4}),
    }  # fmt: skip
    config_cls, model_cls, extra = configs[kind]
    config = getattr(transformers, config_cls)(**({} if kind == "distilbert" else common), **extra)
    if kind == "distilbert":
        config.vocab_size = 50
    torch.manual_seed(0)
    encoder = getattr(transformers, model_cls)(config)
    heads = {name: head_spec(get_glue_task(name), ModelConfig()) for name in ("mnli", "stsb")}
    return MultiTaskModel(encoder, heads, "cls", dropout=0.0)


@pytest.mark.parametrize("kind", ["albert", "deberta-v2", "distilbert", "electra", "roberta"])
def test_depths_for_other_bert_family_encoders(kind: str) -> None:
    """Every parameter gets a depth; layers are numbered top (shallow) to bottom (deep) and everything on the input
    side (embeddings, embedding projections, relative position embeddings) gets the deepest depth, the lowest rate."""
    model = _other_encoder(kind)
    group = _group_of(layerwise_param_groups(model, LR, DECAY, WD))
    assert set(group) == {name for name, _ in model.named_parameters()}
    pooler = 1 if getattr(model.encoder, "pooler", None) is not None else 0
    deepest = pooler + 4 + 1
    for name in group:
        match = re.search(r"\.layers?\.(\d+)\.", name)
        if name.startswith("heads."):
            expected = 0
        elif ".pooler." in name:
            expected = 1
        elif match and "albert" not in name:
            expected = pooler + 4 - int(match.group(1))
        elif "albert_layer_groups" in name:
            expected = pooler + 1  # one group shared by all 4 layers: the top layer's depth
        else:
            expected = deepest
        assert group[name]["depth"] == expected, name
    input_side = {
        "albert": "encoder.encoder.embedding_hidden_mapping_in.weight",
        "deberta-v2": "encoder.encoder.rel_embeddings.weight",
        "electra": "encoder.embeddings_project.weight",
    }
    if kind in input_side:
        assert group[input_side[kind]]["depth"] == deepest
    if kind == "deberta-v2":
        assert group["encoder.encoder.conv.conv.weight"]["depth"] == deepest


def test_albert_layer_groups_sit_at_their_top_layer() -> None:
    model = _other_encoder("albert", groups=2)  # group 0 serves layers 0–1, group 1 layers 2–3
    group = _group_of(layerwise_param_groups(model, LR, DECAY, WD))
    g0 = "encoder.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight"
    g1 = "encoder.encoder.albert_layer_groups.1.albert_layers.0.ffn.weight"
    assert (group[g1]["depth"], group[g0]["depth"]) == (1 + 4 - 3, 1 + 4 - 1)


def test_padding_uses_the_encoders_pad_token() -> None:
    """RoBERTa-style vocabularies pad with id 1, not 0: the model reads its pad id from the encoder config and
    `collate` pads input ids with it (the attention mask still marks the padding)."""
    from pipeline.core.data import TokenizedSplit, collate

    model = _other_encoder("roberta")
    assert model.pad_id == model.encoder.config.pad_token_id == 1
    assert _model().pad_id == 0
    split = TokenizedSplit(
        task="sst2",
        split="train",
        ids=["a", "b"],
        input_ids=np.array([0, 5, 6, 2, 0, 7, 2], np.int32),
        token_type_ids=np.zeros(7, np.int8),
        offsets=np.array([0, 4, 7]),
        labels=np.array([0.0, 1.0], np.float32),
        fingerprint="x",
        examples_fingerprint="y",
    )
    batch = collate([(0, 0), (0, 1)], [split], [get_glue_task("sst2")], pad_id=1)
    assert batch["input_ids"].tolist() == [[0, 5, 6, 2], [0, 7, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_unknown_parameter_names_are_an_error() -> None:
    with pytest.raises(ValueError, match="cannot place parameter 'encoder.mystery.weight'"):
        parameter_depth("encoder.mystery.weight", 4, has_pooler=False)


@pytest.mark.parametrize("layers", [1, 4])
def test_depths_scale_with_the_layer_count(layers: int) -> None:
    model = _model(layers=layers)
    group = _group_of(layerwise_param_groups(model, LR, DECAY, WD))
    for name, _ in model.named_parameters():
        assert group[name]["depth"] == _expected_depth(name, layers, pooler=True), name
    assert group["encoder.embeddings.word_embeddings.weight"]["depth"] == layers + 2


def test_depths_without_pooler() -> None:
    layers = 3
    model = _model(layers=layers, pooler=False)
    assert not any(".pooler." in n for n, _ in model.named_parameters())
    groups = layerwise_param_groups(model, LR, DECAY, WD)
    group = _group_of(groups)
    assert group["encoder.encoder.layer.2.attention.self.query.weight"]["depth"] == 1
    assert group["encoder.encoder.layer.0.attention.self.query.weight"]["depth"] == 3
    assert group["encoder.embeddings.word_embeddings.weight"]["depth"] == layers + 1
    for name, _ in model.named_parameters():
        assert group[name]["depth"] == _expected_depth(name, layers, pooler=False), name
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())


def test_set_lr_scales_every_group_from_its_base() -> None:
    model = _model()
    optimizer = make_optimizer(model, LR, DECAY, WD)
    base = [g["base_lr"] for g in optimizer.param_groups]
    expected = sorted(LR * DECAY**d for d in range(6))
    assert sorted(set(base)) == pytest.approx(expected, rel=1e-12)
    for g in optimizer.param_groups:
        assert g["lr"] == g["base_lr"]
    set_lr(optimizer, 0.5)
    for g, b in zip(optimizer.param_groups, base):
        assert g["lr"] == pytest.approx(0.5 * b, rel=1e-12)
    set_lr(optimizer, 1.0)  # the schedule is a pure function of the step: no drift
    for g, b in zip(optimizer.param_groups, base):
        assert g["lr"] == pytest.approx(b, rel=1e-12)
    ids = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------------------
# Learning-rate schedule


def test_lr_multiplier_warms_up_then_decays_to_zero() -> None:
    total, warmup = 100, 10
    m = np.array([get_lr_multiplier(s, total, warmup) for s in range(total + 1)])
    assert m[0] > 0
    assert m[warmup - 1] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(m[:warmup]), 1 / warmup, atol=1e-12)  # linear rise
    assert m[warmup] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(m[warmup:]), -1 / (total - warmup), atol=1e-12)  # linear decay
    assert m[total] == 0.0
    assert m.max() <= 1.0 + 1e-12
    assert all(get_lr_multiplier(s, total, warmup) >= 0 for s in range(total + 50))


def test_lr_multiplier_without_warmup() -> None:
    total = 50
    m = np.array([get_lr_multiplier(s, total, 0) for s in range(total + 1)])
    assert m[0] == 1.0
    assert m[total] == 0.0
    np.testing.assert_allclose(np.diff(m), -1 / total, atol=1e-12)
    assert get_lr_multiplier(total + 10, total, 0) == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# The model's forward pass


def _inputs(task_ids: list[int], seq: int = 7) -> dict[str, torch.Tensor]:
    g = _gen(9)
    B = len(task_ids)
    return {
        "input_ids": torch.randint(5, 50, (B, seq), generator=g),
        "attention_mask": torch.ones(B, seq, dtype=torch.long),
        "token_type_ids": torch.zeros(B, seq, dtype=torch.long),
        "task_ids": torch.tensor(task_ids),
    }


def test_forward_places_each_task_head_in_its_columns() -> None:
    model = _model(tasks=("mnli", "sst2", "stsb"), regression_head="sigmoid").eval()
    batch = _inputs([0, 2, 1, 0, 2, 1])
    with torch.no_grad():
        out = model(**batch)
        pooled = model.pool(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert out.shape == (6, 3)
    for t, name in enumerate(("mnli", "sst2", "stsb")):
        rows = batch["task_ids"] == t
        width = get_glue_task(name).num_labels
        expected = model.heads[name](pooled[rows])
        if name == "stsb":
            expected = torch.sigmoid(expected)
        torch.testing.assert_close(out[rows, :width], expected, atol=1e-6, rtol=0)
        assert (out[rows, width:] == 0).all(), name
    reg = out[batch["task_ids"] == 2, 0]
    assert ((reg > 0) & (reg < 1)).all()


def test_forward_linear_regression_head_is_unsquashed() -> None:
    model = _model(tasks=("stsb",), regression_head="linear").eval()
    with torch.no_grad():
        model.heads["stsb"].bias.fill_(3.0)
        out = model(**_inputs([0, 0, 0]))
    assert (out[:, 0] > 1).all()


def test_gradients_reach_only_the_heads_in_the_batch() -> None:
    model = _model(tasks=("mnli", "sst2", "stsb"), regression_head="sigmoid")
    out = model(**_inputs([0, 2, 0, 2]))  # no sst2 row
    (out**2).sum().backward()
    for name in ("mnli", "stsb"):
        grad = model.heads[name].weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    grad = model.heads["sst2"].weight.grad
    assert grad is None or (grad == 0).all()
    assert model.encoder.embeddings.word_embeddings.weight.grad is not None


# ---------------------------------------------------------------------------------------------------------------------
# Length-sorted inference batches


def _check_batches(lengths: np.ndarray, max_examples: int, max_tokens: int) -> None:
    batches = length_sorted_batches(lengths, max_examples, max_tokens)
    rows = np.concatenate(batches) if batches else np.array([], dtype=int)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert 1 <= len(b) <= max_examples
        # A single over-long row must still get a batch of its own; any larger batch respects the token cap.
        assert len(b) == 1 or len(b) * lengths[b].max() <= max_tokens


def test_length_sorted_batches_cover_rows_and_respect_caps() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=300)
    lengths[17] = 500  # longer than max_tokens on its own
    _check_batches(lengths, 16, 256)
    batches = length_sorted_batches(lengths, 16, 256)
    assert any(list(b) == [17] for b in batches)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 128), min_size=0, max_size=80),
    max_examples=st.integers(1, 20),
    max_tokens=st.integers(1, 1024),
)
def test_length_sorted_batches_property(lengths: list[int], max_examples: int, max_tokens: int) -> None:
    _check_batches(np.asarray(lengths, dtype=np.int64), max_examples, max_tokens)
