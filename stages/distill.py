"""Stage `distill`: cache every teacher's outputs on its training and dev sets (the soft-target store); with
`distill.teachers`, the mean of this run's teacher and the other runs' teachers of the task (an ensemble).

A task's soft targets are kept when the stage reruns and neither its teacher's files nor its tokenised data
changed (`done.json` in its folder), e.g. when another task was added to `data.tasks`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipeline.core.config import RunConfig
from pipeline.core.context import Context
from pipeline.core.model import load_tokenizer, resolve_model_path
from pipeline.core.store import (
    FORMAT_VERSION,
    digest,
    done_intact,
    model_folder_digest,
    read_json,
    read_manifest,
    replace_folder,
    write_done,
)
from pipeline.core.tasks import read_task_specs
from teachers.distill import distill_task

NAME = "distill"
RESUMABLE = True


def needs(cfg: RunConfig) -> tuple[str, ...]:
    return ("data", "teachers")


def config_subset(cfg: RunConfig) -> dict:
    return {"precision": cfg.model.precision}  # the teachers' forward passes


def sources(cfg: RunConfig) -> dict[str, str]:
    """The other members of a teacher ensemble (distill.teachers) by content, in their order (not by folder: a
    moved copy is the same member): another model there makes the soft targets, and what follows, stale."""
    if not cfg.distill.teachers:
        return {}
    folders = {f"{i}:{task}": _folder_digest(Path(run) / "teachers" / task / "model")
               for i, run in enumerate(cfg.distill.teachers) for task in cfg.data.tasks}  # fmt: skip
    return {"distill.teachers": digest(folders)}


def makes(cfg: RunConfig) -> list[str]:
    return [f"distill/{t}" for t in cfg.data.tasks]


def task_digest(cfg: RunConfig, run_dir: Path, task: str) -> str:
    """What one task's soft targets depend on: its teacher's model files and its tokenised data (as the input stages'
    manifests record them), the precision and the run-folder format; not the teacher's log or done record, which
    change (a resumed log, a record written anew when the teacher is adopted by another run) while the teacher stays
    the same."""
    own = {}
    for stage, prefix in (("teachers", f"teachers/{task}/model/"), ("data", f"data/{task}/")):
        files = read_manifest(run_dir, stage)["files"]
        own[stage] = digest({rel: sha for rel, sha in files.items() if rel.startswith(prefix)})
    if cfg.distill.teachers:  # the other members by content, as they are now
        own["members"] = [_folder_digest(path) for path in members(cfg, run_dir, task)[1:]]
    return digest({**own, "config": config_subset(cfg), "task": task, "format_version": FORMAT_VERSION})


def members(cfg: RunConfig, run_dir: Path, task: str) -> list[Path]:
    """The teacher model folders of `task` whose outputs the soft targets are: this run's, then distill.teachers'."""
    return [Path(run) / "teachers" / task / "model" for run in (run_dir, *cfg.distill.teachers)]


def _folder_digest(folder: Path) -> str:
    """A member's model folder by content (`model_folder_digest`); a missing one is "missing"."""
    return model_folder_digest(folder) if folder.is_dir() else "missing"


def run(ctx: Context) -> dict:
    acc, rows, remote = ctx.accelerator, {}, ctx.cfg.model.trust_remote_code
    vocabulary = None  # an ensemble's: the run's tokenizer's; a member of another reads the examples with its own
    if ctx.cfg.distill.teachers:
        vocabulary = load_tokenizer(resolve_model_path(ctx.cfg.model, ctx.run_dir), remote).get_vocab()
    for task in read_task_specs(ctx.run_dir, ctx.cfg.data.tasks):
        out_dir, own = ctx.run_dir / "distill" / task.name, task_digest(ctx.cfg, ctx.run_dir, task.name)
        if done_intact(out_dir / "done.json", (own,), out_dir):
            acc.print(f"[distill] {task.name}: soft targets made by this teacher from this data, kept")
            rows[task.name] = read_json(out_dir / "done.json")["rows"]
            continue
        # written beside, then swapped in: a failure leaves the previous soft targets as they were
        partial = out_dir.with_name(task.name + ".partial")
        if acc.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        acc.wait_for_everyone()
        teachers, batch_size = members(ctx.cfg, ctx.run_dir, task.name), ctx.cfg.teachers.eval_batch_size
        named = [os.path.relpath(p, ctx.run_dir) for p in teachers] if len(teachers) > 1 else None
        rows[task.name] = distill_task(
            task, teachers, ctx.run_dir, partial, acc, batch_size, vocabulary, named, remote, ctx.cfg.data.max_length
        )
        if acc.is_main_process:
            files = [p for p in sorted(partial.iterdir()) if p.is_file()]
            write_done(partial / "done.json", own, partial, files, rows=rows[task.name])
            replace_folder(partial, out_dir)
        acc.wait_for_everyone()
    return {"rows": rows}
