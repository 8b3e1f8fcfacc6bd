"""Stage `teachers`: one single-task teacher per task (teachers/train.py). A finished teacher is kept when the stage
reruns and its own task's inputs are unchanged (its data, the teacher and model settings, the run-folder format):
after a crash in a later teacher, and when tasks are added to or removed from `data.tasks`. An interrupted one
resumes from its checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.core.config import RunConfig, model_subset, to_dict
from pipeline.core.context import Context
from pipeline.core.predict import save_task_specs
from pipeline.core.store import (
    FORMAT_VERSION,
    digest,
    done_intact,
    model_folder_digest,
    read_json,
    read_manifest,
    write_done,
)
from pipeline.core.tasks import read_task_specs
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
    if cfg.teachers.select == "last":  # then evaluating during training changes no weights
        for key in ("eval_every", "select"):
            teachers.pop(key)
    if cfg.teachers.layers == "all":  # the pretrained model as it is
        teachers.pop("layers")
    # each task's own settings where they differ from the section's (a value equal to the section's changes nothing)
    per_task = {}
    for task, own in sorted(cfg.teachers.per_task.items()):
        if differs := {k: v for k, v in own.given().items() if v != teachers[k]}:
            per_task[task] = differs
    teachers["per_task"] = per_task
    return {"teachers": teachers, "model": model_subset(cfg.model), "tasks": list(cfg.data.tasks)}


def sources(cfg: RunConfig) -> dict[str, str]:
    """The teachers.init_from model by content (not its model card, which a report rewrites): another model there
    makes the teachers, and what follows, stale."""
    if cfg.teachers.init_from is None:
        return {}
    return {"teachers.init_from": model_folder_digest(Path(cfg.teachers.init_from))}


def makes(cfg: RunConfig) -> list[str]:
    return [f"teachers/{t}" for t in cfg.data.tasks]


def task_digest(cfg: RunConfig, run_dir: Path, task: str) -> str:
    """What one teacher depends on: the stage's settings without the task list, the task's own tokenised files and
    the data stage's shared ones (as its manifest records them), its declaration, the init_from model and the
    run-folder format. Other tasks, and their own teacher settings, do not count."""
    subset = config_subset(_for_task(cfg, task))
    del subset["tasks"]
    files = read_manifest(run_dir, "data")["files"]
    own = {rel: sha for rel, sha in files.items() if _belongs(rel, task, cfg.data.tasks)}
    custom = cfg.data.custom_tasks.get(task)
    return digest(
        {
            "config": subset,
            "task": task,
            "custom": to_dict(custom) if custom is not None else None,
            "data": digest(own),
            **sources(cfg),
            "format_version": FORMAT_VERSION,
        }
    )


def _for_task(cfg: RunConfig, task: str) -> RunConfig:
    return dataclasses.replace(cfg, teachers=cfg.teachers.for_task(task))


def _belongs(rel: str, task: str, tasks: tuple[str, ...]) -> bool:
    """Whether a data-stage file counts for `task`'s teacher: its own tokenised splits and what all tasks share
    (e.g. a generated tiny model), not the other tasks' splits, the generated TSVs, the size table or the task specs
    (the task's own spec counts through its declaration)."""
    parts = rel.split("/")
    if rel in ("data/sizes.json", "data/tasks.json") or (len(parts) > 2 and parts[1] == "synthetic-glue"):
        return False
    return not (len(parts) > 2 and parts[1] in tasks and parts[1] != task)


def run(ctx: Context) -> dict:
    scores, acc = {}, ctx.accelerator
    for task in read_task_specs(ctx.run_dir, ctx.cfg.data.tasks):
        out_dir = ctx.run_dir / "teachers" / task.name
        done = out_dir / "done.json"
        own = task_digest(ctx.cfg, ctx.run_dir, task.name)
        if done_intact(done, (own,), out_dir) and "metrics.json" in read_json(done)["files"]:
            acc.print(f"[teachers] {task.name}: already trained for this config, kept")
        else:
            train_teacher(_for_task(ctx.cfg, task.name), task, ctx.run_dir, out_dir, acc, resume_key=own)
            if acc.is_main_process:
                save_task_specs(out_dir / "model", [task])  # the model then predicts label names alone
                # the model and its dev scores: an edited or deleted metrics.json retrains this teacher alone
                write_done(done, own, out_dir, [*sorted((out_dir / "model").iterdir()), out_dir / "metrics.json"])
            acc.wait_for_everyone()
        scores[task.name] = read_json(out_dir / "metrics.json")["score"]
    return {"score": scores}
