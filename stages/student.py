"""Stage `student`: the multitask student (see student/train.py). Resumes from its last intact checkpoint."""

from __future__ import annotations

from pipeline.config import RunConfig, StudentConfig, to_dict, without_defaults
from pipeline.dag import Context
from pipeline.predict import save_task_specs
from pipeline.tasks import get_task
from student.train import train_student

NAME = "student"
RESUMABLE = True
# The multitask options (README "Options"), newer than the runs made before them: at their defaults they stay out of
# the config subset, so those runs' student digests are unchanged (see `without_defaults`).
OPTIONS = (
    "mixing",
    "adversarial",
    "adv_epsilon",
    "adv_alpha",
    "adv_steps",
    "supcon_weight",
    "supcon_temperature",
    "pair_mode",
    "unfreeze_every",
    "unfreeze_unit",
)


def needs(cfg: RunConfig) -> tuple[str, ...]:
    # Plain multitask training (λ fixed at 1) never reads teacher outputs.
    return ("data",) if cfg.student.fixed_lambda == 1.0 else ("data", "distill")


def config_subset(cfg: RunConfig) -> dict:
    student = without_defaults(to_dict(cfg.student), StudentConfig(), OPTIONS)
    for key in ("eval_batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):  # do not change outputs
        student.pop(key)
    return {"student": student, "model": to_dict(cfg.model), "tasks": list(cfg.data.tasks)}


def makes(cfg: RunConfig) -> list[str]:
    return ["student"]


def run(ctx: Context) -> dict:
    result = train_student(ctx)
    if ctx.accelerator.is_main_process:  # the saved model then maps its outputs back to label names on its own
        save_task_specs(ctx.run_dir / "student" / "model", [get_task(name) for name in ctx.cfg.data.tasks])
    return result
