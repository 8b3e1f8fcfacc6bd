"""Stage `report`: `report.md` (teachers vs the student per task), its plots, and the student's model card.

The card goes into the student's model folder (`student/model/README.md`) but belongs to this stage: it needs the
teachers' and the student's dev scores, which exist only after `evaluate`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.core.card import card_data, hub_base_model, portable, render_card
from pipeline.core.config import OPTIONS, RunConfig, StudentConfig, to_dict
from pipeline.core.context import Context
from pipeline.core.plots import plot_scores, plot_training_curves
from pipeline.core.store import read_json, write_text
from pipeline.core.tasks import TaskSpec, read_task_specs

NAME = "report"
CARD = "student/model/README.md"


def needs(cfg: RunConfig) -> tuple[str, ...]:
    return ("student", "evaluate")


def config_subset(cfg: RunConfig) -> dict:
    return {"name": cfg.name}


def makes(cfg: RunConfig) -> list[str]:
    return ["report.md", "plots", CARD]


# A tiny random model or generated data: the run exercises the code, and its scores say nothing about the method.
SMOKE_NOTE = [
    "**This run exercises the code, not the method**: a tiny random BERT and/or a small generated data set, trained",
    "for seconds. Its scores (near chance on some tasks, the student under its teachers) say nothing about BAM; the",
    "method's numbers come from real data and a pretrained model (docs/reproducing.md).",
    "",
]


# `select: best` (teachers or student): the dev set chose the weights it then scores.
SELECT_NOTE = [
    "**Weights chosen on dev** (`select: best`): each model kept is the one of its best dev evaluation, so these dev",
    "scores are optimistic; compare them only with runs that chose the same way (the step kept: `selected_step` in",
    "`student/summary.json` and each teacher's `metrics.json`).",
    "",
]


def render(metrics: dict, cfg: RunConfig) -> str:
    lines = [
        f"# BAM! run `{cfg.name}`",
        "",
        "Dev-set scores (0–100). Score = the paper's metric per task: MCC for CoLA, Spearman for STS-B, accuracy",
        "otherwise; every metric is listed beside it.",
        "",
        *SMOKE_NOTE * (cfg.data.source == "synthetic" or cfg.model.name_or_path == "tiny-random"),
        *SELECT_NOTE * ("best" in (cfg.student.select, cfg.teachers.select)),
        "![dev scores of the teachers and the student](plots/scores.png)",
        "",
        "| task | metric | teacher (Single) | student | gain | all teacher metrics | all student metrics |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for name in cfg.data.tasks:
        t = metrics["tasks"][name]
        teach = "; ".join(f"{s}: " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()) for s, m in t["teacher"].items())
        stud = "; ".join(f"{s}: " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()) for s, m in t["student"].items())
        lines.append(
            f"| {name} | {t['metric']} | {t['teacher_score']:.1f} | {t['student_score']:.1f} | "
            f"{t['gain']:+.1f} | {teach} | {stud} |"
        )
    avg = metrics["average"]
    lines.append(
        f"| **average** | | **{avg['teacher']:.1f}** | **{avg['student']:.1f}** | **{avg['gain']:+.1f}** | | |"
    )
    s = cfg.student
    lam = "annealed 0→1" if s.fixed_lambda is None else f"fixed {s.fixed_lambda}"
    sampling = "all shuffled together" if s.shuffle_all else f"p ∝ |D|^{s.alpha}"
    defaults = to_dict(StudentConfig())
    options = "".join(f"; {k} {v}" for k, v in to_dict(s).items() if k in OPTIONS and v != defaults[k])
    lines += [
        "",
        f"Student: λ {lam}; task sampling {sampling}; layer decay {s.layer_decay}; lr {s.lr}; "
        f"batch {s.batch_size}; {s.epochs} epochs{options}. Model: `{s.model or cfg.model.name_or_path}`.",
        "",
    ]
    if cfg.distill.teachers:
        lines += [
            f"Soft targets: the mean of this run's teachers and those of {len(cfg.distill.teachers)} other run(s) "
            "(`distill.teachers`, named in each `distill/<task>/<split>.record.json`); the teacher column above is "
            "this run's own.",
            "",
        ]
    lines += [
        "Student training: loss per task, learning rate and λ over the training examples seen (`student/log.jsonl`).",
        "",
        "![student training curves](plots/training.png)",
        "",
        f"The student's model card: `{CARD}`.",
        "",
    ]
    lines += ["```yaml", *_yaml_lines(to_dict(cfg)), "```", ""]
    return "\n".join(lines)


def render_student_card(
    metrics: dict, cfg: RunConfig, tasks: list[TaskSpec], model_dir: Path, run_dir: Path, command: str
) -> str:
    """The student's model card: its tasks, its dev scores beside its teachers' (the model-index has the student's),
    its config and command."""
    s = cfg.student
    if s.fixed_lambda is None:
        how = (
            "with teacher annealing: the target of each example moves from its teacher's prediction to the gold "
            "label as λ rises from 0 to 1 over training"
        )
    elif s.fixed_lambda == 1.0:
        how = "on the gold labels alone (λ fixed at 1: plain multitask learning, no teacher)"
    else:
        how = f"with λ fixed at {s.fixed_lambda} (target = λ·gold label + (1 − λ)·teacher prediction)"
    origin = cfg.model.name_or_path if s.model is None else s.model
    named = s.layers if isinstance(s.layers, str) else ", ".join(map(str, s.layers))
    kept = "" if s.layers == "all" else f" (keeping its layers {named}: {_depth(model_dir)} in all)"
    ensemble = " (their predictions averaged with other runs' teachers: distill.teachers)" * bool(cfg.distill.teachers)
    about = (
        "A multitask model from born-again multitask distillation (BAM!, Clark et al., 2019): one single-task "
        f"teacher was fine-tuned per task{ensemble}, then this student, initialised from "
        f"`{portable(origin, run_dir)}`{kept}, learnt every task at once, {how}. The teachers are in "
        "`RUN/teachers/<task>/model/` of the same run folder `RUN`."
    )
    scores = [
        "Score = the task's dev metric (0–100); every metric of the student is listed beside it.",
        "",
        "| task | metric | teacher (Single) | student | gain | all student metrics |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name in cfg.data.tasks:
        t = metrics["tasks"][name]
        every = "; ".join(f"{sp}: " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()) for sp, m in t["student"].items())
        scores.append(
            f"| {name} | {t['metric']} | {t['teacher_score']:.1f} | {t['student_score']:.1f} | {t['gain']:+.1f} | "
            f"{every} |"
        )
    avg = metrics["average"]
    scores.append(f"| **average** | | **{avg['teacher']:.1f}** | **{avg['student']:.1f}** | **{avg['gain']:+.1f}** | |")
    config = {"student": to_dict(s), "model": to_dict(cfg.model), "data": {"tasks": list(cfg.data.tasks)}}
    results = {name: metrics["tasks"][name]["student"] for name in cfg.data.tasks}
    data = card_data(cfg.data, tasks, f"bam-{cfg.name}-student", results, hub_base_model(origin))
    return render_card(f"BAM! student: {cfg.name}", about, model_dir, run_dir, tasks, scores, config, command, data)


def _depth(model_dir: Path) -> int | str:
    """The saved student's layer count, from its config.json."""
    return read_json(model_dir / "config.json").get("num_hidden_layers", "?")


def score_table(metrics: dict, cfg: RunConfig) -> dict[str, dict[str, float]]:
    """Teachers' and student's main dev score per task (config order) and their averages, for `plot_scores`."""
    table = {}
    for who, key in (("teachers (Single)", "teacher"), ("student", "student")):
        table[who] = {name: metrics["tasks"][name][f"{key}_score"] for name in cfg.data.tasks}
        table[who]["avg"] = metrics["average"][key]
    return table


def _yaml_lines(d: dict) -> list[str]:
    return yaml.safe_dump(d, sort_keys=False).rstrip().splitlines()


def run(ctx: Context) -> dict:
    if not ctx.accelerator.is_main_process:
        return {}
    cfg, run_dir = ctx.cfg, ctx.run_dir
    metrics = read_json(run_dir / "metrics.json")
    title, ylabel = f"{cfg.name}: dev scores per task", "dev score (the task's metric, 0–100)"
    plot_scores(score_table(metrics, cfg), run_dir / "plots" / "scores.png", title, ylabel)
    plot_training_curves({"student": run_dir / "student" / "log.jsonl"}, run_dir / "plots" / "training.png")
    command = read_json(run_dir / "student" / "summary.json").get("command", "(not recorded)")
    tasks = read_task_specs(run_dir, cfg.data.tasks)
    card = render_student_card(metrics, cfg, tasks, run_dir / "student" / "model", run_dir, command)
    write_text(run_dir / CARD, card)
    write_text(run_dir / "report.md", render(metrics, cfg))
    return {}
