"""Stage `distill`: cache every teacher's outputs on its training and dev sets (the soft-target store).

A task's soft targets are kept when the stage reruns and neither its teacher's files nor its tokenised data
changed (`done.json` in its folder), e.g. when another task was added to `data.tasks`."""

from __future__ import annotations

import shutil

import pipeline
from pipeline.config import MODEL_NEUTRAL, RunConfig, without_defaults
from pipeline.dag import Context
from pipeline.store import digest, done_intact, read_json, read_manifest, replace_folder, write_done
from teachers.distill import distill_task

NAME = "distill"
RESUMABLE = True


def needs(cfg: RunConfig) -> tuple[str, ...]:
    return ("data", "teachers")


def config_subset(cfg: RunConfig) -> dict:
    return without_defaults({"precision": cfg.model.precision}, MODEL_NEUTRAL)  # the teachers' forward passes


def makes(cfg: RunConfig) -> list[str]:
    return [f"distill/{t}" for t in cfg.data.tasks]


def task_digest(ctx: Context, task: str) -> str:
    """What one task's soft targets depend on: its teacher's model files and its tokenised data (as the input stages'
    manifests record them) and the code version; not the teacher's log or done record, which change (a resumed log,
    a record written anew when the teacher is adopted by another run) while the teacher stays the same."""
    own = {}
    for stage, prefix in (("teachers", f"teachers/{task}/model/"), ("data", f"data/{task}/")):
        files = read_manifest(ctx.run_dir, stage)["files"]
        own[stage] = digest({rel: sha for rel, sha in files.items() if rel.startswith(prefix)})
    settings = config_subset(ctx.cfg)  # empty at fp32: the digests of soft targets made before precision existed
    return digest({**own, **({"config": settings} if settings else {}), "task": task, "version": pipeline.__version__})


def run(ctx: Context) -> dict:
    acc, rows = ctx.accelerator, {}
    for task in ctx.cfg.data.tasks:
        out_dir, own = ctx.run_dir / "distill" / task, task_digest(ctx, task)
        if done_intact(out_dir / "done.json", (own,), out_dir):
            acc.print(f"[distill] {task}: soft targets made by this teacher from this data, kept")
            rows[task] = read_json(out_dir / "done.json")["rows"]
            continue
        # written beside, then swapped in: a failure leaves the previous soft targets as they were
        partial = out_dir.with_name(task + ".partial")
        if acc.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        acc.wait_for_everyone()
        rows[task] = distill_task(ctx, task, ctx.run_dir / "teachers" / task, partial)
        if acc.is_main_process:
            files = [p for p in sorted(partial.iterdir()) if p.is_file()]
            write_done(partial / "done.json", own, partial, files, rows=rows[task])
            replace_folder(partial, out_dir)
        acc.wait_for_everyone()
    return {"rows": rows}
