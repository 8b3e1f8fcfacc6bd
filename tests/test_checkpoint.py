"""Checkpoints: complete state, no pickle, and broken or half-written ones are never loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from pipeline.core.accel import make_accelerator
from pipeline.core.checkpoint import find_resume_checkpoint, load_checkpoint, save_checkpoint, verify_checkpoint
from pipeline.core.model import MultiTaskModel
from pipeline.core.tasks import get_glue_task
from pipeline.core.training import make_optimizer


def tiny_model(seed: int) -> MultiTaskModel:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32)  # fmt: skip
    heads = {"sst2": {"outputs": 2, "kind": "classification", "sigmoid": False},
             "stsb": {"outputs": 1, "kind": "regression", "sigmoid": False}}  # fmt: skip
    return MultiTaskModel(BertModel(config), heads, "pooler", 0.1)


def train_steps(model, optimizer, steps: int) -> None:
    tasks = [get_glue_task("sst2"), get_glue_task("stsb")]
    from pipeline.core.loss import multitask_loss

    for _ in range(steps):
        ids = torch.randint(5, 40, (4, 7))
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), task_ids=torch.tensor([0, 1, 0, 1]))
        loss, _ = multitask_loss(out, torch.tensor([0, 1, 0, 1]), torch.tensor([1.0, 0.3, 0.0, 0.9]), tasks, 1.0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.fixture
def saved(tmp_path: Path):
    acc = make_accelerator()
    model = tiny_model(0)
    optimizer = make_optimizer(model, 1e-3, 0.9, 0.01)
    root = tmp_path / "checkpoints"
    for step in (10, 20):
        train_steps(model, optimizer, 2)
        save_checkpoint(root, step, model, optimizer, acc, {"digest": "d1", "total_steps": 30}, keep=3)
    return acc, model, optimizer, root


def test_checkpoint_restores_model_optimizer_and_rng(saved) -> None:
    acc, model, optimizer, root = saved
    rng_then = torch.get_rng_state()
    path, state = find_resume_checkpoint(root, "d1")
    assert path.name == "step-000020" and state["step"] == 20 and state["total_steps"] == 30
    fresh = tiny_model(1)
    fresh_opt = make_optimizer(fresh, 1e-3, 0.9, 0.01)
    torch.manual_seed(123)
    load_checkpoint(path, fresh, fresh_opt, acc)
    assert torch.equal(torch.get_rng_state(), rng_then)
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), k
    # continuing both gives identical weights: the optimizer moments came back too
    model.eval(), fresh.eval()
    train_steps(model, optimizer, 1)
    torch.set_rng_state(rng_then)
    train_steps(fresh, fresh_opt, 1)
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)


def test_no_pickle_in_a_checkpoint(saved) -> None:
    *_, root = saved
    for path in (root / "step-000020").iterdir():
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", f"{path.name} looks like a pickle / torch.save file"


def test_truncated_checkpoint_falls_back_to_the_previous_one(saved) -> None:
    *_, root = saved
    weights = root / "step-000020" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    messages = []
    path, state = find_resume_checkpoint(root, "d1", log=messages.append)
    assert path.name == "step-000010" and state["step"] == 10
    assert verify_checkpoint(root / "step-000020") == "model.safetensors checksum differs (truncated or changed)"
    assert any("step-000020" in m and "checksum differs" in m for m in messages)


def test_half_written_and_foreign_checkpoints_are_skipped(saved) -> None:
    *_, root = saved
    (root / "step-000030.tmp").mkdir()  # killed while saving: never renamed into place
    assert find_resume_checkpoint(root, "d1")[0].name == "step-000020"
    messages = []
    assert find_resume_checkpoint(root, "other-config", log=messages.append) is None
    assert len(messages) == 2 and all("another config" in m for m in messages)
    (root / "step-000020" / "state.json").unlink()
    assert find_resume_checkpoint(root, "d1")[0].name == "step-000010"


def test_keep_limits_the_number_of_checkpoints(tmp_path: Path) -> None:
    acc = make_accelerator()
    model = tiny_model(0)
    optimizer = make_optimizer(model, 1e-3, 0.9, 0.01)
    train_steps(model, optimizer, 1)
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model, optimizer, acc, {"digest": "d"}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000003", "step-000004"]


def test_fp16_loss_scale_is_saved_and_restored(tmp_path: Path) -> None:
    """fp16 training keeps a loss scale: a resume that restarted it would skip its first steps on overflow."""
    acc = make_accelerator()
    model = tiny_model(0)
    optimizer = make_optimizer(model, 1e-3, 0.9, 0.01)
    acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)  # as Accelerate keeps it under fp16
    acc.scaler.scale(torch.ones(()))  # the scale is made on first use
    acc.scaler.update(1024.0)
    try:
        save_checkpoint(tmp_path, 5, model, optimizer, acc, {"digest": "d"}, keep=1)
        acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
        load_checkpoint(tmp_path / "step-000005", model, optimizer, acc)
        assert acc.scaler.get_scale() == 1024.0
    finally:
        acc.scaler = None
    assert not (tmp_path / "step-000005" / "scaler.json").read_text().count("tensor")  # plain JSON, no pickle


def test_fp16_on_a_cpu_is_refused() -> None:
    from pipeline.core.config import ConfigError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: fp16 is allowed")
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        make_accelerator(precision="fp16")


@pytest.mark.parametrize("fast", [False, True])
def test_bf16_on_a_cpu_without_bf16_instructions_warns(monkeypatch, fast: bool) -> None:
    import warnings

    from accelerate.state import AcceleratorState

    import pipeline.core.accel

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    monkeypatch.setattr(pipeline.core.accel, "cpu_has_fast_bf16", lambda: fast)
    AcceleratorState._reset_state(True)  # one precision per process: the other tests' Accelerators are fp32
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert make_accelerator(precision="bf16").mixed_precision == "bf16"  # a warning, not a refusal
    finally:
        AcceleratorState._reset_state(True)
    said = [str(w.message) for w in caught if "without bf16 instructions" in str(w.message)]
    assert len(said) == (0 if fast else 1)
    assert fast or "--model.precision=fp32 is faster here" in said[0]
