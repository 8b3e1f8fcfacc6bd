"""OUT/table.md: the paper's comparison, the ablations and the multitask options, the paired tests, and what tuning
chose. Columns are the tasks, GLUE or custom, named and scored as their specs say."""

from __future__ import annotations

import statistics
from typing import Any

from pipeline.core.tasks import TaskSpec
from pipeline.experiments.stats import summarise
from pipeline.experiments.variants import EVERY, GROUPS, TEACHERS, TUNE_SEED, setting_label

METRIC_NAMES = {"accuracy": "accuracy", "f1": "F1", "mcc": "MCC", "pearson": "Pearson", "spearman": "Spearman"}
TABLE_1 = ["single", "multi", "single-single", "multi-multi", "bam", "bam-ft"]


def column_name(task: TaskSpec) -> str:
    """A task's column: its GLUE folder's name (SST-2), a custom task's own."""
    return task.glue_dir or task.name


def _with_f1(task: TaskSpec) -> bool:
    """Whether the task's cells show F1 before its score (MRPC, QQP: F1/accuracy)."""
    return "f1" in task.metrics and task.main_metric != "f1"


def _score_name(task: TaskSpec) -> str:
    main = METRIC_NAMES.get(task.main_metric, task.main_metric)
    return f"F1/{main}" if _with_f1(task) else main


def _cell(entry: dict[str, Any], column: str, task: TaskSpec | None, runs: list[dict[str, Any]]) -> str:
    median = entry["median"][column]
    spread = f" [{entry['min'][column]:.1f}–{entry['max'][column]:.1f}]" if len(entry["seeds"]) > 1 else ""
    if task is not None and _with_f1(task):
        f1 = statistics.median(r["tasks"][column]["f1"] for r in runs)
        return f"{f1:.1f}/{median:.1f}{spread}"
    return f"{median:.1f}{spread}"


def _mark(entry: dict[str, Any], column: str) -> str:
    marks = ""
    for ref, symbol in (("single", "*"), ("multi", "†")):
        test = entry.get(f"vs_{ref}")
        p = None if test is None else (test["p_average"] if column == "average" else test["p_holm"][column])
        if p is not None and p < 0.05:
            marks += symbol
    return marks


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3f}"


def _intro(specs: list[TaskSpec], command: str, machine: str) -> list[str]:
    title = "GLUE dev" if all(t.glue_dir for t in specs) else "Dev"
    scores = ", ".join(f"{column_name(t)} {_score_name(t)}" for t in specs)
    return [
        f"# {title}: Single vs Multi vs BAM, and ablations",
        "",
        f"Command: `{command}`",
        f"Machine: {machine}",
        "",
        f"Median over seeds, [min–max] beside it. Scores: {scores}; Avg = mean over tasks of the per-task score (the "
        "second of two numbers), per run, then the median. Δ = median gain of the average over Single / Multi. "
        "Significance: paired t-test across seeds (same seed = same teachers), two-sided, Holm–Bonferroni over the "
        "tasks for per-task cells; * p < 0.05 vs Single, † p < 0.05 vs Multi.",
        "",
    ]


def _variants_table(
    variants: list[str], summary: dict[str, Any], runs: list[dict[str, Any]], specs: list[TaskSpec]
) -> list[str]:
    head = ["Model", "Avg", *map(column_name, specs), "Δ Single", "Δ Multi", "seeds"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in (v for v in variants if v in summary):
        e, mine = summary[v], [r for r in runs if r["variant"] == v]
        cells = [EVERY[v][0], _cell(e, "average", None, mine) + _mark(e, "average")]
        cells += [_cell(e, t.name, t, mine) + _mark(e, t.name) for t in specs]
        for ref in ("single", "multi"):
            test = e.get(f"vs_{ref}")
            cells.append("" if test is None else f"{test['gain']['average']:+.1f}")
        cells.append(str(len(e["seeds"])))
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _tests_table(summary: dict[str, Any], specs: list[TaskSpec]) -> list[str]:
    lines = ["## Paired tests per task (Holm-adjusted p; raw p in results.json)", ""]
    lines += ["| Model | vs | " + " | ".join(map(column_name, specs)) + " | Avg (unadjusted) |"]
    lines += ["|" + "---|" * (len(specs) + 3)]
    for v, e in summary.items():
        for ref in ("single", "multi"):
            test = e.get(f"vs_{ref}")
            if test is not None:
                ps = [_p(test["p_holm"][t.name]) for t in specs] + [_p(test["p_average"])]
                lines.append(f"| {EVERY[v][0]} | {ref} | " + " | ".join(ps) + " |")
    return [*lines, "", "n/a: fewer than 2 paired seeds, or identical differences on every seed.", ""]


def _teachers_tuning(record: dict[str, Any], specs: list[TaskSpec]) -> list[str]:
    lines = [f"## Teachers tuned on dev (seed {TUNE_SEED}; each task's dev score per setting, the chosen in bold)", ""]
    lines += ["| Setting | " + " | ".join(map(column_name, specs)) + " | Avg |", "|" + "---|" * (len(specs) + 2)]
    for r in record["runs"]:
        cells = [f"{r['tasks'][t.name]['score']:.1f}" for t in specs]
        cells = [f"**{c}**" if r["setting"] == record["chosen"][t.name] else c for c, t in zip(cells, specs)]
        lines.append(f"| {setting_label(r['setting'])} | " + " | ".join(cells) + f" | {r['average']:.1f} |")
    return [
        *lines,
        "",
        "Every seed's teacher of a task trains with its chosen setting; Single reports those teachers.",
        "",
    ]


def _students_tuning(records: dict[str, Any]) -> list[str]:
    width = max(len(r["runs"]) for r in records.values())
    lines = [f"## Tuned on dev (seed {TUNE_SEED}; dev average per setting, the chosen one in bold)", ""]
    lines += ["| Model | " + " | ".join(["setting"] * width) + " |", "|" + "---|" * (1 + width)]
    for v, record in records.items():
        cells = []
        for r in record["runs"]:
            cell = f"{setting_label(r['setting'])}: {r['average']:.1f}"
            cells.append(f"**{cell}**" if r["setting"] == record["chosen"] else cell)
        lines.append(f"| {EVERY[v][0]} | " + " | ".join(cells) + " |")
    return [*lines, "", "Every seed of a tuned model runs with its chosen setting; the others keep the config's.", ""]


def render_table(
    runs: list[dict[str, Any]],
    specs: list[TaskSpec],
    command: str,
    machine: str,
    tuning: dict[str, Any] | None = None,
) -> str:
    """table.md of the finished `runs` over the tasks of `specs` (in column order), and the `tuning` records."""
    summary = summarise(runs, [t.name for t in specs])
    lines = _intro(specs, command, machine)
    lines += ["## Table 1: Single, Multi, Single→Multi", "", *_variants_table(TABLE_1, summary, runs, specs)]
    for title, _, base, group in GROUPS:
        if any(v in summary for v in group):
            lines += ["", f"## {title}", "", *_variants_table([*base, *group], summary, runs, specs)]
    lines += ["", *_tests_table(summary, specs)]
    students = dict(tuning or {})
    teachers = students.pop(TEACHERS, None)
    if teachers:
        lines += _teachers_tuning(teachers, specs)
    if students:
        lines += _students_tuning(students)
    return "\n".join(lines)
