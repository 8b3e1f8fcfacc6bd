"""Stage `teachers`: one single-task teacher per task. A finished teacher is kept when the stage reruns and its own
task's inputs are unchanged (its data, the teacher and model settings, the code version): after a crash in a later
teacher, and when tasks are added to or removed from `data.tasks`. An interrupted one resumes from its checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pipeline
from pipeline.config import RunConfig, model_subset, to_dict
from pipeline.dag import Context
from pipeline.predict import save_task_specs
from pipeline.store import digest, done_intact, read_json, read_manifest, source_sha256, write_done
from pipeline.tasks import get_task
from teachers.train import train_teacher

NAME = "teachers"
RESUMABLE = True


def needs(cfg: RunConfig) -> tuple[str, ...]:
    return ("data",)


def config_subset(cfg: RunConfig) -> dict:
    teachers = to_dict(cfg.teachers)
    # settings that do not change the outputs; init_from counts by its files' content (`sources`), not its path
    for key in ("eval_batch_size", "checkpoint_every", "keep_checkpoints", "init_from"):
        teachers.pop(key)
    # each task's own settings where they differ from the section's (none: left out, as before per-task settings
    # existed, so older teachers stay done; a value equal to the section's changes nothing)
    teachers.pop("per_task")
    per_task = {}
    for task, own in sorted(cfg.teachers.per_task.items()):
        if differs := {k: v for k, v in own.given().items() if v != teachers[k]}:
            per_task[task] = differs
    if per_task:
        teachers["per_task"] = per_task
    return {"teachers": teachers, "model": model_subset(cfg), "tasks": list(cfg.data.tasks)}


def sources(cfg: RunConfig) -> dict[str, str]:
    """The teachers.init_from model by content (not its model card, which a report rewrites): another model there
    makes the teachers, and what follows, stale."""
    if cfg.teachers.init_from is None:
        return {}
    folder = Path(cfg.teachers.init_from)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "README.md") if folder.is_dir() else []
    return {"teachers.init_from": digest({p.relative_to(folder).as_posix(): source_sha256(p) for p in files})}


def makes(cfg: RunConfig) -> list[str]:
    return [f"teachers/{t}" for t in cfg.data.tasks]


def task_digest(ctx: Context, task: str) -> str:
    """What one teacher depends on: the stage's settings without the task list, the task's own tokenised files and
    the data stage's shared ones (as its manifest records them), its declaration, the init_from model and the code
    version. Other tasks, and their own teacher settings, do not count."""
    subset = config_subset(_for_task(ctx.cfg, task))
    del subset["tasks"]
    files = read_manifest(ctx.run_dir, "data")["files"]
    own = {rel: sha for rel, sha in files.items() if _belongs(rel, task, ctx.cfg.data.tasks)}
    custom = ctx.cfg.data.custom_tasks.get(task)
    return digest(
        {
            "config": subset,
            "task": task,
            "custom": to_dict(custom) if custom is not None else None,
            "data": digest(own),
            **sources(ctx.cfg),
            "version": pipeline.__version__,
        }
    )


def _for_task(cfg: RunConfig, task: str) -> RunConfig:
    return dataclasses.replace(cfg, teachers=cfg.teachers.for_task(task))


def _belongs(rel: str, task: str, tasks: tuple[str, ...]) -> bool:
    """Whether a data-stage file counts for `task`'s teacher: its own tokenised splits and what all tasks share
    (e.g. a generated tiny model), not the other tasks' splits, the generated TSVs or the size table."""
    parts = rel.split("/")
    if rel == "data/sizes.json" or (len(parts) > 2 and parts[1] == "synthetic-glue"):
        return False
    return not (len(parts) > 2 and parts[1] in tasks and parts[1] != task)


def run(ctx: Context) -> dict:
    scores = {}
    for task in ctx.cfg.data.tasks:
        out_dir = ctx.run_dir / "teachers" / task
        done = out_dir / "done.json"
        own = task_digest(ctx, task)
        if done_intact(done, (own, ctx.digest), out_dir):  # ctx.digest: a teacher made before per-task digests
            ctx.accelerator.print(f"[teachers] {task}: already trained for this config, kept")
        else:
            own_ctx = dataclasses.replace(ctx, cfg=_for_task(ctx.cfg, task), digest=own)  # checkpoints carry `own`
            train_teacher(own_ctx, task, out_dir)
            if ctx.accelerator.is_main_process:
                save_task_specs(out_dir / "model", [get_task(task)])  # the model then predicts label names alone
                write_done(done, own, out_dir, sorted((out_dir / "model").iterdir()))
            ctx.accelerator.wait_for_everyone()
        scores[task] = read_json(out_dir / "metrics.json")["score"]
    return {"score": scores}
