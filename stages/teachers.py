"""Stage `teachers`: one single-task teacher per task. A teacher that finished is kept when the stage reruns
for the same digest (e.g. after a crash in a later teacher); an interrupted one resumes from its checkpoint."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import RunConfig, to_dict
from pipeline.dag import Context
from pipeline.predict import save_task_specs
from pipeline.store import file_sha256, read_json, write_json
from pipeline.tasks import get_task
from teachers.train import train_teacher

NAME = "teachers"
RESUMABLE = True


def needs(cfg: RunConfig) -> tuple[str, ...]:
    return ("data",)


def config_subset(cfg: RunConfig) -> dict:
    teachers = to_dict(cfg.teachers)
    for key in ("eval_batch_size", "checkpoint_every", "keep_checkpoints"):  # do not change the outputs
        teachers.pop(key)
    return {"teachers": teachers, "model": to_dict(cfg.model), "tasks": list(cfg.data.tasks)}


def makes(cfg: RunConfig) -> list[str]:
    return [f"teachers/{t}" for t in cfg.data.tasks]


def _intact(done: Path, digest: str, out_dir: Path) -> bool:
    """A finished teacher is kept only if it was made for this digest and its model files are unchanged."""
    if not done.is_file():
        return False
    record = read_json(done)
    files = record.get("files", {})
    return (
        record.get("digest") == digest
        and bool(files)
        and all((out_dir / rel).is_file() and file_sha256(out_dir / rel) == sha for rel, sha in files.items())
    )


def run(ctx: Context) -> dict:
    scores = {}
    for task in ctx.cfg.data.tasks:
        out_dir = ctx.run_dir / "teachers" / task
        done = out_dir / "done.json"
        if _intact(done, ctx.digest, out_dir):
            ctx.accelerator.print(f"[teachers] {task}: already trained for this config, kept")
        else:
            train_teacher(ctx, task, out_dir)
            if ctx.accelerator.is_main_process:
                save_task_specs(out_dir / "model", [get_task(task)])  # the model then predicts label names alone
                files = {
                    p.relative_to(out_dir).as_posix(): file_sha256(p) for p in sorted((out_dir / "model").iterdir())
                }
                write_json(done, {"digest": ctx.digest, "files": files})
            ctx.accelerator.wait_for_everyone()
        scores[task] = read_json(out_dir / "metrics.json")["score"]
    return {"score": scores}
