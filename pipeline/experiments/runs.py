"""One run of a variant on one seed: running it in its folder, and its record for results.json once finished.

A run's numbers are its stages' own (each teacher's metrics.json, the student's metrics.json), read with the task
specs its data stage wrote (`data/tasks.json`), so GLUE and custom tasks are reported alike.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from pipeline.core.config import RunConfig, to_dict
from pipeline.core.metrics import main_score
from pipeline.core.store import read_json
from pipeline.core.tasks import TaskSpec, read_task_specs
from pipeline.dag import run_stages, stage_status
from pipeline.experiments.choices import variant_config, variant_key
from pipeline.experiments.folders import adopt_teacher, link_shared, run_dirs, seed_dir
from pipeline.experiments.results import recorded_tuning_run
from pipeline.experiments.variants import (
    ENSEMBLE,
    PARENT,
    TUNE_SEED,
    ReproduceError,
    ensemble_members,
    reports_teachers,
    seed_config,
    seed_stages,
    task_config,
)
from stages import STAGES


def _task_entry(task: TaskSpec, dev: dict[str, dict[str, float]]) -> dict[str, Any]:
    first = dev[task.dev_splits[0]]
    entry = {**first, "score": main_score(task, first)}
    if len(task.dev_splits) > 1:
        entry["splits"] = dev
    return entry


def _teachers_numbers(cfg: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """Each task's teacher in `run_dir`: its dev scores, training time and compute record; None until trained."""
    if stage_status(STAGES, "teachers", cfg, run_dir)[0] != "done":
        return None
    specs = read_task_specs(run_dir, cfg.data.tasks)
    metrics = {t.name: read_json(run_dir / "teachers" / t.name / "metrics.json") for t in specs}
    return {
        "tasks": {t.name: _task_entry(t, metrics[t.name]["dev"]) for t in specs},
        "wall_s": sum(m["wall_s"] for m in metrics.values()),
        "compute": {name: m["compute"] for name, m in metrics.items()},
    }


def _student_numbers(cfg: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """The student of `run_dir`: its dev scores per task, training time (summed over resumes), compute record and
    training curve (kept for the plots once the folder is gone); None until evaluated."""
    if stage_status(STAGES, "evaluate", cfg, run_dir)[0] != "done":
        return None
    from pipeline.core.plots import training_curve  # matplotlib's import, on the first finished student only

    specs = read_task_specs(run_dir, cfg.data.tasks)
    metrics = read_json(run_dir / "metrics.json")["tasks"]
    summary = read_json(run_dir / "student" / "summary.json")
    return {
        "tasks": {t.name: _task_entry(t, metrics[t.name]["student"]) for t in specs},
        "wall_s": summary["wall_s"],
        "compute": summary["compute"],
        "curve": training_curve(run_dir / "student" / "log.jsonl"),
    }


def _single_single_numbers(cfg: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """Single→Single: each task's own student (`run_dir/<task>/`); None until every one is evaluated."""
    tasks, wall, compute = {}, 0.0, {}
    for task in cfg.data.tasks:
        numbers = _student_numbers(task_config(cfg, task), run_dir / task)
        if numbers is None:
            return None
        tasks[task], compute[task] = numbers["tasks"][task], numbers["compute"]
        wall += numbers["wall_s"]
    return {"tasks": tasks, "wall_s": wall, "compute": compute}


def collect(vcfg: RunConfig, run_dir: Path, variant: str) -> dict[str, Any] | None:
    """The numbers of the run of `variant` (its config `vcfg`) in `run_dir`, or None while it is not finished:
    each task's dev entry, their average, the training time, where it was spent (a teacher's or a student's
    `compute_record`; per task) and the folder."""
    if reports_teachers(variant):
        numbers = _teachers_numbers(vcfg, run_dir)
    elif variant == "single-single":
        numbers = _single_single_numbers(vcfg, run_dir)
    else:
        numbers = _student_numbers(vcfg, run_dir)
    if numbers is None:
        return None
    average = statistics.mean(e["score"] for e in numbers["tasks"].values())
    return {"average": average, **numbers, "run_dir": str(run_dir), "config": to_dict(vcfg)}


def collect_run(
    scfg: RunConfig, out: Path, seed: int, variant: str, setting: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The finished run's record for results.json, or None while it is not finished. `scfg`: the seed's config;
    `setting`: a tuning run's."""
    run_dir = run_dirs(out, seed, variant, setting)[1]
    numbers = collect(variant_config(scfg, variant, out, setting=setting), run_dir, variant)
    if numbers is None:
        return None
    return {
        "variant": variant,
        "seed": seed,
        **numbers,
        **portable(numbers, run_dir, out),
        "key": variant_key(scfg, variant, out, setting=setting),
    }


def portable(numbers: dict[str, Any], run_dir: Path, out: Path) -> dict[str, Any]:
    """A record's paths as results.json keeps them, free of the machine's: the run folder relative to OUT, the
    GLUE folder relative to where the call ran."""
    config = numbers["config"]
    data_dir = config["data"]["data_dir"]
    if data_dir is not None:
        config = {**config, "data": {**config["data"], "data_dir": os.path.relpath(data_dir)}}
    if config.get("distill", {}).get("teachers"):  # an ensemble's other members, relative to OUT
        members = [Path(os.path.relpath(p, out)).as_posix() for p in config["distill"]["teachers"]]
        config = {**config, "distill": {**config["distill"], "teachers": members}}
    return {"run_dir": run_dir.relative_to(out).as_posix(), "config": config}


def finished_run(
    scfg: RunConfig, out: Path, seed: int, variant: str, recorded: dict[tuple[str, int], dict[str, Any]]
) -> dict[str, Any] | None:
    """The run's record from its folder, else from results.json (`recorded`, by (variant, seed)) when that holds
    the same run (its key): the results of a finished run survive its folder (e.g. a committed results.json on a
    machine without the run folders). A tuned variant's first-seed run is its chosen tuning run."""
    run = collect_run(scfg, out, seed, variant)
    if run is not None:
        return run
    key = variant_key(scfg, variant, out)
    old = recorded.get((variant, seed))
    if old is not None and old["key"] == key:
        return old
    tuned = recorded_tuning_run(out, variant, key) if seed == TUNE_SEED else None
    return None if tuned is None else {k: v for k, v in tuned.items() if k != "setting"}


def run_variant(
    scfg: RunConfig, out: Path, seed: int, variant: str, accelerator, setting: dict[str, Any] | None = None
) -> None:
    """Run one variant of one seed in its folder, from the seed's shared stages (and its parent run's model); with
    `setting`, that tuning run. A run that another folder of the variant already made (the tuning run of the chosen
    setting, or the untuned run of a setting equal to the config's) is hard-linked, not run again."""
    vcfg = variant_config(scfg, variant, out, setting=setting)
    base, run_dir = run_dirs(out, seed, variant, setting)
    parent = PARENT.get(variant)
    if parent is not None:  # its model, made (again) if missing or stale: e.g. known only from results.json
        accelerator.print(f"reproduce-glue: seed {seed}, {variant} starts from {parent}'s model")
        run_variant(scfg, out, seed, parent, accelerator)
    if variant == "single-single":
        _run_single_single(scfg, vcfg, base, run_dir, accelerator)
        return
    shared = ("data",) if parent is not None else seed_stages(variant)  # a parent's stages come with its model
    if variant in ENSEMBLE:
        need_members(scfg, out, seed)
    if accelerator.is_main_process:
        link_shared(vcfg, base, run_dir, shared)
        if not reports_teachers(variant):
            made = [seed_dir(out, seed) / variant, *sorted((seed_dir(out, seed) / "tune" / variant).glob("*"))]
            for other in (d for d in made if d != run_dir and d.is_dir()):
                link_shared(vcfg, other, run_dir, tuple(STAGES))
    accelerator.wait_for_everyone()
    run_stages(STAGES, vcfg, run_dir, accelerator, target="teachers" if reports_teachers(variant) else "report")


def need_members(scfg: RunConfig, out: Path, seed: int) -> None:
    """An ensemble run of `seed` needs the other members' teachers done in OUT: else a ReproduceError naming them."""
    missing = []
    for member in ensemble_members(seed):
        mcfg = seed_config(scfg, member)
        if stage_status(STAGES, "teachers", mcfg, run_dirs(out, member, "single")[1])[0] != "done":
            missing.append(member)
    if missing:
        seeds = ",".join(map(str, missing))
        raise ReproduceError(
            f"bam-ensemble on seed {seed} averages the teachers of seeds {seeds} too, which are not trained in {out}: "
            f"run reproduce-glue with --only-seeds {seeds} first (any variant trains a seed's teachers)"
        )


def _run_single_single(scfg: RunConfig, vcfg: RunConfig, base: Path, run_dir: Path, accelerator) -> None:
    """One student per task, in `run_dir/<task>/`, each from the seed's teacher of its task (adopted, not trained
    again, when it is the one the run would train)."""
    for task in scfg.data.tasks:
        tcfg, tdir = task_config(vcfg, task), run_dir / task
        run_stages(STAGES, tcfg, tdir, accelerator, target="data")
        if accelerator.is_main_process:
            adopt_teacher(scfg, base, tcfg, tdir, task)
        accelerator.wait_for_everyone()
        run_stages(STAGES, tcfg, tdir, accelerator, target="report")
