"""Stage `evaluate`: dev metrics of every teacher and of the student side by side, the averages and the student's
gain. No model runs again: the student's are those its loop measured on the weights it saved (`student/summary.json`,
on the dev sets as it tokenised them), each teacher's its own (`teachers/<task>/metrics.json`)."""

from __future__ import annotations

from statistics import mean

from pipeline.core.config import RunConfig
from pipeline.core.context import Context
from pipeline.core.errors import StoreError
from pipeline.core.metrics import main_score
from pipeline.core.store import read_json, write_json
from pipeline.core.tasks import read_task_specs

NAME = "evaluate"


def needs(cfg: RunConfig) -> tuple[str, ...]:
    return ("data", "teachers", "student")


def config_subset(cfg: RunConfig) -> dict:
    return {}  # it reads what the stages before it measured


def makes(cfg: RunConfig) -> list[str]:
    return ["metrics.json"]


def run(ctx: Context) -> dict:
    tasks = read_task_specs(ctx.run_dir, ctx.cfg.data.tasks)
    summary_path = ctx.run_dir / "student" / "summary.json"
    dev = read_json(summary_path)["dev"]
    missing = [f"{t.name}/{s}" for t in tasks for s in t.dev_splits if s not in dev.get(t.name, {})]
    if missing:
        raise StoreError(f"{summary_path}: no student dev metrics for {', '.join(missing)} (data.tasks); rerun student")
    per_task = {}
    for task in tasks:
        teacher = read_json(ctx.run_dir / "teachers" / task.name / "metrics.json")
        student = {split: dev[task.name][split] for split in task.dev_splits}
        t_score = main_score(task, teacher["dev"][task.dev_splits[0]])
        s_score = main_score(task, student[task.dev_splits[0]])
        ctx.accelerator.print(
            f"[evaluate] {task.name}: {task.main_metric} student {s_score:.1f}, teacher {t_score:.1f}"
        )
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
    if ctx.accelerator.is_main_process:
        write_json(ctx.run_dir / "metrics.json", summary)
    return {"average": summary["average"]}
