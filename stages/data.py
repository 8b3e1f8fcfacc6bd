"""Stage `data`: every task's spec (a custom task's labels or range learnt from its training split), and its splits
(GLUE TSV folder, the Hub, generated, or a custom task's files) read, capped, tokenised by the teachers' tokenizer and
stored with their texts (a student with a tokenizer of its own retokenises them: student/data.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.config import RunConfig, to_dict
from pipeline.core.context import Context
from pipeline.core.custom import read_custom_split, resolve_task
from pipeline.core.data import save_split, split_dir, split_texts, tokenize_split
from pipeline.core.glue import Example, read_split, split_path
from pipeline.core.model import load_tokenizer, resolve_model_path
from pipeline.core.store import source_sha256, write_json
from pipeline.core.synthetic import SYNTHETIC_TASKS, write_synthetic_glue
from pipeline.core.tasks import TaskSpec, get_glue_task, write_task_specs
from pipeline.core.tiny import build_tiny_random

NAME = "data"


def needs(cfg: RunConfig) -> tuple[str, ...]:
    return ()


def config_subset(cfg: RunConfig) -> dict:
    m = cfg.model
    tokenizer = {"name_or_path": m.name_or_path, "trust_remote_code": m.trust_remote_code}
    if m.name_or_path == "tiny-random":
        tokenizer |= {"tiny": [m.tiny_hidden_size, m.tiny_layers, m.tiny_heads]}
    data = to_dict(cfg.data)
    data["custom_tasks"] = {name: data["custom_tasks"][name] for name in cfg.data.tasks if name in data["custom_tasks"]}
    return {"data": data, "model": tokenizer}


def sources(cfg: RunConfig) -> dict[str, str]:
    """The files this stage reads by content (sha256): the custom tasks' and, with `data.data_dir`, the GLUE TSV
    splits (named relative to it). Editing one makes this stage, and what follows it, stale."""
    declared = [cfg.data.custom_tasks[name] for name in cfg.data.tasks if name in cfg.data.custom_tasks]
    files = [Path(p) for task in declared if task.hub is None for p in (task.train, task.dev, task.test) if p]
    found = {str(path): source_sha256(path) if path.is_file() else "missing" for path in files}
    if cfg.data.data_dir is not None and cfg.data.source == "glue":
        root = Path(cfg.data.data_dir)
        for task in (get_glue_task(t) for t in cfg.data.tasks if t not in cfg.data.custom_tasks):
            for split in task.splits:
                path = split_path(task, split, root)
                found[f"glue:{path.relative_to(root)}"] = source_sha256(path) if path.is_file() else "missing"
    return found


def makes(cfg: RunConfig) -> list[str]:
    return ["data"]


def run(ctx: Context) -> dict:
    cfg, acc = ctx.cfg, ctx.accelerator
    if not acc.is_main_process:  # one process reads and tokenises; the others wait for the manifest
        return {}
    custom = cfg.data.custom_tasks
    tasks = [resolve_task(n, custom[n]) if n in custom else get_glue_task(n) for n in cfg.data.tasks]
    data_dir = cfg.data.data_dir
    if cfg.data.source == "synthetic":
        data_dir = ctx.run_dir / "data" / "synthetic-glue"
        vocabulary = write_synthetic_glue(data_dir, seed=cfg.data.seed)
    examples = {(t.name, s): _read(cfg, t, s, data_dir) for t in tasks for s in t.splits}
    for t in tasks:
        cap = cfg.data.max_train_examples.get(t.name)
        rows = examples[(t.name, "train")]
        if cap is not None and cap < len(rows):
            keep = np.sort(np.random.default_rng(cfg.data.seed).choice(len(rows), size=cap, replace=False))
            examples[(t.name, "train")] = [rows[i] for i in keep]
    if cfg.model.name_or_path == "tiny-random":
        # with generated data: every generated word, whichever look-alikes run (one vocabulary for any task
        # selection), plus the training texts of the other (custom) tasks
        generated = cfg.data.source == "synthetic"
        texts = (vocabulary if generated else []) + [
            x
            for (name, s), exs in examples.items()
            if s == "train" and not (generated and name in SYNTHETIC_TASKS)
            for e in exs
            for x in (e.text_a, e.text_b)
            if x
        ]
        build_tiny_random(ctx.run_dir / "data" / "tiny-random", texts, cfg.model, seed=cfg.data.seed)
    tokenizer = load_tokenizer(resolve_model_path(cfg.model, ctx.run_dir), cfg.model.trust_remote_code)
    sizes = {}
    for (task, split), exs in examples.items():
        tokenized = tokenize_split(exs, tokenizer, cfg.data.max_length, task, split)
        save_split(tokenized, split_dir(ctx.run_dir, task, split), split_texts(exs))
        sizes.setdefault(task, {})[split] = {"rows": len(tokenized), "tokens": int(tokenized.offsets[-1])}
        acc.print(f"[data] {task}/{split}: {len(tokenized)} examples, {int(tokenized.offsets[-1])} tokens")
    write_json(ctx.run_dir / "data" / "sizes.json", sizes)
    write_task_specs(ctx.run_dir, tasks)  # what every later stage, predict and reproduce-glue know the tasks by
    return {"sizes": sizes}


def _read(cfg: RunConfig, task: TaskSpec, split: str, data_dir: Path | str | None) -> list[Example]:
    """A custom task's split from its declaration, a GLUE task's from `data_dir` (or the Hub)."""
    if task.name in cfg.data.custom_tasks:
        return read_custom_split(task, cfg.data.custom_tasks[task.name], split)
    return read_split(task, split, data_dir)
