"""Tuning on dev: one mechanism for the teachers and every student variant.

    --tune teachers.lr=2e-5,5e-5,1e-4   every setting trains all teachers on seed 1 (OUT/runs/seed-1/tune/teachers/
                                        <setting>/); each task keeps the setting of its best teacher
    --tune student.lr=5e-5,1e-4,2e-4    every student variant of the call runs each setting on seed 1
                                        (OUT/runs/seed-1/tune/<variant>/<setting>/) and keeps the best dev average

The teachers are tuned first: every run that learns from them, the students' tuning runs included, then learns from
the chosen ones. A setting equal to the config's own reuses the run OUT already has (hard-linked); each finished
tuning run is recorded in results.json ("tuning_runs"), so a grid can be finished elsewhere; the first of equal
scores wins (the grid's order). What the choice changes, and when a record holds, is `choices.py`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.config import RunConfig
from pipeline.core.store import write_json
from pipeline.dag import run_stages
from pipeline.experiments.choices import (
    setting_config,
    tuning_base,
    tuning_done,
    tuning_record,
    tuning_run_key,
)
from pipeline.experiments.folders import adopt_teacher, link_shared, run_dirs
from pipeline.experiments.results import record_tuning_run, recorded_tuning_run, results_lock, tuning_file
from pipeline.experiments.runs import collect, run_variant
from pipeline.experiments.variants import (
    TEACHERS,
    TUNE_SEED,
    grid_of,
    seed_config,
    setting_label,
    settings,
    teacher_setting,
)
from stages import STAGES


def _kind(name: str) -> str:
    """The variant whose numbers a tuning run of `name` reports: the teachers' are Single's."""
    return "single" if name == TEACHERS else name


def tuning_run(cfg: RunConfig, out: Path, name: str, setting: dict[str, Any]) -> dict[str, Any] | None:
    """The finished tuning run of `name` (TEACHERS or a variant) at `setting` on the first seed, from its folder,
    else from results.json's "tuning_runs" when that holds the same run (its key); None while it is not finished."""
    key = tuning_run_key(cfg, name, out, setting)
    folder = run_dirs(out, TUNE_SEED, name, setting)[1]
    numbers = collect(setting_config(cfg, name, out, setting), folder, _kind(name))
    if numbers is None:
        return recorded_tuning_run(out, name, key)
    return {"variant": name, "seed": TUNE_SEED, "setting": setting, **numbers, "key": key}


def setting_made(cfg: RunConfig, out: Path, name: str, setting: dict[str, Any]) -> bool:
    """Whether the tuning run of `setting` is finished, or is the config's own run, finished (to be hard-linked)."""
    if tuning_run(cfg, out, name, setting) is not None:
        return True
    if tuning_run_key(cfg, name, out, setting) != tuning_run_key(cfg, name, out, {}):
        return False
    own = run_dirs(out, TUNE_SEED, _kind(name))[1]
    return collect(setting_config(cfg, name, out, {}), own, _kind(name)) is not None


def choose(name: str, runs: list[dict[str, Any]], tasks: tuple[str, ...]) -> dict[str, Any]:
    """The teachers': per task, the setting of its best teacher; a variant's: the setting of the best dev average.
    `max` keeps the first of equals: the grid's order."""
    if name == TEACHERS:
        return {task: max(runs, key=lambda r: r["tasks"][task]["score"])["setting"] for task in tasks}
    return max(runs, key=lambda r: r["average"])["setting"]


def make_record(cfg: RunConfig, out: Path, name: str, grid: dict[str, list[Any]]) -> dict[str, Any] | None:
    """The record once every setting of `name`'s grid has run (None before): each setting's run and the choice."""
    mine = grid_of(name, grid)
    runs = [tuning_run(cfg, out, name, setting) for setting in settings(mine)]
    if any(run is None for run in runs):
        return None
    return {
        "variant": name,
        "seed": TUNE_SEED,
        "grid": mine,
        "chosen": choose(name, runs, cfg.data.tasks),
        "base": tuning_base(cfg, name, out, mine),
        "runs": runs,
    }


def describe(record: dict[str, Any]) -> str:
    """One line on what a record chose."""
    if record["variant"] == TEACHERS:
        return "teachers tuned, per task: " + "; ".join(f"{t} {setting_label(s)}" for t, s in record["chosen"].items())
    scores = ", ".join(f"{setting_label(r['setting'])}: {r['average']:.2f}" for r in record["runs"])
    return f"{record['variant']} tuned: {scores}; chosen {setting_label(record['chosen'])}"


def _run_setting(cfg: RunConfig, out: Path, name: str, setting: dict[str, Any], accelerator) -> None:
    """Make the tuning run of `setting`: the teachers from the first seed's data (its teachers of the same
    settings adopted), or the variant's run from the first seed's shared stages."""
    scfg = seed_config(cfg, TUNE_SEED)
    if name != TEACHERS:
        run_variant(scfg, out, TUNE_SEED, name, accelerator, setting)
        return
    base, folder = run_dirs(out, TUNE_SEED, TEACHERS)[0], run_dirs(out, TUNE_SEED, TEACHERS, setting)[1]
    tcfg = teacher_setting(scfg, setting)
    if accelerator.is_main_process:
        link_shared(tcfg, base, folder, ("data",))
        for task in scfg.data.tasks:
            adopt_teacher(scfg, base, tcfg, folder, task)
    accelerator.wait_for_everyone()
    run_stages(STAGES, tcfg, folder, accelerator, target=TEACHERS)


def tune(
    cfg: RunConfig,
    out: Path,
    name: str,
    grid: dict[str, list[Any]],
    accelerator,
    recorded: Callable[[], Any] | None = None,
) -> None:
    """Run the missing settings of `name`'s grid on TUNE_SEED (the first seed's shared stages must be done: its
    data for the teachers, its teachers and soft targets for a student), record each run (then call `recorded`,
    e.g. to rewrite the table), and the choice. `cfg`: for the teachers, without a choice in it."""
    if tuning_done(cfg, name, out, grid):
        return
    for setting in settings(grid_of(name, grid)):
        run = tuning_run(cfg, out, name, setting)
        if run is None:  # not here, nor in results.json
            accelerator.print(f"reproduce-glue: tuning {name} on seed {TUNE_SEED}: {setting_label(setting)}")
            _run_setting(cfg, out, name, setting, accelerator)
            run = tuning_run(cfg, out, name, setting)
        if accelerator.is_main_process:
            record_tuning_run(out, run)
            if recorded is not None:
                recorded()
        accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        record = make_record(cfg, out, name, grid)
        with results_lock(out):
            write_json(tuning_file(out, name), record)
        accelerator.print(f"reproduce-glue: {describe(record)}")
    accelerator.wait_for_everyone()


def adopt_tuned_teachers(cfg: RunConfig, out: Path, accelerator) -> None:
    """The first seed's teachers folder gets the chosen teachers from their tuning folders (its data stage done
    first). `cfg`: with the choice in it (`with_tuned_teachers`)."""
    record = tuning_record(cfg, TEACHERS, out)
    if record is None:
        return
    scfg = seed_config(cfg, TUNE_SEED)
    base = run_dirs(out, TUNE_SEED, TEACHERS)[0]
    run_stages(STAGES, scfg, base, accelerator, target="data")
    if accelerator.is_main_process:
        for task, setting in record["chosen"].items():
            folder = run_dirs(out, TUNE_SEED, TEACHERS, setting)[1]
            adopt_teacher(teacher_setting(scfg, setting), folder, scfg, base, task)
    accelerator.wait_for_everyone()
