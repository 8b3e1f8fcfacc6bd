"""`--dry-run`: every step of a call in order, whether it is done, and the time it is expected to take.

A step's time is the median of the finished runs of its kind (teachers or a student) made at this call's torch
threads when there are any (else at any), a student's scaled by its option's cost (`cost_factor`); before any run
has finished, the training examples at `ASSUMED_RATE`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.config import RunConfig, to_dict
from pipeline.core.store import read_json
from pipeline.dag import stage_status
from pipeline.experiments.choices import learns_from_teachers, tuning_done, tuning_learns, variant_config
from pipeline.experiments.folders import run_dirs
from pipeline.experiments.results import recorded_runs
from pipeline.experiments.runs import finished_run
from pipeline.experiments.tuning import setting_made
from pipeline.experiments.variants import (
    SHARED,
    TEACHERS,
    TUNE_SEED,
    reports_teachers,
    seed_config,
    seed_stages,
    setting_label,
    settings,
    variant_grid,
)
from stages import STAGES

ASSUMED_RATE = 50.0  # examples/s for --dry-run before any run has been measured (MiniLM, 2 CPU cores)


def cost_factor(student: dict[str, Any]) -> float:
    """A student run's rough cost relative to BAM's, for --dry-run's estimates: FGM and FGSM add a forward and
    backward pass per step, PGD one per step K; PCGrad took 2.5× BAM's time on glue-small (2 CPU cores, shared with
    other work, before its surgery ran on the Gram matrix: an upper bound)."""
    adversarial = student.get("adversarial", "none")
    factor = 1.0 if adversarial == "none" else 2.0 if adversarial in ("fgm", "fgsm") else student["adv_steps"] + 1.0
    return factor * (2.5 if student.get("mixing") == "pcgrad" else 1.0)


def run_threads(run: dict[str, Any]) -> set[int | None]:
    """The torch threads per process of a recorded run's training: the student's, or each task's teacher's (None:
    not recorded; a resumed training counts the process that finished it)."""
    compute = run.get("compute") or {}
    parts = [compute] if "threads" in compute else list(compute.values())
    return {part.get("threads") if part else None for part in parts} or {None}


@dataclass
class Estimate:
    """The seconds a step of each kind ("teachers", "student") is expected to take, and how that was found."""

    threads: int  # this call's torch threads
    measured: dict[str, list[tuple[float, set[int | None]]]] = field(default_factory=dict)  # kind → (s, threads)
    examples: dict[str, float] | None = None  # kind → training examples of one run; None: the data are not read yet

    def __call__(self, kind: str, factor: float = 1.0) -> tuple[float | None, str]:
        more = f" × {factor:g} for its option" if factor != 1 else ""
        if self.measured.get(kind):  # runs at this call's torch threads, when there are: wall time depends on them
            same = [seconds for seconds, threads in self.measured[kind] if threads == {self.threads}]
            seconds = same or [seconds for seconds, _ in self.measured[kind]]
            threads = f"{self.threads} torch thread{'s' if self.threads != 1 else ''}"
            where = f" at {threads}" if same else f", at other torch threads than this call's {threads}"
            return statistics.median(seconds) * factor, "measured" + where + more
        if self.examples is not None:
            return self.examples[kind] / ASSUMED_RATE * factor, f"assumed {ASSUMED_RATE:.0f} ex/s{more}"
        return None, "unknown until the data stage has run"


def measure(cfg: RunConfig, out: Path, seeds: list[int], finished: dict[tuple[str, int], Any]) -> Estimate:
    """The estimate from the finished runs (a student's time as BAM's would be: options cost more) and the data."""
    import torch

    estimate = Estimate(torch.get_num_threads())
    for (variant, _), run in finished.items():
        if run is not None:
            kind = "teachers" if reports_teachers(variant) else "student"
            factor = 1.0 if kind == "teachers" else cost_factor(run["config"]["student"])
            estimate.measured.setdefault(kind, []).append((run["wall_s"] / factor, run_threads(run)))
    for seed in seeds:
        sizes = run_dirs(out, seed, TEACHERS)[0] / "data" / "sizes.json"
        if sizes.is_file():
            rows = {task: s["train"]["rows"] for task, s in read_json(sizes).items()}
            teachers = sum(cfg.teachers.for_task(t).epochs * n for t, n in rows.items())  # a task's own epochs
            estimate.examples = {"teachers": teachers, "student": cfg.student.epochs * sum(rows.values())}
            break
    return estimate


@dataclass
class _Plan:
    """What every step of a call is planned from."""

    cfg: RunConfig
    out: Path
    variants: list[str]
    estimate: Estimate
    finished: dict[tuple[str, int], Any]
    untuned: list[str]  # variants whose tuning runs first (none yet, or one that will not hold)
    learns: dict[str, bool]  # variant → whether its runs are made anew once the teachers are tuned

    def student_cost(self, variant: str, setting: dict[str, Any] | None = None) -> float:
        vcfg = variant_config(seed_config(self.cfg, TUNE_SEED), variant, self.out, setting=setting)
        return cost_factor(to_dict(vcfg.student))

    def step(self, seed: int, name: str, done: bool, expected: tuple[float | None, str], **more: Any) -> dict:
        return {"seed": seed, "variant": name, "done": done, "seconds": expected[0], "how": expected[1], **more}


def plan(
    cfg: RunConfig,
    out: Path,
    seeds: list[int],
    variants: list[str],
    grid: dict[str, list[Any]] | None = None,
    teacher_grid: dict[str, list[Any]] | None = None,
    unchosen: RunConfig | None = None,
) -> list[dict[str, Any]]:
    """Every step in order, whether it is done, and the seconds it is expected to take (None: unknown). `cfg`: with
    the teachers' choice in it, when there is one (`with_tuned_teachers`); `unchosen`: without it (the teachers'
    tuning runs train from it; default `cfg`)."""
    grid, teacher_grid, unchosen = grid or {}, teacher_grid or {}, unchosen or cfg
    recorded = recorded_runs(out)
    finished = {(v, s): finished_run(seed_config(cfg, s), out, s, v, recorded) for s in seeds for v in variants}
    teachers_pending = not tuning_done(unchosen, TEACHERS, out, teacher_grid)
    # a student's tuning record holds for the teachers it was made with when one of its settings learns from them
    retuned = {
        v: teachers_pending and bool(variant_grid(v, grid)) and tuning_learns(cfg, v, out, grid) for v in variants
    }
    untuned = [v for v in variants if not tuning_done(cfg, v, out, grid) or retuned[v]]
    # what the teachers' choice changes: every run learning from them (not Multi's), and a student tuned anew,
    # perhaps to a setting that learns from them
    learns = {
        v: learns_from_teachers(cfg, v, out) or (v in untuned and tuning_learns(cfg, v, out, grid)) for v in variants
    }
    p = _Plan(cfg, out, variants, measure(cfg, out, seeds, finished), finished, untuned, learns)
    steps = _teacher_tuning_steps(p, unchosen, teacher_grid) if teachers_pending else []
    tuning = _tuning_steps(p, grid)
    for seed in seeds:
        steps += _seed_steps(p, seed, tuning if seed == TUNE_SEED else [])
    if teachers_pending:
        _once_teachers_are_tuned(steps[len(settings(teacher_grid)) :])
    return steps


def _teacher_tuning_steps(p: _Plan, unchosen: RunConfig, teacher_grid: dict[str, list[Any]]) -> list[dict]:
    """First: what the first seed's teachers will be depends on them."""
    return [
        p.step(
            TUNE_SEED,
            f"tune teachers {setting_label(s)}",
            setting_made(unchosen, p.out, TEACHERS, s),
            p.estimate("teachers"),
        )  # fmt: skip
        for s in settings(teacher_grid)
    ]


def _tuning_steps(p: _Plan, grid: dict[str, list[Any]]) -> list[dict]:
    """The students' tuning runs: after the first seed's teachers, before any of its runs."""
    steps = []
    for variant in p.untuned:
        for setting in settings(variant_grid(variant, grid)):
            done = setting_made(p.cfg, p.out, variant, setting)
            expected = p.estimate("student", p.student_cost(variant, setting))
            steps.append(p.step(TUNE_SEED, f"tune {variant} {setting_label(setting)}", done, expected,
                                learns=p.learns[variant]))  # fmt: skip
    return steps


def _seed_steps(p: _Plan, seed: int, tuning: list[dict]) -> list[dict]:
    """One seed's steps: its teachers (and soft targets), the tuning runs on the first seed, then every variant."""
    scfg, base = seed_config(p.cfg, seed), run_dirs(p.out, seed, TEACHERS)[0]
    target = max((seed_stages(v)[-1] for v in p.variants), key=SHARED.index)  # what the variants read of the seed
    done = stage_status(STAGES, target, scfg, base)[0] == "done" or (
        all(p.finished[(v, seed)] is not None for v in p.variants) and not (seed == TUNE_SEED and p.untuned)
    )
    steps = [p.step(seed, "teachers", done, p.estimate("teachers"), learns=any(p.learns.values())), *tuning]
    for variant in (v for v in p.variants if v != "single"):
        done = p.finished[(variant, seed)] is not None and variant not in p.untuned  # tuned: maybe another setting
        seconds, how = (
            p.estimate("teachers") if reports_teachers(variant) else p.estimate("student", p.student_cost(variant))
        )
        if variant in p.untuned and seed == TUNE_SEED:
            seconds, how = 0.0, "the chosen tuning run, hard-linked"
        elif variant in p.untuned:
            how += "; at most, once tuned"
        steps.append(p.step(seed, variant, done, (seconds, how), learns=p.learns[variant]))
    return steps


def _once_teachers_are_tuned(steps: list[dict]) -> None:
    """Every run that learns from the teachers is made anew from the tuned teachers (unless each task keeps the
    config's); Multi's hold."""
    for step in steps:
        if not step.get("learns", True):
            continue
        if step["variant"] == "teachers" and step["seed"] == TUNE_SEED:
            step["seconds"], step["how"] = 0.0, "the tuned teachers, hard-linked"
        else:
            step["how"] = step["how"] + "; once the teachers are tuned"
        step["done"] = False


def format_plan(steps: list[dict[str, Any]]) -> str:
    lines, left = [], 0.0
    for s in steps:
        eta = "?" if s["seconds"] is None else f"{s['seconds'] / 60:.0f} min ({s['how']})"
        lines.append(f"  seed {s['seed']}  {s['variant']:<13} {'done' if s['done'] else 'to run: ' + eta}")
        if not s["done"] and s["seconds"] is not None:
            left += s["seconds"]
    todo = sum(not s["done"] for s in steps)
    unknown = any(not s["done"] and s["seconds"] is None for s in steps)
    more = " + unknown" if unknown else ""
    lines.append(f"{todo} of {len(steps)} steps to run; expected {left / 3600:.1f} h{more}")
    return "\n".join(lines)
