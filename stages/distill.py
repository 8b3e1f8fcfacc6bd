"""Stage `distill`: cache every teacher's outputs on its training and dev sets (the soft-target store).

A task's soft targets are kept when the stage reruns and neither its teacher's files nor its tokenised data
changed (`done.json` in its folder), e.g. when another task was added to `data.tasks`."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.core.config import RunConfig
from pipeline.core.context import Context
from pipeline.core.store import (
    FORMAT_VERSION,
    digest,
    done_intact,
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
    return digest({**own, "config": config_subset(cfg), "task": task, "format_version": FORMAT_VERSION})


def run(ctx: Context) -> dict:
    acc, rows = ctx.accelerator, {}
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
        teacher = ctx.run_dir / "teachers" / task.name / "model"
        batch_size = ctx.cfg.teachers.eval_batch_size
        rows[task.name] = distill_task(task, teacher, ctx.run_dir, partial, acc, batch_size)
        if acc.is_main_process:
            files = [p for p in sorted(partial.iterdir()) if p.is_file()]
            write_done(partial / "done.json", own, partial, files, rows=rows[task.name])
            replace_folder(partial, out_dir)
        acc.wait_for_everyone()
    return {"rows": rows}
