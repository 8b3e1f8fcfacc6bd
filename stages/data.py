"""Stage `data`: read every task's splits (GLUE TSV folder, the Hub, or generated), cap, tokenise, store."""

from __future__ import annotations

import numpy as np

from pipeline.config import RunConfig, to_dict
from pipeline.dag import Context
from pipeline.data import save_split, split_dir, tokenize_split
from pipeline.glue import read_split
from pipeline.model import build_tiny_random, load_tokenizer, resolve_model_path
from pipeline.store import write_json
from pipeline.synthetic import write_synthetic_glue
from pipeline.tasks import get_task

NAME = "data"


def needs(cfg: RunConfig) -> tuple[str, ...]:
    return ()


def config_subset(cfg: RunConfig) -> dict:
    m = cfg.model
    tokenizer = {"name_or_path": m.name_or_path, "trust_remote_code": m.trust_remote_code}
    if m.name_or_path == "tiny-random":
        tokenizer |= {"tiny": [m.tiny_hidden_size, m.tiny_layers, m.tiny_heads]}
    return {"data": to_dict(cfg.data), "model": tokenizer}


def makes(cfg: RunConfig) -> list[str]:
    return ["data"]


def run(ctx: Context) -> dict:
    cfg, acc = ctx.cfg, ctx.accelerator
    if not acc.is_main_process:  # one process reads and tokenises; the others wait for the manifest
        return {}
    tasks = [get_task(name) for name in cfg.data.tasks]
    data_dir = cfg.data.data_dir
    if cfg.data.source == "synthetic":
        data_dir = ctx.run_dir / "data" / "synthetic-glue"
        write_synthetic_glue(data_dir, seed=cfg.data.seed)
    examples = {(t.name, s): read_split(t, s, data_dir) for t in tasks for s in ("train", *t.dev_splits)}
    for t in tasks:
        cap = cfg.data.max_train_examples.get(t.name)
        rows = examples[(t.name, "train")]
        if cap is not None and cap < len(rows):
            keep = np.sort(np.random.default_rng(cfg.data.seed).choice(len(rows), size=cap, replace=False))
            examples[(t.name, "train")] = [rows[i] for i in keep]
    if cfg.model.name_or_path == "tiny-random":
        texts = [x for (_, s), exs in examples.items() if s == "train" for e in exs for x in (e.text_a, e.text_b) if x]
        build_tiny_random(ctx.run_dir / "data" / "tiny-random", texts, cfg.model, seed=cfg.data.seed)
    tokenizer = load_tokenizer(resolve_model_path(cfg.model, ctx.run_dir), cfg.model.trust_remote_code)
    sizes = {}
    for (task, split), exs in examples.items():
        tokenized = tokenize_split(exs, tokenizer, cfg.data.max_length, task, split)
        save_split(tokenized, split_dir(ctx.run_dir, task, split))
        sizes.setdefault(task, {})[split] = {"rows": len(tokenized), "tokens": int(tokenized.offsets[-1])}
        acc.print(f"[data] {task}/{split}: {len(tokenized)} examples, {int(tokenized.offsets[-1])} tokens")
    write_json(ctx.run_dir / "data" / "sizes.json", sizes)
    return {"sizes": sizes}
