"""The method's model against references: layer-wise learning rates (parameter names mapped to depths explicitly,
for BERT and other encoders of its family), the learning-rate schedule, the multitask forward pass."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from method_helpers import _gen
from transformers import BertConfig, BertModel

from pipeline.core.config import ModelConfig
from pipeline.core.model import MultiTaskModel, head_spec
from pipeline.core.tasks import get_glue_task
from pipeline.core.training import get_lr_multiplier, layerwise_param_groups, make_optimizer, parameter_depth, set_lr

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


@pytest.mark.parametrize("pooling", ["pooler", "cls", "mean"])
def test_every_pooling_runs_under_bf16_autocast(pooling: str) -> None:
    """On a CPU, autocast leaves LayerNorm's output (what cls and mean pooling read) in fp32 while the heads'
    Linear layers compute in bf16: the rows of the tasks are gathered into one output whatever the mix."""
    cfg = ModelConfig()
    heads = {name: head_spec(get_glue_task(name), cfg) for name in ("mnli", "stsb")}
    model = MultiTaskModel(_tiny_bert(pooler=pooling == "pooler"), heads, pooling, dropout=0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, features = model(**_inputs([0, 1, 0, 1]), return_features=True)
    assert out.shape == (4, 3) and features.shape[0] == 4
    assert torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert model.heads["stsb"].weight.grad is not None
