"""Stage `evaluate`: dev metrics of every teacher and of the student, the averages and the student's gain."""

from __future__ import annotations

from statistics import mean

from pipeline.core.config import RunConfig
from pipeline.core.context import Context
from pipeline.core.data import load_split, split_dir
from pipeline.core.metrics import main_score
from pipeline.core.model import load_model
from pipeline.core.store import read_json, write_json
from pipeline.core.tasks import read_task_specs
from pipeline.core.training import evaluate

NAME = "evaluate"


def needs(cfg: RunConfig) -> tuple[str, ...]:
    return ("data", "teachers", "student")


def config_subset(cfg: RunConfig) -> dict:
    return {"precision": cfg.model.precision}  # the forward passes it scores


def makes(cfg: RunConfig) -> list[str]:
    return ["metrics.json"]


def run(ctx: Context) -> dict:
    acc = ctx.accelerator
    tasks = read_task_specs(ctx.run_dir, ctx.cfg.data.tasks)
    model = load_model(ctx.run_dir / "student" / "model").to(acc.device)
    if model.task_names != [t.name for t in tasks]:
        raise RuntimeError(f"student heads {model.task_names} do not match data.tasks {[t.name for t in tasks]}")
    # the dev splits as the student read them: its own tokenizer's (student/data/, with student.model) or the data's
    tokens = (
        ctx.run_dir / "student" if split_dir(ctx.run_dir / "student", tasks[0].name, "train").is_dir() else ctx.run_dir
    )
    per_task = {}
    for i, task in enumerate(tasks):
        teacher = read_json(ctx.run_dir / "teachers" / task.name / "metrics.json")
        student = {}
        for split in task.dev_splits:
            data = load_split(tokens, task.name, split)
            batch_size = ctx.cfg.student.eval_batch_size
            student[split] = evaluate(model, data, i, tasks, acc, batch_size, desc=f"evaluate {task.name}/{split}")
        t_score = main_score(task, teacher["dev"][task.dev_splits[0]])
        s_score = main_score(task, student[task.dev_splits[0]])
        acc.print(f"[evaluate] {task.name}: {task.main_metric} student {s_score:.1f}, teacher {t_score:.1f}")
        per_task[task.name] = {
            "metric": task.main_metric,
            "teacher": teacher["dev"],
            "student": student,
            "teacher_score": t_score,
            "student_score": s_score,
            "gain": s_score - t_score,
        }
    summary = {
        "tasks": per_task,
        "average": {
            "teacher": mean(v["teacher_score"] for v in per_task.values()),
            "student": mean(v["student_score"] for v in per_task.values()),
        },
    }
    summary["average"]["gain"] = summary["average"]["student"] - summary["average"]["teacher"]
    if acc.is_main_process:
        write_json(ctx.run_dir / "metrics.json", summary)
    return {"average": summary["average"]}
