"""The multitask options (docs/options.md): each against a reference computation, the digests they must leave
alone at their defaults, and each family end to end on the smoke config (train, evaluate, report, predict)."""

from __future__ import annotations

import dataclasses
import json
import math
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, SMOKE, run_smoke
from safetensors.torch import load_file
from transformers import BertConfig, BertModel

from pipeline.cli import main
from pipeline.core.accel import make_accelerator
from pipeline.core.config import OPTIONS, ConfigError, ModelConfig, RunConfig, StudentConfig, load_config, validate
from pipeline.core.data import TokenizedSplit, collate
from pipeline.core.loss import multitask_loss
from pipeline.core.model import MultiTaskModel, head_spec
from pipeline.core.sampling import group_by_length, multitask_plan
from pipeline.core.tasks import get_glue_task
from pipeline.core.training import make_optimizer, model_inputs, set_lr
from pipeline.dag import stage_status
from stages import STAGES as REGISTRY
from student.options import check_options, get_options
from student.options.adversarial import adversarial_backward
from student.options.mixing import examples_per_step, round_robin_plan, student_plan, summed_plan
from student.options.pcgrad import pcgrad_backward, project_conflicting
from student.options.supcon import supervised_contrastive_loss
from student.options.unfreeze import drop_frozen_grads, freeze_deeper, trainable_depth
from student.train import forward_loss

GLUE_SMALL = ROOT / "configs" / "glue-small.yaml"
TASKS = ["sst2", "mrpc", "stsb", "rte"]
# The student keys that existed before the options: every other key must be in OPTIONS (the report names it if set).
BAM_KEYS = {
    "epochs", "batch_size", "lr", "layer_decay", "warmup", "weight_decay", "max_grad_norm", "grad_accum", "alpha",
    "shuffle_all", "fixed_lambda", "group_by_length", "eval_batch_size", "log_every", "checkpoint_every",
    "keep_checkpoints", "seed", "eval_every", "select",
}  # fmt: skip
ON = {  # a non-default value of every option key
    "mixing": "summed",
    "adversarial": "fgm",
    "adv_epsilon": 0.5,
    "adv_alpha": 0.1,
    "adv_steps": 2,
    "supcon_weight": 0.1,
    "supcon_temperature": 0.2,
    "pair_mode": "siamese",
    "unfreeze_every": 10.0,
    "unfreeze_unit": "epochs",
    "task_loss": "standardised",
    "task_weights": {"stsb": 0.5},
    "sampling_weights": {"stsb": 2.0},
    "swap_pairs": ("mrpc", "stsb"),
    "pooling": "mean",
    "regression_hidden": 8,
    "model": "tiny-random",
    "layers": "every_other",
}


# ---------------------------------------------------------------------------------------------------------------------
# Digests and validation


def _keys(d: dict) -> set[str]:
    return {k for k, v in d.items()} | {k for v in d.values() if isinstance(v, dict) for k in _keys(v)}


def test_every_new_student_key_is_an_option() -> None:
    fields = {f.name for f in dataclasses.fields(StudentConfig)}
    assert set(OPTIONS) == fields - BAM_KEYS == set(ON)
    defaults = StudentConfig()
    assert all(getattr(defaults, k) != v for k, v in ON.items())


@pytest.mark.parametrize("path", [GLUE_SMALL, SMOKE], ids=["glue-small", "smoke"])
def test_default_configs_keep_the_options_in_the_students_digest_only(path: Path) -> None:
    """At their defaults the options' keys are in the student's digest, but for the keys no option then reads."""
    cfg = load_config(path)
    for name, stage in REGISTRY.items():
        read = {"mixing", "adversarial", "supcon_weight", "pair_mode", "unfreeze_every", *REGRESSION_KEYS}
        read = read if name == "student" else set()
        assert set(stage.config_subset(cfg).get("student", {})) & set(OPTIONS) == read, name


REGRESSION_KEYS = ("task_loss", "sampling_weights", "swap_pairs", "pooling", "regression_hidden")  # always read


# The option a key is read under: alone, it changes no output, so it changes no digest.
NEEDS = {
    "adv_epsilon": {"adversarial": "fgm"},
    "adv_alpha": {"adversarial": "pgd"},
    "adv_steps": {"adversarial": "pgd"},
    "supcon_temperature": {"supcon_weight": 0.1},
    "unfreeze_unit": {"unfreeze_every": 10.0},
}


def _overrides(values: dict) -> list[str]:
    return [f"--student.{k}={v!r}" for k, v in values.items()]


@pytest.mark.parametrize("key", sorted(ON))
def test_an_option_changes_only_the_students_config_subset(key: str) -> None:
    base = load_config(SMOKE, _overrides(NEEDS.get(key, {})))
    cfg = load_config(SMOKE, _overrides({**NEEDS.get(key, {}), key: ON[key]}))
    for name, stage in REGISTRY.items():
        assert (stage.config_subset(cfg) == stage.config_subset(base)) == (name != "student"), name
    expected = list(ON[key]) if isinstance(ON[key], tuple) else ON[key]  # the digest's JSON form
    assert REGISTRY["student"].config_subset(cfg)["student"][key] == expected
    if key in NEEDS:  # without the option that reads it, the key is left out
        alone = load_config(SMOKE, _overrides({key: ON[key]}))
        assert REGISTRY["student"].config_subset(alone) == REGISTRY["student"].config_subset(load_config(SMOKE))


def test_a_changed_default_does_not_pass_a_run_of_the_old_default_for_a_new_one() -> None:
    """FGM at ε 1 (the default when the option was added) and at today's default have different digests."""
    subset = REGISTRY["student"].config_subset
    old = subset(load_config(SMOKE, ["--student.adversarial='fgm'", "--student.adv_epsilon=1.0"]))
    now = subset(load_config(SMOKE, ["--student.adversarial='fgm'"]))
    assert old != now and now["student"]["adv_epsilon"] == StudentConfig().adv_epsilon != 1.0


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["--student.mixing='sum'"], "student.mixing"),
        (["--student.adversarial='fgx'"], "student.adversarial"),
        (["--student.adversarial='pgd'", "--student.adv_epsilon=0"], "student.adv_epsilon"),
        (["--student.adversarial='pgd'", "--student.adv_alpha=-1"], "student.adv_alpha"),
        (["--student.adv_steps=0"], "student.adv_steps"),
        (["--student.supcon_weight=-0.1"], "student.supcon_weight"),
        (["--student.supcon_temperature=0"], "student.supcon_temperature"),
        (["--student.unfreeze_every=-1"], "student.unfreeze_every"),
        (["--student.unfreeze_every=2.5"], "student.unfreeze_every"),  # steps: a whole number
        (["--student.mixing='summed'", "--student.shuffle_all=True"], "student.shuffle_all"),
        (["--student.mixing='pcgrad'", "--student.adversarial='fgm'"], "student.adversarial"),
    ],
)
def test_invalid_options_are_rejected_naming_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, overrides)


def test_validate_names_the_choices_of_a_config_built_in_code() -> None:
    cfg = RunConfig(student=StudentConfig(adversarial="fgx", pair_mode="bi"))  # type: ignore[arg-type]
    problems = validate(cfg)
    assert "'student.adversarial' must be one of none/fgm/fgsm/pgd, got 'fgx'" in problems
    assert "'student.pair_mode' must be one of cross/siamese, got 'bi'" in problems
    assert not validate(RunConfig(student=StudentConfig(unfreeze_every=0.5, unfreeze_unit="epochs")))


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


def _tiny_model(tasks=("sst2", "rte"), pair_mode: str = "cross", layers: int = 2) -> MultiTaskModel:
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    heads = {name: head_spec(get_glue_task(name), ModelConfig()) for name in tasks}
    return MultiTaskModel(BertModel(config), heads, "pooler", dropout=0.0, pair_mode=pair_mode)


def _batch(task_ids: list[int], seq: int = 7, seed: int = 9) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = len(task_ids)
    mask = torch.ones(n, seq, dtype=torch.long)
    mask[0, 5:] = 0  # padding
    return {
        "input_ids": torch.randint(5, 50, (n, seq), generator=g) * mask,
        "attention_mask": mask,
        "token_type_ids": torch.zeros(n, seq, dtype=torch.long),
        "task_ids": torch.tensor(task_ids),
        "labels": torch.randint(0, 2, (n,), generator=g).float(),
    }


def _loss(model: MultiTaskModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    tasks = [get_glue_task(n) for n in model.task_names]
    return multitask_loss(model(**model_inputs(batch)), batch["task_ids"], batch["labels"], tasks, 1.0)[0]


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


# ---------------------------------------------------------------------------------------------------------------------
# End to end: each option family trains, and evaluate, report and predict work with it

FAMILIES = {  # every option on its own, then all that combine at once
    "round-robin": ["--student.mixing='round-robin'"],
    "summed": ["--student.mixing='summed'"],
    "pcgrad": ["--student.mixing='pcgrad'"],
    "fgm": ["--student.adversarial='fgm'"],
    "fgsm": ["--student.adversarial='fgsm'", "--student.adv_epsilon=0.01"],
    "pgd": ["--student.adversarial='pgd'", "--student.adv_steps=2"],
    "supcon": ["--student.supcon_weight=0.2"],
    "siamese": ["--student.pair_mode='siamese'"],
    "unfreeze": ["--student.unfreeze_every=30.0"],
    "standardised": ["--student.task_loss='standardised'"],
    "label-scale": ["--student.task_loss='label-scale'"],
    "sampling": ["--student.sampling_weights={'stsb': 3.0}"],
    "swap": ["--student.swap_pairs=['mrpc', 'stsb']"],
    "heads": ["--student.regression_hidden=8", "--student.pooling='mean'"],
    "combined": [
        "--student.mixing='summed'", "--student.adversarial='fgm'", "--student.supcon_weight=0.2",
        "--student.pair_mode='siamese'", "--student.unfreeze_every=5.0",
    ],
}  # fmt: skip
SHORT = ["--student.epochs=2"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_student_trains_and_is_used_with_each_option(smoke_copy: Path, family: str, capsys) -> None:
    overrides = [*SHORT, *FAMILIES[family]]
    before = {
        s: json.loads((smoke_copy / "manifests" / f"{s}.json").read_text()) for s in ("data", "teachers", "distill")
    }
    assert run_smoke(smoke_copy, *overrides) == ["student", "evaluate", "report"]
    cfg = load_config(SMOKE, overrides)
    for stage, manifest in before.items():  # the shared stages stay done, untouched
        assert stage_status(REGISTRY, stage, cfg, smoke_copy)[0] == "done"
        assert json.loads((smoke_copy / "manifests" / f"{stage}.json").read_text()) == manifest
    summary = json.loads((smoke_copy / "student" / "summary.json").read_text())
    counts = summary["examples_per_task"]
    assert sum(counts.values()) == summary["total_steps"] * summary["batch_size"]
    if family in ("round-robin", "summed", "pcgrad", "combined"):
        assert len(set(counts.values())) == 1  # every task equally often
    log = [json.loads(line) for line in (smoke_copy / "student" / "log.jsonl").read_text().splitlines()]
    assert log[-2]["examples_seen"] == counts and all(math.isfinite(v) for x in log[:-1] for v in x["loss"].values())
    assert all(x["grad_norm"].keys() == set(TASKS) for x in log[:-1])  # each task's gradient at the heads' input
    assert all(any(x["grad_norm"][t] > 0 for x in log[:-1]) for t in TASKS)
    if family in ("fgm", "fgsm", "pgd", "combined"):  # the loss at the adversarial embeddings, of the same examples
        assert all(x["adv_loss"].keys() == x["loss"].keys() for x in log[:-1])
        assert all(math.isfinite(v) and v != x["loss"][t] for x in log[:-1] for t, v in x["adv_loss"].items())
    else:
        assert not any("adv_loss" in x for x in log)
    # the saved model, reloaded by `evaluate`, scores what the model in memory scored
    metrics = json.loads((smoke_copy / "metrics.json").read_text())
    for task in TASKS:
        assert metrics["tasks"][task]["student"] == summary["dev"][task]
    key, value = FAMILIES[family][0][len("--student.") :].split("=")
    assert f"{key} {value.strip(chr(39))}" in (smoke_copy / "report.md").read_text()
    model = str(smoke_copy / "student" / "model")
    tsv = smoke_copy / "data" / "synthetic-glue" / "STS-B" / "dev.tsv"
    assert main(["predict", "--model", model, "--task", "stsb", "--input", str(tsv)]) == 0
    scores = [json.loads(line)["score"] for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(scores) == 48 and all(math.isfinite(s) for s in scores)
    if family in ("siamese", "combined"):
        assert json.loads((smoke_copy / "student" / "model" / "heads.json").read_text())["pair_mode"] == "siamese"
        assert "siamese bi-encoder" in (smoke_copy / "student" / "model" / "README.md").read_text()
        teacher = json.loads((smoke_copy / "teachers" / "mrpc" / "model" / "heads.json").read_text())
        assert teacher["pair_mode"] == "cross"  # teachers stay cross-encoders
    if family == "unfreeze":  # 80 steps, a depth every 30: layer 0 (depth 3) and the embeddings (4) never trained
        initial = load_file(str(smoke_copy / "data" / "tiny-random" / "model.safetensors"))
        trained = load_file(str(smoke_copy / "student" / "model" / "model.safetensors"))
        assert summary["total_steps"] == 80
        for name, value in trained.items():
            frozen = name.startswith(("embeddings.", "encoder.layer.0."))
            assert torch.equal(value, initial[name]) == frozen, name
