"""Stage `student`: the multitask student (see student/train.py). Resumes from its last intact checkpoint."""

from __future__ import annotations

from pipeline.core.config import RunConfig, model_subset, to_dict
from pipeline.core.context import Context
from pipeline.core.predict import save_task_specs
from pipeline.core.tasks import read_task_specs
from student.train import train_student

NAME = "student"
RESUMABLE = True


def needs(cfg: RunConfig) -> tuple[str, ...]:
    # Plain multitask training (λ fixed at 1) never reads teacher outputs.
    return ("data",) if cfg.student.fixed_lambda == 1.0 else ("data", "distill")


def config_subset(cfg: RunConfig) -> dict:
    s = cfg.student
    unused = ["eval_batch_size", "log_every", "checkpoint_every", "keep_checkpoints"]  # do not change outputs
    unused += ["adv_epsilon"] * (s.adversarial == "none") + ["adv_alpha", "adv_steps"] * (s.adversarial != "pgd")
    unused += ["supcon_temperature"] * (s.supcon_weight == 0) + ["unfreeze_unit"] * (s.unfreeze_every == 0)
    unused += ["eval_every", "select"] * (s.select == "last")  # evaluating during training changes no weights
    unused += ["model"] * (s.model is None) + ["layers"] * (s.layers == "all")  # the born-again student
    weights = {t: w for t, w in s.task_weights.items() if w != 1.0}  # a weight of 1 is no weight
    unused += ["task_weights"] * (not weights)  # added later: runs made before it keep their digests
    student = {k: v for k, v in to_dict(s).items() if k not in unused}
    if weights:
        student["task_weights"] = weights
    return {"student": student, "model": model_subset(cfg.model), "tasks": list(cfg.data.tasks)}


def makes(cfg: RunConfig) -> list[str]:
    return ["student"]


def run(ctx: Context) -> dict:
    tasks, out_dir = read_task_specs(ctx.run_dir, ctx.cfg.data.tasks), ctx.run_dir / "student"
    result = train_student(ctx.cfg, tasks, ctx.run_dir, out_dir, ctx.accelerator, resume_key=ctx.digest)
    if ctx.accelerator.is_main_process:  # the saved model then maps its outputs back to label names on its own
        save_task_specs(out_dir / "model", tasks)
    return result
