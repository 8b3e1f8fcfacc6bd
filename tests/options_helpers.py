"""Shared by the test_options_* files: a tiny multitask model, a batch for it, and its multitask loss."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertModel

from pipeline.core.config import ModelConfig
from pipeline.core.loss import multitask_loss
from pipeline.core.model import MultiTaskModel, head_spec
from pipeline.core.tasks import get_glue_task
from pipeline.core.training import model_inputs


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
