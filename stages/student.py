"""Stage `student`: the multitask student (see student/train.py). Resumes from its last intact checkpoint."""

from __future__ import annotations

from pipeline.config import RunConfig, model_subset, to_dict, without_defaults
from pipeline.dag import Context
from pipeline.predict import save_task_specs
from pipeline.tasks import get_task
from student.train import train_student

NAME = "student"
RESUMABLE = True
# The multitask options (README "Options"), newer than the runs made before them: at these values (their defaults
# when they were added) they stay out of the config subset, so those runs' student digests are unchanged (see
# `without_defaults`). A default changed since (adv_epsilon 1.0 → 0.1, adv_alpha 0.3 → 0.03 → 0.05) keeps its old value
# here, so a run made under the old default is not taken for one under the new.
OPTIONS = {
    "mixing": "mixed",
    "adversarial": "none",
    "adv_epsilon": 1.0,
    "adv_alpha": 0.3,
    "adv_steps": 3,
    "supcon_weight": 0.0,
    "supcon_temperature": 0.1,
    "pair_mode": "cross",
    "unfreeze_every": 0.0,
    "unfreeze_unit": "steps",
}


def needs(cfg: RunConfig) -> tuple[str, ...]:
    # Plain multitask training (λ fixed at 1) never reads teacher outputs.
    return ("data",) if cfg.student.fixed_lambda == 1.0 else ("data", "distill")


def config_subset(cfg: RunConfig) -> dict:
    s = cfg.student
    unused = ["eval_batch_size", "log_every", "checkpoint_every", "keep_checkpoints"]  # do not change outputs
    unused += ["adv_epsilon"] * (s.adversarial == "none") + ["adv_alpha", "adv_steps"] * (s.adversarial != "pgd")
    unused += ["supcon_temperature"] * (s.supcon_weight == 0) + ["unfreeze_unit"] * (s.unfreeze_every == 0)
    student = without_defaults({k: v for k, v in to_dict(s).items() if k not in unused}, OPTIONS)
    return {"student": student, "model": model_subset(cfg), "tasks": list(cfg.data.tasks)}


def makes(cfg: RunConfig) -> list[str]:
    return ["student"]


def run(ctx: Context) -> dict:
    result = train_student(ctx)
    if ctx.accelerator.is_main_process:  # the saved model then maps its outputs back to label names on its own
        save_task_specs(ctx.run_dir / "student" / "model", [get_task(name) for name in ctx.cfg.data.tasks])
    return result
