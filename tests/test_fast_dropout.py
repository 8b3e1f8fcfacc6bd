"""`model.fast_dropout` (pipeline/core/dropout.py): the 16-bit mask is dropout in distribution, its backward uses
the forward's mask, the written-out attention is SDPA's maths, evaluation is unchanged, and a run with it trains
end to end and counts it in its digests only when on."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import run_smoke
from pipeline_helpers import manifest
from scipy.stats import binomtest
from transformers import AlbertConfig, AutoModel, BertConfig, BertModel, DistilBertConfig, ElectraConfig, RobertaConfig

import pipeline.core.dropout as dropout_module
from pipeline.core.config import ModelConfig
from pipeline.core.dropout import ATTENTION, FastDropout, fast_dropout, rounded, use_fast_dropout
from pipeline.core.model import MultiTaskModel, head_spec
from pipeline.core.tasks import get_glue_task


@pytest.mark.parametrize("p", [0.1, 0.5, 0.03])
def test_the_mask_keeps_one_minus_p_and_scales_the_kept_exactly(p: float) -> None:
    torch.manual_seed(0)
    x = torch.rand(4_000_003) + 0.5
    y = fast_dropout(x, p)
    kept = y != 0
    # the kept count is Binomial(n, 1 − p): at this n a threshold of 8 bits instead of 16 (p 0.1 → 0.1016) is 10
    # standard deviations away, and so is a mask that keeps p instead of 1 − p
    assert binomtest(int(kept.sum()), x.numel(), 1 - rounded(p)).pvalue > 1e-4
    assert binomtest(int(kept.sum()), x.numel(), 1 - round(p * 256) / 256).pvalue < 1e-6 or p == 0.5
    torch.testing.assert_close(y[kept], x[kept] / (1 - rounded(p)), rtol=1e-6, atol=0)
    assert abs(rounded(p) - p) <= 0.5 / 65536


def test_the_backward_goes_through_the_forwards_mask_and_the_draws_follow_the_seed() -> None:
    x = torch.ones(4, 1001, requires_grad=True)
    torch.manual_seed(3)
    y = FastDropout(0.2).train()(x)
    y.backward(torch.full_like(y, 2.0))
    torch.testing.assert_close(x.grad, 2.0 * y.detach())
    torch.manual_seed(3)
    assert torch.equal(FastDropout(0.2)(x), y)  # the global generator: a checkpoint's RNG state resumes it
    assert not torch.equal(FastDropout(0.2)(x), y)
    assert torch.equal(FastDropout(0.2).eval()(x), x)


def test_bf16_keeps_its_precision_and_the_extreme_rates_behave() -> None:
    x = torch.randn(64, 33, dtype=torch.bfloat16)
    assert fast_dropout(x, 0.1).dtype == torch.bfloat16
    assert torch.equal(fast_dropout(x, 1e-7), x)  # rounds to 0: nothing dropped
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="expected 0 <= p <= 1"):
        fast_dropout(x, 1.5)


def _model(dropout: float) -> MultiTaskModel:
    config = BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )  # fmt: skip
    torch.manual_seed(0)
    heads = {t: head_spec(get_glue_task(t), ModelConfig()) for t in ("sst2", "stsb")}
    return MultiTaskModel(BertModel(config), heads, "pooler", dropout=dropout)


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 60, (6, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[:3, 5:] = 0  # padded rows: the attention mask must be honoured
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "task_ids": torch.tensor([0, 1, 0, 1, 0, 1])}  # fmt: skip


def _loss_and_grads(model: MultiTaskModel) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    out = model(**_batch())
    loss = out.float().pow(2).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_every_dropout_is_replaced_and_the_encoder_uses_the_written_out_attention() -> None:
    model = use_fast_dropout(_model(0.1))
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert sum(isinstance(m, FastDropout) for m in model.modules()) > 5
    assert model.encoder.config._attn_implementation == ATTENTION


def _no_sdpa(*args, **kwargs):
    raise AssertionError("SDPA was called where attention should be written out")


def test_the_written_out_attention_is_sdpas_maths_and_gradients(monkeypatch) -> None:
    """A rate of 1e-7 rounds to 0 (nothing dropped, scale 1) yet takes the training branch, so attention runs
    written out (SDPA is made to fail there); the reference is the same weights under SDPA with no dropout."""
    reference, fast = _model(0.0).train(), use_fast_dropout(_model(1e-7)).train()
    fast.load_state_dict(reference.state_dict())
    loss_ref, grads_ref = _loss_and_grads(reference)
    monkeypatch.setattr(dropout_module, "sdpa_attention_forward", _no_sdpa)
    loss_fast, grads_fast = _loss_and_grads(fast)
    torch.testing.assert_close(loss_fast, loss_ref, rtol=1e-5, atol=1e-6)
    assert grads_fast.keys() == grads_ref.keys()
    for name in grads_ref:
        torch.testing.assert_close(grads_fast[name], grads_ref[name], rtol=1e-4, atol=1e-6, msg=name)


def test_evaluation_is_unchanged() -> None:
    stock = _model(0.1).eval()
    fast = use_fast_dropout(copy.deepcopy(stock)).eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(**_batch()), stock(**_batch()), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bf16", [False, True])
def test_training_attention_is_the_masked_product_written_out(monkeypatch, bf16: bool) -> None:
    """In training with dropout, attention is softmax(QKᵀ · scale + mask) with the 16-bit mask of the same draws,
    times V (SDPA made to fail), under bf16 autocast too; in evaluation it is SDPA's, with nothing dropped."""
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 2, 5, 4, generator=gen) for _ in range(3))
    pad = torch.zeros(2, 1, 5, 5)
    pad[0, :, :, 3:] = torch.finfo(torch.float32).min  # the first row's last two tokens are padding
    module = torch.nn.Module().train()
    monkeypatch.setattr(dropout_module, "sdpa_attention_forward", _no_sdpa)
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out, _ = dropout_module.fast_attention(module, q, k, v, pad, scaling=0.5, dropout=0.3)
    torch.manual_seed(5)
    probs = fast_dropout(torch.softmax(q @ k.transpose(2, 3) * 0.5 + pad, dim=-1), 0.3)
    expected = (probs @ v).transpose(1, 2)
    assert (probs == 0).any() and out.shape == expected.shape
    torch.testing.assert_close(out.float(), expected, rtol=0.02 if bf16 else 1e-6, atol=0.02 if bf16 else 1e-6)
    monkeypatch.undo()
    evaluated, _ = dropout_module.fast_attention(module.eval(), q, k, v, pad, scaling=0.5, dropout=0.3)
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, pad, scale=0.5).transpose(1, 2)
    torch.testing.assert_close(evaluated, reference)


# the size of a tiny ELECTRA or ALBERT, whose embeddings have a width of their own
FACTORISED = dict(
    vocab_size=60, embedding_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
)


@pytest.mark.parametrize(
    "config",
    [
        DistilBertConfig(vocab_size=60, dim=16, n_layers=1, n_heads=2, hidden_dim=32),
        RobertaConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
        ElectraConfig(**FACTORISED),
        AlbertConfig(**FACTORISED),
    ],  # fmt: skip
    ids=lambda c: c.model_type,
)
def test_other_families_take_it_and_save_without_it(config, tmp_path: Path) -> None:
    encoder = use_fast_dropout(AutoModel.from_config(config))
    assert not any(type(m) is torch.nn.Dropout for m in encoder.modules())
    assert encoder.config._attn_implementation == ATTENTION
    encoder.train()(input_ids=torch.randint(1, 60, (2, 7))).last_hidden_state.sum().backward()
    encoder.save_pretrained(tmp_path)
    assert ATTENTION not in (tmp_path / "config.json").read_text()


def test_a_run_with_it_trains_and_it_counts_in_the_digests_only_when_on(smoke_copy: Path) -> None:
    before = {s: manifest(smoke_copy, s)["digest"] for s in ("data", "teachers", "student")}
    assert run_smoke(smoke_copy, "--model.fast_dropout=false") == []  # off: the digests of runs made before it
    ran = run_smoke(smoke_copy, "--model.fast_dropout=true")
    assert ran == ["teachers", "distill", "student", "evaluate", "report"]
    assert manifest(smoke_copy, "data")["digest"] == before["data"]
    assert all(manifest(smoke_copy, s)["digest"] != before[s] for s in ("teachers", "student"))
