"""The statistics of table.md: medians and spreads over seeds, gains over Single and Multi, paired t-tests across
seeds (same seed = same teachers) with Holm–Bonferroni over the tasks."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
from scipy import stats


def holm(pvalues: dict[str, float | None]) -> dict[str, float | None]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone); None (untestable) stays None and is not counted."""
    known = sorted((p, k) for k, p in pvalues.items() if p is not None)
    adjusted: dict[str, float | None] = {k: None for k in pvalues}
    running = 0.0
    for i, (p, k) in enumerate(known):
        running = max(running, min(1.0, (len(known) - i) * p))
        adjusted[k] = running
    return adjusted


def paired_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided paired t-test across seeds; None with fewer than 2 pairs or when every difference is equal."""
    diff = np.asarray(a) - np.asarray(b)
    if len(diff) < 2 or np.allclose(diff, diff[0]):
        return None
    return float(stats.ttest_rel(a, b).pvalue)


def _scores(seeded: dict[int, dict[str, Any]], column: str, seeds: list[int]) -> list[float]:
    """A column ("average" or a task) of the runs of `seeds` (one variant's runs by seed)."""
    if column == "average":
        return [seeded[s]["average"] for s in seeds]
    return [seeded[s]["tasks"][column]["score"] for s in seeds]


def _versus(mine: dict[int, Any], ref: dict[int, Any], median: dict[str, float], tasks: list[str]) -> dict[str, Any]:
    """One variant (its runs by seed, its medians) against a reference variant's runs: median gains, and paired
    tests on their common seeds."""
    common = sorted(set(mine) & set(ref))
    columns = [*tasks, "average"]
    raw = {t: paired_p(_scores(mine, t, common), _scores(ref, t, common)) for t in tasks}
    return {
        "gain": {c: median[c] - statistics.median(_scores(ref, c, sorted(ref))) for c in columns},
        "p": raw,
        "p_holm": holm(raw),
        "p_average": paired_p(_scores(mine, "average", common), _scores(ref, "average", common)),
        "paired_seeds": common,
    }


def summarise(runs: list[dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
    """Per variant: median, min and max per task and of the average; gains and tests against Single and Multi."""
    by_variant: dict[str, dict[int, dict[str, Any]]] = {}
    for run in runs:
        by_variant.setdefault(run["variant"], {})[run["seed"]] = run
    summary: dict[str, Any] = {}
    for variant, seeded in by_variant.items():
        seeds = sorted(seeded)
        entry: dict[str, Any] = {"seeds": seeds, "median": {}, "min": {}, "max": {}}
        for column in [*tasks, "average"]:
            values = _scores(seeded, column, seeds)
            entry["median"][column] = statistics.median(values)
            entry["min"][column], entry["max"][column] = min(values), max(values)
        for ref in ("single", "multi"):
            if ref != variant and ref in by_variant:
                entry[f"vs_{ref}"] = _versus(seeded, by_variant[ref], entry["median"], tasks)
        summary[variant] = entry
    return summary
