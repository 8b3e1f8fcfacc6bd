"""OUT/plots/: scores.png and training.png for the paper's variants; options.png and options-training.png for the
multitask options beside BAM (one chart for all of them would be unreadable). Drawn from results.json alone: the
training curve of each student of the plotted (lowest) seed is kept there, so the plots outlive the run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.tasks import task_from_dict
from pipeline.experiments.variants import EVERY, GROUPS


def _medians(summary: dict[str, Any], tasks: list[str], shown: list[str]) -> tuple[dict, dict]:
    """The bars (median per task and of the average, "avg") and their whiskers (min, max) of each shown variant."""
    medians = {
        v: {**{t: summary[v]["median"][t] for t in tasks}, "avg": summary[v]["median"]["average"]} for v in shown
    }
    spread = {
        v: {c if c != "average" else "avg": (summary[v]["min"][c], summary[v]["max"][c]) for c in [*tasks, "average"]}
        for v in shown
    }
    return medians, spread


def plotted_seed(runs: list[dict[str, Any]]) -> int | None:
    """The seed whose training curves are drawn: the lowest of the runs (one seed, so the variants' curves compare)."""
    return min((r["seed"] for r in runs), default=None)


def keep_plotted_curves(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs with the training curves of the plotted seed alone: the other seeds' are never drawn, and they made
    most of a results.json of many runs (2.7 MB of 48 runs)."""
    first_seed = plotted_seed(runs)
    return [r if r["seed"] == first_seed else {k: v for k, v in r.items() if k != "curve"} for r in runs]


def _curves(runs: list[dict[str, Any]], shown: list[str], out: Path) -> dict[str, Path | dict]:
    """The first seed's training log of each shown student: its log.jsonl, else the curve results.json kept."""
    first_seed = plotted_seed(runs)
    logs: dict[str, Path | dict] = {}
    for run in runs:
        log = out / run["run_dir"] / "student" / "log.jsonl"  # relative to OUT
        if run["variant"] in shown and run["seed"] == first_seed and (log.is_file() or "curve" in run):
            logs[run["variant"]] = log if log.is_file() else run["curve"]  # the folder may be gone
    return logs


def write_plots(results: dict[str, Any], out: Path) -> None:
    """The plots of results.json's runs (`results`: its content) into OUT/plots/."""
    from pipeline.core.plots import plot_scores, plot_training_curves

    tasks, summary = results["tasks"], results["summary"]
    specs = [task_from_dict(spec) for spec in results.get("task_specs", [])]
    regression = [spec.name for spec in specs if spec.kind == "regression"]  # their gradient share, per variant
    apart = {v for _, prefix, _, group in GROUPS if prefix for v in group}  # shown in plots of their own
    groups = [("", [v for v in EVERY if v not in apart], ())]
    groups += [(prefix, [*base, *group], group) for _, prefix, base, group in GROUPS if prefix]
    for prefix, names, own in groups:
        shown = [v for v in names if v in summary]
        if not shown or (prefix and not any(v in own for v in shown)):
            continue
        medians, spread = _medians(summary, tasks, shown)
        several = any(len(summary[v]["seeds"]) > 1 for v in shown)
        title = "GLUE dev, median over seeds" + (" (whiskers: min–max)" if several else "")
        plot_scores(medians, out / "plots" / (f"{prefix[:-1]}.png" if prefix else "scores.png"), title, spread=spread)
        logs = _curves(results["runs"], shown, out)
        if logs:
            plot_training_curves(logs, out / "plots" / f"{prefix}training.png", share_of=regression)
