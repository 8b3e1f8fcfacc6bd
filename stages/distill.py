"""Stage `distill`: cache every teacher's outputs on its training and dev sets (the soft-target store)."""

from __future__ import annotations

from pipeline.config import RunConfig
from pipeline.dag import Context
from teachers.distill import distill_task

NAME = "distill"


def needs(cfg: RunConfig) -> tuple[str, ...]:
    return ("data", "teachers")


def config_subset(cfg: RunConfig) -> dict:
    return {}


def makes(cfg: RunConfig) -> list[str]:
    return ["distill"]


def run(ctx: Context) -> dict:
    rows = {}
    for task in ctx.cfg.data.tasks:
        teacher_dir = ctx.run_dir / "teachers" / task
        rows[task] = distill_task(ctx, task, teacher_dir, ctx.run_dir / "distill" / task)
    return {"rows": rows}
