"""Tuning records and the configs they change: what was chosen on dev, whether it holds, and each run's config.

`--tune` runs every setting of a grid on the first seed and keeps the choice in OUT/tuning/<name>.json (name: a
variant, or TEACHERS for the teachers), copied into results.json's "tuning". A record holds while its grid's runs
are the ones this config would make (`tuning_base`: their keys), also for calls without --tune, so one OUT never
mixes tuned and untuned runs: a student variant's choice is one setting of its part of the student grid; the
teachers' is one setting per task, written into `teachers.per_task` (`with_tuned_teachers`). Running the grid is
`tuning.py`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.config import RunConfig, validate
from pipeline.experiments import results
from pipeline.experiments.folders import run_dirs
from pipeline.experiments.variants import (
    ENSEMBLE,
    PARENT,
    TEACHERS,
    TUNE_SEED,
    ReproduceError,
    apply_variant,
    ensemble_members,
    grid_of,
    seed_config,
    setting_label,
    settings,
    teacher_setting,
    uses_teachers,
    variant_grid,
    with_teacher_choice,
)


def variant_config(
    cfg: RunConfig, variant: str, out: Path, tuned: bool = True, setting: dict[str, Any] | None = None
) -> RunConfig:
    """The seed's config (`seed_config`) changed for `variant`: its tuned student settings (`tuned`: those chosen
    on dev, when OUT holds a valid tuning record; or one `setting` of the grid, the empty one for none), then its
    own changes; a variant made from another run starts from that run's model."""
    if setting is None and tuned:
        setting = tuned_choice(cfg, "bam" if variant in ENSEMBLE else variant, out)
    parent = PARENT.get(variant)
    model = run_dirs(out, cfg.teachers.seed, parent)[1] / "student" / "model" if parent else None
    return apply_variant(cfg, variant, setting or {}, model, out)


def variant_key(
    scfg: RunConfig, variant: str, out: Path, tuned: bool = True, setting: dict[str, Any] | None = None
) -> str:
    """`results.run_key` of the run of `variant` on the seed of `scfg` (the seed's config); `tuned` and `setting` as
    in `variant_config`."""
    parent = PARENT.get(variant)
    members = None
    if variant in ENSEMBLE:  # the other members' teachers by what they are made of, not by their folders
        members = [results.teachers_key(seed_config(scfg, s)) for s in ensemble_members(scfg.teachers.seed)]
    return results.run_key(
        variant_config(scfg, variant, out, tuned, setting),
        variant,
        None if parent is None else variant_key(scfg, parent, out),
        members,
    )


def setting_config(cfg: RunConfig, name: str, out: Path, setting: dict[str, Any]) -> RunConfig:
    """The config of the tuning run of `name` (TEACHERS or a variant) at `setting`, on TUNE_SEED."""
    scfg = seed_config(cfg, TUNE_SEED)
    return teacher_setting(scfg, setting) if name == TEACHERS else variant_config(scfg, name, out, setting=setting)


def tuning_run_key(cfg: RunConfig, name: str, out: Path, setting: dict[str, Any]) -> str:
    """What makes two tuning runs the same: the teachers' data and settings at the setting (`results.teachers_key`),
    or a student variant's run key at it. The empty setting: the config's own run."""
    if name == TEACHERS:
        return results.teachers_key(setting_config(cfg, name, out, setting))
    return variant_key(seed_config(cfg, TUNE_SEED), name, out, setting=setting)


def tuning_base(cfg: RunConfig, name: str, out: Path, grid: dict[str, list[Any]]) -> str:
    """The base a tuning record of `name` over `grid` holds for under `cfg`: its runs' keys (`results.tuning_base`)."""
    return results.tuning_base([tuning_run_key(cfg, name, out, setting) for setting in settings(grid)])


def tuning_record(cfg: RunConfig, name: str, out: Path) -> dict[str, Any] | None:
    """OUT's tuning record of `name` when it holds for `cfg` (its grid's runs are the ones `cfg` makes), else None.
    OUT/tuning/ holds them; results.json's copy counts when that folder lacks it."""
    record = results.read_tuning(out, name)
    if record is None or record.get("base") != tuning_base(cfg, name, out, record["grid"]):
        return None
    return record


def tuned_choice(cfg: RunConfig, name: str, out: Path) -> dict[str, Any] | None:
    record = tuning_record(cfg, name, out)
    return None if record is None else record["chosen"]


def tuning_done(cfg: RunConfig, name: str, out: Path, grid: dict[str, list[Any]]) -> bool:
    """Whether `name` needs no tuning runs: no grid for it, or a record that holds, over this very grid."""
    mine = grid_of(name, grid)
    if not mine:
        return True
    record = tuning_record(cfg, name, out)
    return record is not None and record["grid"] == mine


def with_tuned_teachers(cfg: RunConfig, out: Path) -> RunConfig:
    """`cfg` with each task's chosen teacher setting as its `teachers.per_task` entry, when OUT holds a record of
    the teachers' tuning that holds; else `cfg`."""
    chosen = tuned_choice(cfg, TEACHERS, out)
    return cfg if chosen is None else with_teacher_choice(cfg, chosen)


def learns_from_teachers(cfg: RunConfig, variant: str, out: Path, setting: dict[str, Any] | None = None) -> bool:
    """Whether `variant`'s runs (at `setting`; else at its choice) depend on the seed's teachers, so that choosing
    them anew makes the runs anew: not Multi's, nor Multi→Multi's (taught by Multi's model)."""
    parent = PARENT.get(variant, variant)  # BAM-ft: its teachers start from BAM's model, which learnt from them
    return uses_teachers(variant_config(seed_config(cfg, TUNE_SEED), parent, out, setting=setting), parent)


def tuning_learns(cfg: RunConfig, variant: str, out: Path, grid: dict[str, list[Any]]) -> bool:
    """Whether `variant`'s tuning over `grid` depends on the teachers: one of its settings learns from them (its
    record then holds for those teachers only, whatever it chose)."""
    return any(learns_from_teachers(cfg, variant, out, s) for s in settings(variant_grid(variant, grid)))


def check_grid(cfg: RunConfig, out: Path, variants: list[str], grid: dict[str, list[Any]]) -> None:
    """Every variant, with every setting it is tuned over, is a valid config (pcgrad with an adversarial loss is not;
    nor is `standardised-0.6`, which weights STS-B, on a run without STS-B)."""
    for variant in variants:  # one made from another run's model is checked as it starts: that model is not made yet
        for setting in settings(variant_grid(variant, grid)) or ([] if variant in PARENT else [{}]):
            problems = validate(setting_config(cfg, variant, out, setting))
            if problems:
                where = f"--tune setting {setting_label(setting)} for " if setting else ""
                raise ReproduceError(f"invalid {where}the variant {variant}:\n  " + "\n  ".join(problems))
