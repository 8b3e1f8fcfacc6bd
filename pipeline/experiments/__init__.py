"""`python -m pipeline reproduce-glue`: the paper's comparison and ablations, over seeds, as one resumable command.

    python -m pipeline reproduce-glue --config configs/glue-small.yaml --data-dir ../shared/data/glue \\
        --seeds 3 --out results/repro
    python -m pipeline reproduce-glue ... --dry-run                  # the plan, what is done, the time it expects
    python -m pipeline reproduce-glue ... --variants single,multi,bam
    python -m pipeline reproduce-glue ... --seeds 1 --variants bam,summed,pcgrad,fgm,supcon   # multitask options
    python -m pipeline reproduce-glue ... --tune student.lr=5e-5,1e-4,2e-4   # each student variant tuned on dev
    python -m pipeline reproduce-glue ... --tune teachers.lr=2e-5,5e-5,1e-4  # each task's teacher tuned on dev
    python -m pipeline reproduce-glue ... --seeds 3 --only-seeds 2       # one seed of three; another process: 3

Every (variant, seed) is an ordinary run folder, `OUT/runs/seed-<s>/<variant>/`, driven by the staged DAG, so a
killed call resumes where it stopped (finished runs are skipped, an interrupted student resumes from its checkpoint).
Teachers are trained once per seed in `OUT/runs/seed-<s>/teachers/` and hard-linked into each variant's folder
(stage outputs are only ever replaced, never written in place, so a link cannot be changed through another folder).
Seed s sets `teachers.seed` and `student.seed`; the data (and SST-2's capped subset) are the same for every seed.
Several calls (processes, or machines sharing the folder) can fill one OUT with different seeds (`--only-seeds`):
each claims its seeds (and the first seed, while tuning is pending, with OUT/locks/tuning.lock until the choice is
made) for its whole run (OUT/locks/, the kernel's locks, released when the process ends, also when it dies), and
results.json and OUT/tuning/ are rewritten under a lock of their own.

Writes OUT/results.json (every run's metrics, config, seed, wall time and where it ran), OUT/table.md (median over
seeds per task with the min–max spread, gains over Single and Multi, paired t-tests across seeds with Holm–Bonferroni
over tasks), OUT/plots/scores.png and OUT/plots/training.png, and, when the GLUE folder has test files, leaderboard
submission files for the best variant in OUT/submission/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from accelerate.utils import broadcast_object_list
from filelock import FileLock, Timeout
from scipy import stats

from pipeline.core.config import (
    ConfigError,
    RunConfig,
    TeacherTaskConfig,
    override,
    parse_overrides,
    to_dict,
    validate,
)
from pipeline.core.metrics import main_score
from pipeline.core.store import digest, done_intact, read_json, read_manifest, write_json, write_text
from pipeline.core.tasks import TaskSpec
from pipeline.core.tasks import get_glue_task as get_task  # GLUE tasks only, until specs are read from the runs
from pipeline.dag import run_stages, stage_record, stage_status
from stages import STAGES
from stages.teachers import task_digest

# Variant name → (label in the tables, student config changes). "single" is the teachers themselves.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "single": ("Single (teachers)", {}),
    "multi": ("Multi (λ = 1, no distillation)", {"fixed_lambda": 1.0}),
    "bam": ("Single→Multi (BAM, annealed)", {}),
    "no-layerwise": ("BAM − layer-wise LRs", {"layer_decay": 1.0}),
    "no-sampling": ("BAM − task sampling (shuffle all)", {"shuffle_all": True}),
    "no-annealing": ("BAM − teacher annealing (λ = 0)", {"fixed_lambda": 0.0}),
}
ABLATIONS = ("no-layerwise", "no-sampling", "no-annealing")
# The paper's other variants, each made from more than one run (selectable with --variants; not run by default):
# Single→Single trains one born-again student per task (the student's settings, on that task alone, from its own
# teacher); Multi→Multi distils the Multi model into a BAM student (teachers.init_from = Multi's model, epochs 0);
# BAM + fine-tuning fine-tunes the BAM student on each task alone (teachers.init_from = BAM's model, lr 1e-5 as in
# the paper) and reports those single-task models.
DERIVED: dict[str, tuple[str, dict[str, Any]]] = {
    "single-single": ("Single→Single (born-again per task)", {}),
    "multi-multi": ("Multi→Multi (Multi teaches)", {}),
    "bam-ft": ("BAM + single-task fine-tuning", {}),
}
PARENT = {"multi-multi": "multi", "bam-ft": "bam"}  # the run whose model the variant starts from
FINE_TUNE_LR = 1e-5
# The multitask options (README "Options"), each BAM with one option on: run only when named in --variants, and
# shown in a table of their own beside BAM's defaults.
OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "round-robin": ("BAM, round-robin task batches", {"mixing": "round-robin"}),
    "summed": ("BAM, task losses summed per step", {"mixing": "summed"}),
    "pcgrad": ("BAM, summed + PCGrad", {"mixing": "pcgrad"}),
    "fgm": ("BAM + FGM (ε 0.1)", {"adversarial": "fgm"}),
    "fgsm": ("BAM + FGSM (ε 0.0015)", {"adversarial": "fgsm", "adv_epsilon": 0.0015}),  # ≈ FGM ε 0.1's norm
    "pgd": ("BAM + PGD (ε 0.1, α 0.05, K 3)", {"adversarial": "pgd"}),
    "supcon": ("BAM + SupCon (weight 0.1)", {"supcon_weight": 0.1}),
    "siamese": ("BAM, siamese pair heads", {"pair_mode": "siamese"}),
    "unfreeze": ("BAM + gradual unfreezing (0.1 epoch)", {"unfreeze_every": 0.1, "unfreeze_unit": "epochs"}),
}
EVERY = {**VARIANTS, **DERIVED, **OPTIONS}
SHARED = ("data", "teachers", "distill")  # stages every variant of a seed shares
ASSUMED_RATE = 50.0  # examples/s for --dry-run before any run has been measured (MiniLM, 2 CPU cores)


class ReproduceError(ValueError):
    """A bad --variants or --seeds value."""


def parse_variants(text: str | None) -> list[str]:
    """The named variants in table order; none named: the paper's (VARIANTS), without the OPTIONS."""
    if not text:
        return list(VARIANTS)
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in EVERY]
    if unknown or not names:
        raise ReproduceError(f"--variants: unknown {unknown or text!r}; choose from {', '.join(EVERY)}")
    return [v for v in EVERY if v in names]  # table order


def parse_seeds(seeds: int, only: str | None = None) -> list[int]:
    """Seeds 1..`seeds`, or the comma-separated `only` of them (`--only-seeds 2,3`)."""
    if seeds < 1:
        raise ReproduceError(f"--seeds must be >= 1, got {seeds}")
    if only is None:
        return list(range(1, seeds + 1))
    try:
        chosen = sorted({int(s) for s in only.split(",") if s.strip()})
    except ValueError:
        raise ReproduceError(f"--only-seeds: expected comma-separated integers, got {only!r}") from None
    outside = [s for s in chosen if not 1 <= s <= seeds]
    if outside or not chosen:
        raise ReproduceError(f"--only-seeds: {outside or only!r} not among the seeds 1..{seeds} of --seeds {seeds}")
    return chosen


LOCK_WAIT = 600.0  # seconds a call waits for results.json's lock before it says which file holds it


@functools.cache
def _lock(path: str) -> FileLock:
    """One lock object per file in this process (so holding it again here does not wait on itself). The kernel's
    lock (flock), never a lock file that a killed process would leave behind: a folder whose filesystem has no
    flock is an error (`_acquire`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path, fallback_to_soft=False)


def results_lock(out: Path):
    """Held while results.json or OUT/tuning/ is read to be rewritten and written: calls filling one OUT keep each
    other's runs."""
    return _acquire(out, "results", LOCK_WAIT, f"waited {LOCK_WAIT:.0f} s for it, held by another call")


def _acquire(out: Path, name: str, timeout: float, why: str):
    """OUT/locks/<name>.lock, taken within `timeout` seconds (0: now or never), as a context manager; else an error
    saying `why` and which file."""
    lock = _lock(str(out.resolve() / "locks" / f"{name}.lock"))
    try:
        return lock.acquire(timeout=timeout)
    except Timeout:
        raise ReproduceError(f"{why} ({lock.lock_file})") from None
    except (OSError, NotImplementedError) as err:
        raise ReproduceError(f"cannot lock {lock.lock_file}: {err} (OUT must be on a filesystem with flock)") from err


def _try_lock(out: Path, name: str, stack: contextlib.ExitStack, why: str) -> None:
    stack.enter_context(_acquire(out, name, 0, f"{why}; another process holds it"))


def claim_seeds(out: Path, seeds: list[int], stack: contextlib.ExitStack, tuning: contextlib.ExitStack | None) -> None:
    """Claim `seeds` of OUT for this process until `stack` closes; a seed another process holds is an error (the
    lock is the kernel's: it goes with the process, also one that was killed). With `tuning` (a call that tunes on
    the first seed, then among `seeds`), OUT/locks/tuning.lock is held until that stack closes (once the choice is
    made); meanwhile a call for other seeds is refused, as it would run without the choice."""
    busy = f"another call is tuning on seed {TUNE_SEED} of {out}: start this one once it has made its choice"
    with contextlib.ExitStack() as probe:  # without tuning: taken and let go at once, only to see if one is
        _try_lock(out, "tuning", tuning if tuning is not None else probe, busy)
    for seed in seeds:
        busy = f"seed {seed} of {out} is being run by another call; give each call its own seeds with --only-seeds"
        _try_lock(out, f"seed-{seed}", stack, busy)


def seed_config(cfg: RunConfig, seed: int) -> RunConfig:
    return dataclasses.replace(
        cfg,
        teachers=dataclasses.replace(cfg.teachers, seed=seed),
        student=dataclasses.replace(cfg.student, seed=seed),
    )


def variant_config(
    cfg: RunConfig, variant: str, out: Path, tuned: bool = True, setting: dict[str, Any] | None = None
) -> RunConfig:
    """The seed's config (`seed_config`) changed for `variant`: its tuned student settings (`tuned`: those chosen
    on dev, when OUT holds a valid tuning record; or one `setting` of the grid), then its own changes (they win: an
    ablation keeps what it ablates); a variant made from another run points at it."""
    if setting is None and tuned:
        setting = tuned_choice(cfg, variant, out)
    if setting:
        cfg = dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, **setting))
    cfg = dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, **EVERY[variant][1]))
    parent = PARENT.get(variant)
    if parent is not None:
        model = run_dirs(out, cfg.teachers.seed, parent)[1] / "student" / "model"
        changes = {"epochs": 0.0} if variant == "multi-multi" else {"lr": FINE_TUNE_LR}
        teachers = dataclasses.replace(cfg.teachers, init_from=str(model), per_task={}, **changes)
        cfg = dataclasses.replace(cfg, teachers=teachers)
    return cfg


def task_config(cfg: RunConfig, task: str) -> RunConfig:
    """`cfg` on one task alone (a Single→Single student)."""
    caps = {t: n for t, n in cfg.data.max_train_examples.items() if t == task}
    per_task = {t: own for t, own in cfg.teachers.per_task.items() if t == task}
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, tasks=(task,), max_train_examples=caps),
        teachers=dataclasses.replace(cfg.teachers, per_task=per_task),
    )


def reports_teachers(variant: str) -> bool:
    """Whether the variant's numbers are its teachers' (single-task models), not a student's."""
    return variant in ("single", "bam-ft")


def run_dirs(out: Path, seed: int, variant: str, setting: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """(the seed's teachers folder, the variant's run folder); "single" reads the teachers folder itself; a
    `setting` of the tuning grid runs in `OUT/runs/seed-<s>/tune/<variant>/<setting>/` (the empty setting, the
    untuned variant, in the variant's folder)."""
    seed_dir = out / "runs" / f"seed-{seed}"
    if setting:
        return seed_dir / "teachers", seed_dir / "tune" / variant / setting_label(setting)
    return seed_dir / "teachers", seed_dir / "teachers" if variant == "single" else seed_dir / variant


def _link_files(src: Path, dst: Path, keep: Callable[[Path], bool], copy: tuple[str, ...] = ()) -> None:
    """Hard-link the file `src`, or every file under the folder `src` whose relative path `keep` accepts, to the
    same place under `dst`; files named in `copy` are copied instead (they are appended to)."""
    pairs = [(p, dst / p.relative_to(src)) for p in sorted(src.rglob("*"))] if src.is_dir() else [(src, dst)]
    for path, target in pairs:
        if path.is_file() and keep(path.relative_to(src) if src.is_dir() else Path(path.name)):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            if path.name in copy:
                shutil.copyfile(path, target)
            else:
                os.link(path, target)


def link_shared(cfg: RunConfig, src: Path, dst: Path, stages: tuple[str, ...] = SHARED) -> list[str]:
    """Hard-link the finished shared stages of `src` into `dst`: each stage that is not already done there and whose
    inputs in `dst` are the ones it was made from (else it would be stale there). Returns the `stages` done in
    `dst` now (linked, or done before)."""
    registry, memo, src_memo, done = STAGES, {}, {}, []
    for name in stages:
        if stage_status(STAGES, name, cfg, dst, memo)[0] == "done":
            done.append(name)
            continue
        if stage_status(STAGES, name, cfg, src, src_memo)[0] != "done":
            continue
        if read_manifest(src, name)["digest"] != stage_record(STAGES, name, cfg, dst)["digest"]:
            continue
        for rel in registry[name].makes(cfg):
            if (dst / rel).is_dir():
                shutil.rmtree(dst / rel)
            _link_files(src / rel, dst / rel, lambda rel: not rel.name.endswith(".previous"))
        (dst / "manifests").mkdir(parents=True, exist_ok=True)
        manifest = dst / "manifests" / f"{name}.json"
        manifest.unlink(missing_ok=True)
        os.link(src / "manifests" / f"{name}.json", manifest)
        memo.clear()
        done.append(name)
    return done


# ---- one run's numbers -------------------------------------------------------------------------------------------


def adopt_teacher(src_cfg: RunConfig, src: Path, dst_cfg: RunConfig, dst: Path, task: str) -> bool:
    """Hard-link the finished teacher of `task` in the run `src` into the run `dst` (whose data stage is done) when it
    is the teacher `dst` would train: the same per-task digest. What `dst` held for the task before (another
    teacher, or a part-trained one) is removed first; its `done.json` is written anew for `dst` (a teacher made
    before per-task digests holds the whole stage's, taken only while `src`'s manifest is `src_cfg`'s), and its
    log copied, so nothing in `dst` writes into `src`."""
    folder, target = src / "teachers" / task, dst / "teachers" / task
    manifest = read_manifest(src, "teachers")
    if manifest is None:
        return False
    own = task_digest(src_cfg, src, task)
    # a whole-stage digest counts only while it is the one `src_cfg` would make: else the teacher is of other settings
    whole = stage_record(STAGES, "teachers", src_cfg, src)["digest"]
    legacy = (manifest["digest"],) if manifest["digest"] == whole else ()
    if not done_intact(folder / "done.json", (own, *legacy), folder):
        return False
    if task_digest(dst_cfg, dst, task) != own or done_intact(target / "done.json", (own,), target):
        return False
    if target.is_dir():
        shutil.rmtree(target)  # hard links: the files live on in the folders that share them
    record = read_json(folder / "done.json")
    _link_files(folder, target, lambda rel: rel.parts[0] != "checkpoints" and rel.name != "done.json", ("log.jsonl",))
    write_json(target / "done.json", {"digest": own, "files": record["files"]})
    return True


def _task_entry(task: TaskSpec, dev: dict[str, dict[str, float]]) -> dict[str, Any]:
    first = dev[task.dev_splits[0]]
    entry = {**first, "score": main_score(task, first)}
    if len(task.dev_splits) > 1:
        entry["splits"] = dev
    return entry


def collect_run(
    scfg: RunConfig, out: Path, seed: int, variant: str, setting: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The finished run's record for results.json, or None while it is not finished. `scfg`: the seed's config;
    `setting`: a tuning run's."""
    cfg = variant_config(scfg, variant, out, setting=setting)
    _, run_dir = run_dirs(out, seed, variant, setting)
    tasks = [get_task(t) for t in cfg.data.tasks]
    if reports_teachers(variant):
        if stage_status(STAGES, "teachers", cfg, run_dir)[0] != "done":
            return None
        teachers = {t.name: read_json(run_dir / "teachers" / t.name / "metrics.json") for t in tasks}
        entries = {t.name: _task_entry(t, teachers[t.name]["dev"]) for t in tasks}
        wall = sum(m["wall_s"] for m in teachers.values())
        compute = {name: m.get("compute") for name, m in teachers.items()}
    elif variant == "single-single":
        entries, wall, compute = {}, 0.0, {}
        for t in tasks:
            tcfg, tdir = task_config(cfg, t.name), run_dir / t.name
            if stage_status(STAGES, "evaluate", tcfg, tdir)[0] != "done":
                return None
            entries[t.name] = _task_entry(t, read_json(tdir / "metrics.json")["tasks"][t.name]["student"])
            wall += _student_wall(tdir)
            compute[t.name] = _student_compute(tdir)
    else:
        if stage_status(STAGES, "evaluate", cfg, run_dir)[0] != "done":
            return None
        metrics = read_json(run_dir / "metrics.json")["tasks"]
        entries = {t.name: _task_entry(t, metrics[t.name]["student"]) for t in tasks}
        wall, compute = _student_wall(run_dir), _student_compute(run_dir)
        from pipeline.core.plots import training_curve  # matplotlib's import, on the first finished student only

        curve = training_curve(run_dir / "student" / "log.jsonl")  # kept for the plots once the folder is gone
    return {
        "variant": variant,
        "seed": seed,
        "average": statistics.mean(e["score"] for e in entries.values()),
        "tasks": entries,
        "wall_s": wall,
        "compute": compute,  # where the wall time was spent (a teacher's or a student's `compute_record`; per task)
        "run_dir": str(run_dir),
        "config": to_dict(cfg),
        "key": run_key(scfg, variant, out, setting=setting),
        **({"curve": curve} if not reports_teachers(variant) and variant != "single-single" else {}),
    }


def _student_compute(run_dir: Path) -> dict[str, Any] | None:
    """The student's `compute_record` (None for runs made before it was recorded)."""
    summary = run_dir / "student" / "summary.json"
    return read_json(summary).get("compute") if summary.is_file() else None


def _student_wall(run_dir: Path) -> float:
    """The student's training seconds (summed over resumes; by runs made before that, the last process's only)."""
    summary = run_dir / "student" / "summary.json"
    return read_json(summary)["wall_s"] if summary.is_file() else read_manifest(run_dir, "student")["wall_s"]


def run_key(
    scfg: RunConfig,
    variant: str,
    out: Path,
    tuned: bool = True,
    setting: dict[str, Any] | None = None,
    legacy: str = "",
) -> str:
    """What makes two runs the same: the config subsets their numbers depend on, as their stages' digests are made
    of them (so settings that do not change results, and options left at their defaults, do not count): the
    teachers' for a variant reporting them or a student learning from them, not for Multi's (λ = 1, it never reads
    them); with the data by content (`data_identity`); a variant made from another run adds that run's key (not
    the folder it starts from, so a moved OUT keeps its keys). `scfg` is the seed's config; `tuned` and `setting`
    as in `variant_config`; `legacy`: the key in a spelling of earlier versions (`LEGACY`)."""
    cfg, stages = variant_config(scfg, variant, out, tuned, setting), STAGES
    if reports_teachers(variant):
        names: tuple[str, ...] = ("teachers",)
    else:
        names = ("teachers", "student") if legacy or uses_teachers(cfg, variant) else ("student",)
    key: dict[str, Any] = {"data": data_identity(cfg, legacy == "path")} | {
        name: stages[name].config_subset(cfg) for name in names
    }
    if variant in PARENT:
        key |= {"parent": run_key(scfg, PARENT[variant], out, legacy=legacy), "variant": variant}
    elif variant in DERIVED:
        key |= {"variant": variant}
    return digest(key)


# The spellings of run keys made by earlier versions (`run_key`'s `legacy`), still matched where they hold and written
# back in today's: "teachers", the teachers' settings in every student's key, also Multi's; "path", that and the GLUE
# folder's absolute path instead of its files' content.
LEGACY = ("teachers", "path")


def uses_teachers(cfg: RunConfig, variant: str) -> bool:
    """Whether the numbers of `variant` (its config `cfg`) depend on the seed's teachers: they are the teachers'
    (Single, BAM-ft), or a student's that learns from them (all but Multi)."""
    return reports_teachers(variant) or "distill" in STAGES["student"].needs(cfg)


def learns_from_teachers(cfg: RunConfig, variant: str, out: Path, tuned: bool = True) -> bool:
    """Whether `variant`'s runs depend on the seed's teachers, so that choosing them anew makes the runs anew: not
    Multi's, nor Multi→Multi's (taught by Multi's model). `tuned=False`: with the config's own student settings, as
    its tuning record counts them (`tuning_base`), whatever its choice."""
    parent = PARENT.get(variant, variant)  # BAM-ft: its teachers start from BAM's model, which learnt from them
    return uses_teachers(variant_config(seed_config(cfg, TUNE_SEED), parent, out, tuned=tuned), parent)


def legacy_keys(make: Callable[..., str]) -> Callable[[], tuple[str, ...]]:
    """The keys `make` (a key function taking `legacy`) gives in the spellings of `LEGACY`: computed once, and only
    when asked for (most records carry today's key)."""
    return functools.cache(lambda: tuple(make(legacy=spelling) for spelling in LEGACY))


def data_identity(cfg: RunConfig, legacy: bool = False) -> dict[str, Any]:
    """The data part of a key: the data stage's config subset, but with the GLUE files by content (named relative to
    `data.data_dir`, as the data stage's `sources`) instead of the folder's path, so a results.json holds wherever
    the GLUE copy lives. `legacy`: the subset as it is, path included (the keys of earlier results.json files)."""
    stage = STAGES["data"]
    subset = stage.config_subset(cfg)
    if legacy or cfg.data.data_dir is None:
        return subset
    data = {k: v for k, v in subset["data"].items() if k != "data_dir"}
    return {**subset, "data": data, "files": stage.sources(cfg)}


def same_key(recorded: str, key: str, legacy: Callable[[], tuple[str, ...]]) -> bool:
    """Whether a key read from a file is `key`, or one of its `legacy` spellings (`legacy_keys`, computed only when
    needed). Records matched by a legacy key are written back with `key`."""
    return recorded == key or recorded in legacy()


_RECORDED: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}  # path → (its version, its content)


def _recorded(out: Path) -> dict[str, Any]:
    """OUT/results.json ({} when there is none), read once per version of the file (it can be large)."""
    path = out / "results.json"
    if not path.is_file():
        return {}
    stat = path.stat()  # written atomically: a new inode each time
    where, version = str(path.resolve()), (stat.st_mtime_ns, stat.st_ino, stat.st_size)
    if _RECORDED.get(where, (None,))[0] != version:
        _RECORDED[where] = (version, read_json(path))
    return _RECORDED[where][1]


def recorded_runs(out: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """The runs OUT/results.json already holds, by (variant, seed)."""
    return {(r["variant"], r["seed"]): r for r in _recorded(out).get("runs", []) if "key" in r}


def finished_run(
    scfg: RunConfig, out: Path, seed: int, variant: str, recorded: dict[tuple[str, int], dict[str, Any]]
) -> dict[str, Any] | None:
    """The run's record from its folder, else from results.json when that holds the same run: the results of a
    finished run survive its folder (e.g. a committed results.json on a machine without the run folders)."""
    run = collect_run(scfg, out, seed, variant)
    if run is None:
        old, key = recorded.get((variant, seed)), run_key(scfg, variant, out)
        legacy = legacy_keys(functools.partial(run_key, scfg, variant, out))
        if old is not None and same_key(old["key"], key, legacy):
            return {**old, "key": key}
        if seed == TUNE_SEED:  # a tuned variant's first-seed run is its chosen tuning run
            tuned = _recorded_tuning_run(out, variant, key, legacy)
            if tuned is not None:
                return {k: v for k, v in tuned.items() if k != "setting"}
    return run


# ---- tuning on dev -------------------------------------------------------------------------------------------------
# `--tune student.lr=5e-5,1e-4,2e-4` runs every student variant of the call at each setting of the grid on the first
# seed, keeps the setting with the best dev average (the first of the grid on a tie) in OUT/tuning/<variant>.json,
# and runs that variant with it on every seed (the first seed's run is the tuning run itself, hard-linked). A record
# holds while the variant's untuned config is the same (`tuning_base`), also for calls without --tune, so one OUT
# never mixes tuned and untuned runs of a variant.
TUNE_SEED = 1


TEACHERS = "teachers"  # the teachers' tuning record (OUT/tuning/teachers.json); not a variant
TEACHER_KEYS = tuple(f.name for f in dataclasses.fields(TeacherTaskConfig))  # what a task's teacher can set alone


def parse_tune(texts: list[str] | None, cfg: RunConfig) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """`--tune student.KEY=V1,V2,...` and `--tune teachers.KEY=V1,V2,...` (repeatable; several keys make a grid)
    → ({student KEY: [values]}, {teachers KEY: [values]}); every setting is checked as a config override would be."""
    grids: dict[str, dict[str, list[Any]]] = {"student": {}, "teachers": {}}
    for text in texts or []:
        key, sep, values = (part.strip() for part in text.partition("="))
        section, _, name = key.partition(".")
        known = section == "student" or (section == "teachers" and name in TEACHER_KEYS)
        if not sep or not known or not name or "." in name or not values:
            raise ReproduceError(
                f"--tune {text!r}: expected student.KEY=V1,V2,... (e.g. student.lr=5e-5,1e-4,2e-4) or "
                f"teachers.KEY=V1,V2,... with KEY one of {', '.join(TEACHER_KEYS)}"
            )
        grid = grids[section]
        if name == "seed" or name in grid:
            raise ReproduceError(f"--tune {text!r}: {key} " + ("is set by --seeds" if name == "seed" else
                                 "is given twice"))  # fmt: skip
        grid[name] = []
        for raw in values.split(","):
            value = parse_overrides([f"--value={raw.strip()}"])["value"]
            try:  # as the config holds it (an int given for a float key becomes a float), so equal settings match
                value = getattr(getattr(override(cfg, {section: {name: value}}, f"--tune {text!r}"), section), name)
            except ConfigError as err:
                raise ReproduceError(str(err)) from None
            if value in grid[name]:
                raise ReproduceError(f"--tune {text!r}: the value {value!r} is given twice")
            grid[name].append(value)
    for section, grid in grids.items():
        for setting in settings(grid):
            try:
                override(cfg, {section: setting}, f"--tune setting {section} {setting_label(setting)}")
            except ConfigError as err:
                raise ReproduceError(str(err)) from None
    return grids["student"], grids["teachers"]


def check_grid(cfg: RunConfig, out: Path, variants: list[str], grid: dict[str, list[Any]]) -> None:
    """Every setting is a valid config for every variant it tunes (pcgrad with an adversarial loss is not)."""
    for variant in variants:
        for setting in settings(variant_grid(variant, grid)):
            problems = validate(variant_config(seed_config(cfg, TUNE_SEED), variant, out, setting=setting))
            if problems:
                where = f"--tune setting {setting_label(setting)} for the variant {variant}"
                raise ReproduceError(f"invalid {where}:\n  " + "\n  ".join(problems))


def settings(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else []


def setting_label(setting: dict[str, Any]) -> str:
    return ",".join(f"{key}={setting[key]}" for key in sorted(setting))  # one name whatever the keys' order


def variant_grid(variant: str, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The part of the grid `variant` is tuned over: none for the teachers and the variants made of several runs;
    a key the variant sets itself (no-layerwise's layer_decay) is not tuned."""
    if reports_teachers(variant) or variant in DERIVED:
        return {}
    return {key: values for key, values in grid.items() if key not in EVERY[variant][1]}


def tuning_file(out: Path, variant: str) -> Path:
    return out / "tuning" / f"{variant}.json"


def tuning_base(cfg: RunConfig, variant: str, out: Path, keys: Any = (), legacy: str = "") -> str:
    """What a tuning record was made for: the variant's key untuned, for any seed (the choice holds for all); the
    teachers': their data and settings without the per-task values of the tuned `keys` (so the config with the
    choice in it, `with_tuned_teachers`, has the record's base too). `legacy` as in `run_key`."""
    if variant == TEACHERS:
        return _teachers_key(teacher_setting(seed_config(cfg, 0), dict.fromkeys(keys)), legacy)
    return run_key(seed_config(cfg, 0), variant, out, tuned=False, legacy=legacy)


def _teachers_key(cfg: RunConfig, legacy: str = "") -> str:
    """What the teachers of `cfg` are made of: their data (`data_identity`) and settings, and teachers.init_from's
    model by content."""
    stages = STAGES
    subsets = {"data": data_identity(cfg, legacy == "path"), TEACHERS: stages[TEACHERS].config_subset(cfg)}
    return digest({**subsets, "sources": stages[TEACHERS].sources(cfg)})


def tuning_record(cfg: RunConfig, variant: str, out: Path) -> dict[str, Any] | None:
    """OUT's valid tuning record of `variant`, or None (none, or made for another config). OUT/tuning/ holds them;
    results.json's copy counts when that folder lacks it (e.g. OUT made anew from a committed results.json; a run
    writes it back, `restore_tuning`, a dry run does not)."""
    path = tuning_file(out, variant)
    record = read_json(path) if path.is_file() else _recorded_tuning(out).get(variant)
    if record is None:
        return None
    base = tuning_base(cfg, variant, out, record.get("grid", {}))
    legacy = legacy_keys(functools.partial(tuning_base, cfg, variant, out, record.get("grid", {})))
    return {**record, "base": base} if same_key(record.get("base"), base, legacy) else None


def _recorded_tuning(out: Path) -> dict[str, Any]:
    """results.json's "tuning" records."""
    return _recorded(out).get("tuning", {})


def recorded_tuning_runs(out: Path) -> list[dict[str, Any]]:
    """results.json's finished tuning runs (each setting's, students' and teachers'): a tuning run's numbers survive
    its folder, so a grid can be finished on another machine."""
    return _recorded(out).get("tuning_runs", [])


def tuning_run_key(cfg: RunConfig, variant: str, out: Path, setting: dict[str, Any], legacy: str = "") -> str:
    """What makes two tuning runs the same: a student variant's run key at the setting; the teachers' data and
    settings at the setting (with teachers.init_from's model). `legacy` as in `run_key`."""
    scfg = seed_config(cfg, TUNE_SEED)
    if variant != TEACHERS:
        return run_key(scfg, variant, out, setting=setting, legacy=legacy)
    return _teachers_key(teacher_setting(scfg, setting), legacy)


def _recorded_tuning_run(
    out: Path, variant: str, key: str, legacy: Callable[[], tuple[str, ...]]
) -> dict[str, Any] | None:
    """results.json's tuning run of `variant` with this key (or a legacy spelling of it), with `key` in it."""
    found = (r for r in recorded_tuning_runs(out) if r["variant"] == variant and same_key(r["key"], key, legacy))
    run = next(found, None)
    return None if run is None else {**run, "key": key}


def _teacher_tuning_run(cfg: RunConfig, out: Path, setting: dict[str, Any]) -> dict[str, Any] | None:
    """The teachers of `setting` as a record (each task's dev score), from their tuning folder once finished."""
    scfg = seed_config(cfg, TUNE_SEED)
    folder, tasks = teacher_tuning_dir(out, setting), [get_task(t) for t in scfg.data.tasks]
    if stage_status(STAGES, TEACHERS, teacher_setting(scfg, setting), folder)[0] != "done":
        return None
    metrics = {t.name: read_json(folder / "teachers" / t.name / "metrics.json") for t in tasks}
    entries = {t.name: _task_entry(t, metrics[t.name]["dev"]) for t in tasks}
    return {
        "average": statistics.mean(e["score"] for e in entries.values()),
        "tasks": entries,
        "wall_s": sum(m["wall_s"] for m in metrics.values()),
        "run_dir": str(folder),
    }


def tuning_run(cfg: RunConfig, out: Path, variant: str, setting: dict[str, Any]) -> dict[str, Any] | None:
    """The finished tuning run of `variant` (or TEACHERS) at `setting` on the first seed, from its folder, else from
    results.json's "tuning_runs" when that holds the same run; None while it is not finished."""
    key = tuning_run_key(cfg, variant, out, setting)
    if variant == TEACHERS:
        run = _teacher_tuning_run(cfg, out, setting)
        run = None if run is None else {"variant": TEACHERS, "seed": TUNE_SEED, **run}
    else:
        run = collect_run(seed_config(cfg, TUNE_SEED), out, TUNE_SEED, variant, setting)
    if run is not None:
        return {"setting": setting, **run, "key": key}
    return _recorded_tuning_run(
        out, variant, key, legacy_keys(functools.partial(tuning_run_key, cfg, variant, out, setting))
    )


def record_tuning_run(out: Path, run: dict[str, Any], legacy: tuple[str, ...] = ()) -> None:
    """Add a finished tuning run to results.json's "tuning_runs" (the rest of the file as it is), unless it is there:
    also one finished before, in its folder (a call killed before recording it, or made by an older version). One
    recorded under a `legacy` key of it (`legacy_keys`) is replaced by it."""
    with results_lock(out):
        if any((r["variant"], r["key"]) == (run["variant"], run["key"]) for r in recorded_tuning_runs(out)):
            return
        path = out / "results.json"
        results = read_json(path) if path.is_file() else {"runs": []}
        kept = [r for r in results.get("tuning_runs", []) if r["variant"] != run["variant"] or r["key"] not in legacy]
        results["tuning_runs"] = [*kept, run]
        write_json(path, results)


def tuned_choice(cfg: RunConfig, variant: str, out: Path) -> dict[str, Any] | None:
    record = tuning_record(cfg, variant, out)
    return None if record is None else record["chosen"]


def tuning_done(cfg: RunConfig, variant: str, out: Path, grid: dict[str, list[Any]]) -> bool:
    """Whether `variant` needs no tuning runs: no grid for it, or a valid record over this very grid."""
    record, mine = tuning_record(cfg, variant, out), variant_grid(variant, grid)
    return not mine or (record is not None and record["grid"] == mine)


def make_tuning_record(cfg: RunConfig, variant: str, out: Path, grid: dict[str, list[Any]]) -> dict[str, Any] | None:
    """The record once every setting of the variant's grid has run on TUNE_SEED (None before): each setting's run
    and the chosen setting, the best dev average."""
    runs = []
    for setting in settings(variant_grid(variant, grid)):
        run = tuning_run(cfg, out, variant, setting)
        if run is None:
            return None
        runs.append(run)
    best = max(runs, key=lambda r: r["average"])  # max keeps the first of equals: the grid's order
    return {
        "variant": variant,
        "seed": TUNE_SEED,
        "grid": variant_grid(variant, grid),
        "chosen": best["setting"],
        "base": tuning_base(cfg, variant, out),
        "runs": runs,
    }


def made(cfg: RunConfig, out: Path, variant: str, setting: dict[str, Any]) -> bool:
    """Whether the tuning run of `setting` is finished, or is the finished untuned run (to be hard-linked)."""
    scfg = seed_config(cfg, TUNE_SEED)
    if tuning_run(cfg, out, variant, setting) is not None:
        return True
    same = run_key(scfg, variant, out, setting=setting) == run_key(scfg, variant, out, setting={})
    return same and collect_run(scfg, out, TUNE_SEED, variant, {}) is not None


def tune(cfg: RunConfig, out: Path, variants: list[str], grid: dict[str, list[Any]], accelerator, write) -> None:
    """Run the missing settings of every variant's grid on TUNE_SEED and record each variant's choice."""
    todo = [v for v in variants if not tuning_done(cfg, v, out, grid)]
    if not todo:
        return
    scfg = seed_config(cfg, TUNE_SEED)
    base, _ = run_dirs(out, TUNE_SEED, "single")
    run_stages(STAGES, scfg, base, accelerator, target="distill" if any(v != "multi" for v in todo) else "teachers")
    for variant in todo:
        for setting in settings(variant_grid(variant, grid)):
            run = tuning_run(cfg, out, variant, setting)
            if run is None:
                accelerator.print(f"reproduce-glue: tuning {variant} on seed {TUNE_SEED}: {setting_label(setting)}")
                run_variant(scfg, out, TUNE_SEED, variant, accelerator, setting)
                run = tuning_run(cfg, out, variant, setting)
            if accelerator.is_main_process:
                record_tuning_run(
                    out, run, legacy_keys(functools.partial(tuning_run_key, cfg, variant, out, setting))()
                )
                write()
        if accelerator.is_main_process:
            record = make_tuning_record(cfg, variant, out, grid)
            with results_lock(out):
                write_json(tuning_file(out, variant), record)
            scores = ", ".join(f"{setting_label(r['setting'])}: {r['average']:.2f}" for r in record["runs"])
            accelerator.print(f"reproduce-glue: {variant} tuned: {scores}; chosen {setting_label(record['chosen'])}")
        accelerator.wait_for_everyone()


# ---- tuning the teachers ------------------------------------------------------------------------------------------
# `--tune teachers.lr=2e-5,5e-5,1e-4` trains the teachers at every setting on the first seed, in
# OUT/runs/seed-1/tune/teachers/<setting>/, and keeps for each task the setting whose teacher has the best dev score
# (OUT/tuning/teachers.json). Every seed's teachers then train with it, as `teachers.per_task` (seed 1's are the
# tuning runs' own teachers, hard-linked), so Single is each task's best teacher and every student learns from them.
# The teachers are tuned before the students, whose tuning then runs on the tuned teachers.


def teacher_setting(cfg: RunConfig, setting: dict[str, Any]) -> RunConfig:
    """`cfg` with one setting of the teachers' grid for every task: the grid's keys win over per-task ones."""
    keys = dict.fromkeys(setting)
    per_task = {t: dataclasses.replace(own, **keys) for t, own in cfg.teachers.per_task.items()}
    given = {k: v for k, v in setting.items() if v is not None}
    return dataclasses.replace(cfg, teachers=dataclasses.replace(cfg.teachers, per_task=per_task, **given))


def with_tuned_teachers(cfg: RunConfig, out: Path) -> RunConfig:
    """`cfg` with each task's chosen teacher setting as its `teachers.per_task` entry, when OUT holds a valid
    record of the teachers' tuning; else `cfg`."""
    record = tuning_record(cfg, TEACHERS, out)
    if record is None:
        return cfg
    per_task = dict(cfg.teachers.per_task)
    for task, setting in record["chosen"].items():
        per_task[task] = dataclasses.replace(per_task.get(task, TeacherTaskConfig()), **setting)
    return dataclasses.replace(cfg, teachers=dataclasses.replace(cfg.teachers, per_task=per_task))


def teacher_tuning_dir(out: Path, setting: dict[str, Any]) -> Path:
    return out / "runs" / f"seed-{TUNE_SEED}" / "tune" / TEACHERS / setting_label(setting)


def teachers_tuned(cfg: RunConfig, out: Path, grid: dict[str, list[Any]]) -> bool:
    """Whether the teachers need no tuning runs: no grid, or a valid record over this very grid."""
    record = tuning_record(cfg, TEACHERS, out)
    return not grid or (record is not None and record["grid"] == grid)


def teacher_made(cfg: RunConfig, out: Path, setting: dict[str, Any]) -> bool:
    """Whether the teachers of `setting` are trained, in their tuning folder or, as the config's own teachers, in the
    first seed's teachers folder (to be hard-linked)."""
    scfg = seed_config(cfg, TUNE_SEED)
    tcfg, stage = teacher_setting(scfg, setting), STAGES[TEACHERS]
    if tuning_run(cfg, out, TEACHERS, setting) is not None:
        return True
    base = run_dirs(out, TUNE_SEED, "single")[0]
    same = stage.config_subset(tcfg) == stage.config_subset(scfg)
    return same and stage_status(STAGES, TEACHERS, scfg, base)[0] == "done"


def make_teacher_record(cfg: RunConfig, out: Path, grid: dict[str, list[Any]]) -> dict[str, Any] | None:
    """The record once the teachers of every setting are trained (None before): each setting's dev scores, and per
    task the setting of its best teacher (the first of the grid on a tie)."""
    runs, tasks = [], [get_task(t) for t in cfg.data.tasks]
    for setting in settings(grid):
        run = tuning_run(cfg, out, TEACHERS, setting)
        if run is None:
            return None
        runs.append({k: run[k] for k in ("setting", "average", "tasks", "wall_s", "run_dir")})
    chosen = {t.name: max(runs, key=lambda r: r["tasks"][t.name]["score"])["setting"] for t in tasks}
    base = tuning_base(cfg, TEACHERS, out, grid)
    return {"variant": TEACHERS, "seed": TUNE_SEED, "grid": grid, "chosen": chosen, "base": base, "runs": runs}


def tune_teachers(cfg: RunConfig, out: Path, grid: dict[str, list[Any]], accelerator) -> None:
    """Train the teachers of every setting of `grid` on TUNE_SEED (those the first seed already has are
    hard-linked) and record each task's choice. `cfg`: without a choice in it (the config's own settings)."""
    if teachers_tuned(cfg, out, grid):
        return
    scfg = seed_config(cfg, TUNE_SEED)
    base, _ = run_dirs(out, TUNE_SEED, "single")
    run_stages(STAGES, scfg, base, accelerator, target="data")
    for setting in settings(grid):
        tcfg, folder = teacher_setting(scfg, setting), teacher_tuning_dir(out, setting)
        run = tuning_run(cfg, out, TEACHERS, setting)
        if run is None:  # not here, nor in results.json
            accelerator.print(f"reproduce-glue: tuning the teachers on seed {TUNE_SEED}: {setting_label(setting)}")
            if accelerator.is_main_process:
                link_shared(tcfg, base, folder, ("data",))
                for task in scfg.data.tasks:
                    adopt_teacher(scfg, base, tcfg, folder, task)
            accelerator.wait_for_everyone()
            run_stages(STAGES, tcfg, folder, accelerator, target=TEACHERS)
            run = tuning_run(cfg, out, TEACHERS, setting)
        if accelerator.is_main_process:
            record_tuning_run(out, run, legacy_keys(functools.partial(tuning_run_key, cfg, TEACHERS, out, setting))())
        accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        record = make_teacher_record(cfg, out, grid)
        with results_lock(out):
            write_json(tuning_file(out, TEACHERS), record)
        chosen = "; ".join(f"{t} {setting_label(s)}" for t, s in record["chosen"].items())
        accelerator.print(f"reproduce-glue: teachers tuned, per task: {chosen}")
    accelerator.wait_for_everyone()


def adopt_tuned_teachers(cfg: RunConfig, out: Path, accelerator) -> None:
    """The first seed's teachers folder gets the chosen teachers from their tuning folders. `cfg`: with the choice
    in it (`with_tuned_teachers`)."""
    record = tuning_record(cfg, TEACHERS, out)
    if record is None:
        return
    scfg = seed_config(cfg, TUNE_SEED)
    base, _ = run_dirs(out, TUNE_SEED, "single")
    run_stages(STAGES, scfg, base, accelerator, target="data")
    if accelerator.is_main_process:
        for task, setting in record["chosen"].items():
            adopt_teacher(teacher_setting(scfg, setting), teacher_tuning_dir(out, setting), scfg, base, task)
    accelerator.wait_for_everyone()


# ---- the plan ------------------------------------------------------------------------------------------------------


def _train_rows(cfg: RunConfig, out: Path, seeds: list[int]) -> dict[str, int] | None:
    for seed in seeds:
        sizes = out / "runs" / f"seed-{seed}" / "teachers" / "data" / "sizes.json"
        if sizes.is_file():
            return {task: s["train"]["rows"] for task, s in read_json(sizes).items()}
    return None


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
    import torch

    rows, recorded, grid = _train_rows(cfg, out, seeds), recorded_runs(out), grid or {}
    measured: dict[str, list[tuple[float, set[int | None]]]] = {}
    now = torch.get_num_threads()
    finished: dict[tuple[str, int], bool] = {}
    for seed in seeds:
        for variant in variants:
            run = finished_run(seed_config(cfg, seed), out, seed, variant, recorded)
            finished[(variant, seed)] = run is not None
            if run is not None:  # a student's time as BAM's would be: options cost more
                kind = "teachers" if reports_teachers(variant) else "student"
                factor = 1.0 if kind == "teachers" else cost_factor(run["config"]["student"])
                measured.setdefault(kind, []).append((run["wall_s"] / factor, run_threads(run)))
    examples = None
    if rows is not None:
        teacher_ex = sum(cfg.teachers.for_task(t).epochs * n for t, n in rows.items())  # a task's own epochs
        student_ex = cfg.student.epochs * sum(rows.values())
        examples = {"teachers": teacher_ex, "student": student_ex}

    def expect(kind: str, factor: float = 1.0) -> tuple[float | None, str]:
        more = f" × {factor:g} for its option" if factor != 1 else ""
        if measured.get(kind):  # runs at this call's torch threads, when there are: wall time depends on them
            same = [seconds for seconds, threads in measured[kind] if threads == {now}]
            seconds = same or [seconds for seconds, _ in measured[kind]]
            threads = f"{now} torch thread{'s' if now != 1 else ''}"
            where = f" at {threads}" if same else f", at other torch threads than this call's {threads}"
            return statistics.median(seconds) * factor, "measured" + where + more
        if examples is not None:
            return examples[kind] / ASSUMED_RATE * factor, f"assumed {ASSUMED_RATE:.0f} ex/s{more}"
        return None, "unknown until the data stage has run"

    def student_cost(variant: str, setting: dict[str, Any] | None = None) -> float:
        return cost_factor(to_dict(variant_config(seed_config(cfg, TUNE_SEED), variant, out, setting=setting).student))

    teachers_pending = not teachers_tuned(cfg, out, teacher_grid or {})
    # what the teachers' choice changes: every run learning from them (not Multi's), and a student's tuning record,
    # which holds for the teachers it was made with (tuned anew once they are, maybe, others)
    learns = {v: learns_from_teachers(cfg, v, out) for v in variants}
    # a tuning record counts the teachers when the variant's untuned config learns from them, whatever it chose
    record_learns = {v: learns_from_teachers(cfg, v, out, tuned=False) for v in variants}
    steps = []
    untuned = [
        v
        for v in variants
        if not tuning_done(cfg, v, out, grid) or (teachers_pending and record_learns[v] and variant_grid(v, grid))
    ]
    learns |= {v: learns[v] or record_learns[v] for v in untuned}  # tuned anew: perhaps to a choice that learns
    if teachers_pending:  # first: what the first seed's teachers will be depends on them
        for setting in settings(teacher_grid):
            seconds, how = expect("teachers")
            done = teacher_made(unchosen or cfg, out, setting)
            steps.append({"seed": TUNE_SEED, "variant": f"tune teachers {setting_label(setting)}", "done": done,
                          "seconds": seconds, "how": how})  # fmt: skip
    tuning = []  # after the first seed's teachers, before any run
    for variant in untuned:
        for setting in settings(variant_grid(variant, grid)):
            seconds, how = expect("student", student_cost(variant, setting))
            done = made(cfg, out, variant, setting)
            name = f"tune {variant} {setting_label(setting)}"
            tuning.append({"seed": TUNE_SEED, "variant": name, "done": done, "seconds": seconds, "how": how,
                           "learns": learns[variant]})  # fmt: skip
    for seed in seeds:
        scfg = seed_config(cfg, seed)
        base = out / "runs" / f"seed-{seed}" / "teachers"
        needs_distill = any(v not in ("single", "multi") for v in variants)
        target = "distill" if needs_distill else "teachers"
        done = stage_status(STAGES, target, scfg, base)[0] == "done" or (
            all(finished[(v, seed)] for v in variants) and not (seed == TUNE_SEED and untuned)
        )
        seconds, how = expect("teachers")
        steps.append({"seed": seed, "variant": "teachers", "done": done, "seconds": seconds, "how": how,
                      "learns": any(learns.values())})  # fmt: skip
        if seed == TUNE_SEED:
            steps += tuning
        for variant in variants:
            if variant == "single":
                continue
            done = finished[(variant, seed)] and variant not in untuned  # tuned: maybe another setting
            if reports_teachers(variant):
                seconds, how = expect("teachers")
            else:
                seconds, how = expect("student", student_cost(variant))
            if variant in untuned and seed == TUNE_SEED:
                seconds, how = 0.0, "the chosen tuning run, hard-linked"
            elif variant in untuned:
                how += "; at most, once tuned"
            steps.append({"seed": seed, "variant": variant, "done": done, "seconds": seconds, "how": how,
                          "learns": learns[variant]})  # fmt: skip
    if teachers_pending:  # every run that learns from them is made anew from the tuned teachers (unless each task
        tuned = len(settings(teacher_grid))  # keeps the config's); Multi's hold
        for step in steps[tuned:]:
            if not step.get("learns", True):
                continue
            if step["variant"] == "teachers" and step["seed"] == TUNE_SEED:
                step["seconds"], step["how"] = 0.0, "the tuned teachers, hard-linked"
            else:
                step["how"] = step["how"] + "; once the teachers are tuned"
            step["done"] = False
    return steps


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


# ---- statistics and the table ------------------------------------------------------------------------------------


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


def summarise(runs: list[dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
    """Per variant: median, min and max per task and of the average; gains and tests against Single and Multi."""
    by_variant: dict[str, dict[int, dict[str, Any]]] = {}
    for run in runs:
        by_variant.setdefault(run["variant"], {})[run["seed"]] = run
    columns = [*tasks, "average"]

    def scores(variant: str, column: str, seeds: list[int]) -> list[float]:
        get = (lambda r: r["average"]) if column == "average" else (lambda r: r["tasks"][column]["score"])
        return [get(by_variant[variant][s]) for s in seeds]

    summary: dict[str, Any] = {}
    for variant, seeded in by_variant.items():
        seeds = sorted(seeded)
        entry: dict[str, Any] = {"seeds": seeds, "median": {}, "min": {}, "max": {}}
        for column in columns:
            values = scores(variant, column, seeds)
            entry["median"][column] = statistics.median(values)
            entry["min"][column], entry["max"][column] = min(values), max(values)
        for ref in ("single", "multi"):
            if ref == variant or ref not in by_variant:
                continue
            common = sorted(set(seeds) & set(by_variant[ref]))
            gain = {c: entry["median"][c] - statistics.median(scores(ref, c, sorted(by_variant[ref]))) for c in columns}
            raw = {c: paired_p(scores(variant, c, common), scores(ref, c, common)) for c in tasks}
            entry[f"vs_{ref}"] = {
                "gain": gain,
                "p": raw,
                "p_holm": holm(raw),
                "p_average": paired_p(scores(variant, "average", common), scores(ref, "average", common)),
                "paired_seeds": common,
            }
        summary[variant] = entry
    return summary


def _cell(entry: dict[str, Any], column: str, task: TaskSpec | None, runs: list[dict[str, Any]]) -> str:
    median = entry["median"][column]
    spread = f" [{entry['min'][column]:.1f}–{entry['max'][column]:.1f}]" if len(entry["seeds"]) > 1 else ""
    if task is not None and "f1" in task.metrics and task.main_metric != "f1":  # MRPC, QQP: F1/acc
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


def render_table(
    runs: list[dict[str, Any]], tasks: list[str], command: str, machine: str, tuning: dict[str, Any] | None = None
) -> str:
    summary = summarise(runs, tasks)
    specs = {t: get_task(t) for t in tasks}
    head = ["Model", "Avg", *[_column_name(specs[t]) for t in tasks], "Δ Single", "Δ Multi", "seeds"]
    lines = [
        "# GLUE dev: Single vs Multi vs BAM, and ablations",
        "",
        f"Command: `{command}`",
        f"Machine: {machine}",
        "",
        "Median over seeds, [min–max] beside it. Scores: CoLA MCC, STS-B Spearman, MRPC and QQP F1/accuracy, "
        "others accuracy; Avg = mean over tasks of the per-task score (accuracy for MRPC and QQP), per run, then "
        "the median. Δ = median gain of the average over Single / Multi. Significance: paired t-test across seeds "
        "(same seed = same teachers), two-sided, Holm–Bonferroni over the tasks for per-task cells; "
        "* p < 0.05 vs Single, † p < 0.05 vs Multi.",
        "",
    ]

    def table(variants: list[str]) -> list[str]:
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for v in variants:
            if v not in summary:
                continue
            e = summary[v]
            mine = [r for r in runs if r["variant"] == v]
            cells = [EVERY[v][0], _cell(e, "average", None, mine) + _mark(e, "average")]
            cells += [_cell(e, t, specs[t], mine) + _mark(e, t) for t in tasks]
            for ref in ("single", "multi"):
                test = e.get(f"vs_{ref}")
                cells.append("" if test is None else f"{test['gain']['average']:+.1f}")
            cells.append(str(len(e["seeds"])))
            rows.append("| " + " | ".join(cells) + " |")
        return rows

    lines += ["## Table 1: Single, Multi, Single→Multi", ""] + table(
        ["single", "multi", "single-single", "multi-multi", "bam", "bam-ft"]
    )
    if any(v in summary for v in ABLATIONS):
        lines += ["", "## Ablations (each removes one part of BAM)", ""] + table(["bam", *ABLATIONS])
    if any(v in summary for v in OPTIONS):
        lines += ["", "## Multitask options (one seed is enough)", ""] + table(["bam", *OPTIONS])
    lines += ["", "## Paired tests per task (Holm-adjusted p; raw p in results.json)", ""]
    lines += ["| Model | vs | " + " | ".join(_column_name(specs[t]) for t in tasks) + " | Avg (unadjusted) |"]
    lines += ["|" + "---|" * (len(tasks) + 3)]
    for v, e in summary.items():
        for ref in ("single", "multi"):
            test = e.get(f"vs_{ref}")
            if test is None:
                continue
            ps = [_p(test["p_holm"][t]) for t in tasks] + [_p(test["p_average"])]
            lines.append(f"| {EVERY[v][0]} | {ref} | " + " | ".join(ps) + " |")
    lines += ["", "n/a: fewer than 2 paired seeds, or identical differences on every seed.", ""]
    tuning = dict(tuning or {})
    teachers = tuning.pop(TEACHERS, None)
    if teachers:
        lines += [f"## Teachers tuned on dev (seed {TUNE_SEED}; each task's dev score per setting, the chosen in bold)"]
        lines += ["", "| Setting | " + " | ".join(_column_name(specs[t]) for t in tasks) + " | Avg |"]
        lines += ["|" + "---|" * (len(tasks) + 2)]
        for r in teachers["runs"]:
            cells = [f"{r['tasks'][t]['score']:.1f}" for t in tasks]
            cells = [f"**{c}**" if r["setting"] == teachers["chosen"][t] else c for c, t in zip(cells, tasks)]
            lines.append(f"| {setting_label(r['setting'])} | " + " | ".join(cells) + f" | {r['average']:.1f} |")
        lines += [
            "",
            "Every seed's teacher of a task trains with its chosen setting; Single reports those teachers.",
            "",
        ]
    if tuning:
        lines += [f"## Tuned on dev (seed {TUNE_SEED}; dev average per setting, the chosen one in bold)", ""]
        lines += ["| Model | " + " | ".join(["setting"] * max(len(r["runs"]) for r in tuning.values())) + " |"]
        lines += ["|" + "---|" * (1 + max(len(r["runs"]) for r in tuning.values()))]
        for v, record in tuning.items():
            cells = []
            for r in record["runs"]:
                cell = f"{setting_label(r['setting'])}: {r['average']:.1f}"
                cells.append(f"**{cell}**" if r["setting"] == record["chosen"] else cell)
            lines.append(f"| {EVERY[v][0]} | " + " | ".join(cells) + " |")
        lines += ["", "Every seed of a tuned model runs with its chosen setting; the others keep the config's.", ""]
    return "\n".join(lines)


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3f}"


def _column_name(task: TaskSpec) -> str:
    return task.glue_dir


# ---- submission files ----------------------------------------------------------------------------------------------


def read_test_split(task: TaskSpec, path: Path) -> tuple[list[str], list[tuple[str, str | None]]]:
    """A GLUE test file: a header with `index` (or `id`) and the task's text columns; no quoting."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines:
        raise ValueError(f"{path}: line 1: empty file; expected a header with 'index' and {list(task.text_columns)}")
    header = lines[0].split("\t")
    columns = list(task.text_columns)
    key = "index" if "index" in header else "id"
    for column in (key, *columns):
        if column not in header:
            raise ValueError(f"{path}: line 1: header lacks column {column!r}; header found: {header}")
    ids, texts = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < len(header):
            raise ValueError(f"{path}: line {number}: {len(cells)} fields, expected {len(header)}")
        ids.append(cells[header.index(key)])
        pair = [cells[header.index(c)] for c in columns]
        texts.append((pair[0], pair[1] if len(pair) > 1 else None))
    return ids, texts


def write_submission(run: dict[str, Any], cfg: RunConfig, data_dir: Path, out_dir: Path, accelerator) -> list[str]:
    """GLUE leaderboard files for the tasks with a test.tsv: `index<TAB>prediction` as the leaderboard expects."""
    from pipeline.core.model import load_tokenizer
    from pipeline.core.predict import load_student, predict_texts

    written = []
    student = Path(run["run_dir"]) / "student" / "model"
    for name in cfg.data.tasks:
        task = get_task(name)
        files = [("test", task.glue_dir)]  # MNLI: matched, mismatched and the AX diagnostic set
        if name == "mnli":
            files = [("test_matched", "MNLI-m"), ("test_mismatched", "MNLI-mm"), ("diagnostic", "AX")]
        for split, label in files:
            path = data_dir / task.glue_dir / f"{split}.tsv"
            if split == "diagnostic":
                path = data_dir / "diagnostic" / "diagnostic.tsv"
            if not path.is_file():
                continue
            model_dir = student if run["variant"] != "single" else Path(run["run_dir"]) / "teachers" / name / "model"
            model = load_student(model_dir).to(accelerator.device)
            ids, texts = read_test_split(task, path)
            results = predict_texts(
                model, load_tokenizer(str(model_dir)), task, texts, accelerator, max_length=cfg.data.max_length
            )
            rows = ["index\tprediction"]
            for i, r in zip(ids, results):
                if task.kind == "regression":
                    lo, hi = task.label_range
                    rows.append(f"{i}\t{min(max(r['score'], lo), hi):.3f}")
                else:
                    index = task.labels.index(r["label"])
                    rows.append(f"{i}\t{task.tsv_labels[index] if task.tsv_labels else index}")
            write_text(out_dir / f"{label}.tsv", "\n".join(rows) + "\n")
            written.append(f"{label}.tsv")
    return written


# ---- the command -------------------------------------------------------------------------------------------------


def reproduce(
    cfg: RunConfig,
    out: Path,
    seeds: int,
    variants: list[str],
    accelerator,
    command: str,
    dry_run: bool = False,
    grid: dict[str, list[Any]] | None = None,
    teacher_grid: dict[str, list[Any]] | None = None,
    only: list[int] | None = None,
) -> dict[str, Any] | None:
    """Run (or, with dry_run, only print) every variant over seeds 1..`seeds` (or the `only` of them; the table
    reports every finished run of the N): the teachers first tuned per task over `teacher_grid`, then each student
    variant over `grid` (`parse_tune`), when they are given; returns the results."""
    every = parse_seeds(seeds)
    seed_list, grid, teacher_grid = sorted(only) if only else every, grid or {}, teacher_grid or {}
    if not set(seed_list) <= set(every):
        raise ReproduceError(f"--only-seeds: {seed_list} not among the seeds 1..{seeds} of --seeds {seeds}")
    check_grid(cfg, out, variants, grid)
    if accelerator.is_main_process and not dry_run:
        with results_lock(out):
            restore_tuning(out)
    accelerator.wait_for_everyone()
    record = tuning_record(cfg, TEACHERS, out)  # the teachers' choice, when OUT has one, replaces per-task values too
    tuned_keys = {**(record["grid"] if record is not None else {}), **teacher_grid}
    for task, own in cfg.teachers.per_task.items():  # the grid's values replace a task's own for its keys
        for key in sorted(set(tuned_keys) & set(own.given())):
            accelerator.print(
                f"reproduce-glue: teachers.per_task.{task}.{key} ({own.given()[key]}) is not used: "
                f"the teachers are tuned over {key} {tuned_keys[key]}"
            )
    untuned, cfg = cfg, with_tuned_teachers(cfg, out)  # a choice made before holds (until a new grid)
    tuning = not teachers_tuned(untuned, out, teacher_grid) or not all(tuning_done(cfg, v, out, grid) for v in variants)
    if tuning and TUNE_SEED not in seed_list:  # every other seed runs with the choice made on the first
        accelerator.print(f"reproduce-glue: tuning is pending: seed {TUNE_SEED} runs first (it tunes on its dev)")
        seed_list = [TUNE_SEED, *seed_list]
    with contextlib.ExitStack() as claimed, contextlib.ExitStack() as tuning_claim:
        refused = None
        if accelerator.is_main_process and not dry_run:
            try:
                claim_seeds(out, seed_list, claimed, tuning_claim if tuning else None)
            except ReproduceError as err:
                refused = str(err)
            else:
                with results_lock(out):
                    rekey(cfg, out)
        if accelerator.num_processes > 1:  # every rank stops, not only the main one
            refused = broadcast_object_list([refused])[0]
        if refused is not None:
            raise ReproduceError(refused)
        steps = plan(cfg, out, seed_list, variants, grid, teacher_grid, untuned)
        chosen = [f"{v} {setting_label(c)}" for v in variants if (c := tuned_choice(cfg, v, out)) is not None]
        if (record := tuning_record(cfg, TEACHERS, out)) is not None:
            chosen.insert(0, "teachers " + ", ".join(f"{t} {setting_label(s)}" for t, s in record["chosen"].items()))
        which = f"{seeds} seeds" if seed_list == every else f"seeds {', '.join(map(str, seed_list))} of {seeds}"
        accelerator.print(
            f"reproduce-glue: {len(variants)} variants × {which} in {out}\n"
            + (f"  tuned on seed {TUNE_SEED} dev (OUT/tuning/): {'; '.join(chosen)}\n" if chosen else "")
            + format_plan(steps)
        )
        if dry_run:
            return None
        write = functools.partial(write_results, cfg, out, every, variants, command)
        if TUNE_SEED in seed_list:
            tune_teachers(untuned, out, teacher_grid, accelerator)
            cfg = with_tuned_teachers(untuned, out)
            adopt_tuned_teachers(cfg, out, accelerator)
            write = functools.partial(write_results, cfg, out, every, variants, command)
            tune(cfg, out, variants, grid, accelerator, write)
        tuning_claim.close()  # the choice is made: calls for other seeds may start
        recorded = recorded_runs(out)
        for seed in seed_list:
            scfg = seed_config(cfg, seed)
            pending = [v for v in variants if finished_run(scfg, out, seed, v, recorded) is None]
            if not pending:
                continue
            base = out / "runs" / f"seed-{seed}" / "teachers"
            if accelerator.is_main_process:  # tokenised once for every seed
                for other in (s for s in every if s != seed):
                    try:
                        if link_shared(scfg, out / "runs" / f"seed-{other}" / "teachers", base, ("data",)):
                            break  # done here: from that seed, or before
                    except FileNotFoundError:  # being made anew by the call that holds that seed: tokenised here
                        pass
            accelerator.wait_for_everyone()
            needs_distill = any(v not in ("single", "multi") for v in pending)
            run_stages(STAGES, scfg, base, accelerator, target="distill" if needs_distill else "teachers")
            for variant in pending:
                if variant == "single":
                    continue
                accelerator.print(f"reproduce-glue: seed {seed}, {variant}")
                run_variant(scfg, out, seed, variant, accelerator)
                if accelerator.is_main_process:
                    write()
        results = write() if accelerator.is_main_process else None
    if accelerator.is_main_process and cfg.data.data_dir and results["runs"]:
        best = _best_run(results["runs"])
        written = []
        if best is not None and Path(best["run_dir"]).is_dir():  # a run known only from results.json has no model here
            written = write_submission(best, cfg, Path(cfg.data.data_dir), out / "submission", accelerator)
        if written:
            accelerator.print(f"reproduce-glue: submission files of {best['variant']} seed {best['seed']}: {written}")
    return results


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
        for task in scfg.data.tasks:
            tcfg, tdir = task_config(vcfg, task), run_dir / task
            run_stages(STAGES, tcfg, tdir, accelerator, target="data")
            if accelerator.is_main_process:
                adopt_teacher(scfg, base, tcfg, tdir, task)  # the seed's teacher, not a new one, when it is the same
            accelerator.wait_for_everyone()
            run_stages(STAGES, tcfg, tdir, accelerator, target="report")
        return
    shared = ("data",) if variant in PARENT else SHARED if variant != "multi" else ("data", "teachers")
    if accelerator.is_main_process:
        link_shared(vcfg, base, run_dir, shared)
        if not reports_teachers(variant):
            seed_dir = out / "runs" / f"seed-{seed}"
            made = [seed_dir / variant, *sorted((seed_dir / "tune" / variant).glob("*"))]
            for other in (d for d in made if d != run_dir and d.is_dir()):
                link_shared(vcfg, other, run_dir, tuple(STAGES))
    accelerator.wait_for_everyone()
    run_stages(STAGES, vcfg, run_dir, accelerator, target="teachers" if reports_teachers(variant) else "report")


def rekey(cfg: RunConfig, out: Path) -> None:
    """The students' records keyed in an older spelling (`LEGACY`) that still hold for `cfg` — results.json's runs,
    tuning runs and tuning records, and OUT/tuning/'s files — written back with today's keys: before teachers tuned
    anew change what the older spelling would be (Multi's included the teachers', today's does not)."""

    def new_key(recorded: Any, make: Callable[..., str]) -> str | None:
        key = make()
        return key if recorded != key and same_key(recorded, key, legacy_keys(make)) else None

    path = out / "results.json"
    results, changed = read_json(path) if path.is_file() else {}, False
    for run in results.get("runs", []):
        if run.get("variant") in EVERY and "key" in run:
            key = new_key(run["key"], functools.partial(run_key, seed_config(cfg, run["seed"]), run["variant"], out))
            if key is not None:
                run["key"], changed = key, True
    for run in results.get("tuning_runs", []):
        if run.get("variant") in EVERY:
            key = new_key(run["key"], functools.partial(tuning_run_key, cfg, run["variant"], out, run["setting"]))
            if key is not None:
                run["key"], changed = key, True
    files = {f.stem: read_json(f) for f in sorted((out / "tuning").glob("*.json"))} if (out / "tuning").is_dir() else {}
    for where, records in (("results", results.get("tuning", {})), ("files", files)):
        for variant, record in records.items():
            if variant not in EVERY:
                continue
            base = new_key(
                record.get("base"), functools.partial(tuning_base, cfg, variant, out, record.get("grid", {}))
            )
            if base is None:
                continue
            record["base"] = base
            if where == "files":
                write_json(tuning_file(out, variant), record)
            changed = True
    if changed and path.is_file():
        write_json(path, results)


def restore_tuning(out: Path) -> None:
    """Tuning records that results.json holds but OUT/tuning/ does not (e.g. OUT made anew from a committed
    results.json): written back, so its tuned runs keep their keys."""
    for variant, record in _recorded_tuning(out).items():
        if not tuning_file(out, variant).is_file():
            write_json(tuning_file(out, variant), record)


def _best_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best variant by median average among those that make one model for every task (a student); of its
    seeds, the run with the highest dev average."""
    runs = [r for r in runs if not reports_teachers(r["variant"]) and r["variant"] != "single-single"]
    if not runs:
        return None
    variants = {r["variant"] for r in runs}
    medians = {v: statistics.median(r["average"] for r in runs if r["variant"] == v) for v in variants}
    variant = max(medians, key=medians.get)
    return max((r for r in runs if r["variant"] == variant), key=lambda r: r["average"])


def machine() -> str:
    import platform

    import torch

    return (
        f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch thread(s) in the call that wrote this "
        "(each run's own: its compute record), "
        f"{torch.cuda.device_count()} GPUs, torch {torch.__version__}, {platform.platform()}; "
        f"{time.strftime('%Y-%m-%d')}"
    )


def write_results(cfg: RunConfig, out: Path, seeds: list[int], variants: list[str], command: str) -> dict[str, Any]:
    """Gather the finished runs; write results.json, table.md and the plots (also mid-way, for what is done).

    Runs results.json already holds for variants or seeds outside this call's selection stay in it while they are
    runs of this config (same key): a call for the options alone keeps the paper's variants, so one OUT can be
    filled by several calls; a call under another config drops them rather than mixing two configs."""
    with results_lock(out):
        return _write_results(cfg, out, seeds, variants, command)


def _write_results(cfg: RunConfig, out: Path, seeds: list[int], variants: list[str], command: str) -> dict[str, Any]:
    runs, recorded = [], recorded_runs(out)
    for seed in seeds:
        for variant in variants:
            run = finished_run(seed_config(cfg, seed), out, seed, variant, recorded)
            if run is not None:
                runs.append(run)
    selected = {(v, s) for v in variants for s in seeds}
    for (variant, seed), run in recorded.items():  # kept only while they are runs of this config
        if (variant, seed) in selected or variant not in EVERY or set(run["tasks"]) != set(cfg.data.tasks):
            continue
        scfg = seed_config(cfg, seed)
        key = run_key(scfg, variant, out)
        if same_key(run["key"], key, legacy_keys(functools.partial(run_key, scfg, variant, out))):
            runs.append({**run, "key": key})
    order = list(EVERY)
    runs.sort(key=lambda r: (order.index(r["variant"]), r["seed"]))
    tasks = list(cfg.data.tasks)
    results = {
        "command": command,
        "machine": machine(),
        "tasks": tasks,
        "variants": {v: EVERY[v][0] for v in order if any(r["variant"] == v for r in runs) or v in variants},
        "runs": runs,
        "summary": summarise(runs, tasks),
        "tuning": {v: r for v in (TEACHERS, *EVERY) if (r := tuning_record(cfg, v, out)) is not None},
        "tuning_runs": recorded_tuning_runs(out),  # every finished tuning run, also of grids not finished yet
    }
    write_json(out / "results.json", results)
    if runs:
        write_text(out / "table.md", render_table(runs, tasks, command, results["machine"], results["tuning"]))
        write_plots(results, out)
    return results


def write_plots(results: dict[str, Any], out: Path) -> None:
    """plots/scores.png and training.png for the paper's variants; options.png and options-training.png for the
    multitask options beside BAM (one chart for all of them would be unreadable)."""
    from pipeline.core.plots import plot_scores, plot_training_curves

    tasks, summary = results["tasks"], results["summary"]
    first_seed = min((r["seed"] for r in results["runs"]), default=None)
    groups = (("", [v for v in EVERY if v not in OPTIONS]), ("options-", ["bam", *OPTIONS]))
    for prefix, names in groups:
        shown = [v for v in names if v in summary]
        if not shown or (prefix and not any(v in OPTIONS for v in shown)):
            continue
        medians = {
            v: {**{t: summary[v]["median"][t] for t in tasks}, "avg": summary[v]["median"]["average"]} for v in shown
        }
        spread = {
            v: {
                c if c != "average" else "avg": (summary[v]["min"][c], summary[v]["max"][c])
                for c in [*tasks, "average"]
            }
            for v in shown
        }
        several = any(len(summary[v]["seeds"]) > 1 for v in shown)
        name = "options.png" if prefix else "scores.png"
        title = "GLUE dev, median over seeds" + (" (whiskers: min–max)" if several else "")
        plot_scores(medians, out / "plots" / name, title, spread=spread)
        logs = {}
        for run in results["runs"]:
            log = Path(run["run_dir"]) / "student" / "log.jsonl"
            if run["variant"] in shown and run["seed"] == first_seed and (log.is_file() or "curve" in run):
                logs[run["variant"]] = log if log.is_file() else run["curve"]  # the folder may be gone
        if logs:
            plot_training_curves(logs, out / "plots" / f"{prefix}training.png")
