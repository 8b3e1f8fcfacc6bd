"""Stage `report`: `report.md`, a markdown table of teachers vs the student per task."""

from __future__ import annotations

import yaml

from pipeline.config import RunConfig, to_dict
from pipeline.dag import Context
from pipeline.store import read_json, write_text

NAME = "report"


def needs(cfg: RunConfig) -> tuple[str, ...]:
    return ("evaluate",)


def config_subset(cfg: RunConfig) -> dict:
    return {"name": cfg.name}


def makes(cfg: RunConfig) -> list[str]:
    return ["report.md"]


def render(metrics: dict, cfg: RunConfig) -> str:
    lines = [
        f"# BAM! run `{cfg.name}`",
        "",
        "Dev-set scores (0–100). Score = the paper's metric per task: MCC for CoLA, Spearman for STS-B, accuracy",
        "otherwise; every metric is listed beside it.",
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
    lines += [
        "",
        f"Student: λ {lam}; task sampling {sampling}; layer decay {s.layer_decay}; lr {s.lr}; "
        f"batch {s.batch_size}; {s.epochs} epochs. Model: `{cfg.model.name_or_path}`.",
        "",
    ]
    lines += ["```yaml", *_yaml_lines(to_dict(cfg)), "```", ""]
    return "\n".join(lines)


def _yaml_lines(d: dict) -> list[str]:
    return yaml.safe_dump(d, sort_keys=False).rstrip().splitlines()


def run(ctx: Context) -> dict:
    if ctx.accelerator.is_main_process:
        write_text(ctx.run_dir / "report.md", render(read_json(ctx.run_dir / "metrics.json"), ctx.cfg))
    return {}
