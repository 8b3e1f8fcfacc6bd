"""`reproduce(...)`: a whole reproduce-glue call (claim the seeds, tune, run every variant of every seed, write the
results), and `write_results`, which gathers the finished runs into results.json, table.md and the plots."""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import time
from pathlib import Path
from typing import Any

from accelerate.utils import broadcast_object_list

from pipeline.core.config import RunConfig
from pipeline.core.model import load_tokenizer, other_vocabulary, resolve_model_path
from pipeline.core.store import StoreError, write_json, write_text
from pipeline.core.submission import write_submission
from pipeline.core.tasks import TASKS_FILE, TaskSpec, read_task_specs, task_to_dict
from pipeline.dag import run_stages
from pipeline.experiments.choices import check_grid, tuned_choice, tuning_done, tuning_record, with_tuned_teachers
from pipeline.experiments.folders import run_dirs, seed_dir, share_data
from pipeline.experiments.plan import format_plan, plan
from pipeline.experiments.plots import keep_plotted_curves, write_plots
from pipeline.experiments.results import (
    claim_runs,
    recorded_runs,
    recorded_specs,
    recorded_tuning_runs,
    results_lock,
    shared_stages,
)
from pipeline.experiments.runs import finished_run, run_variant
from pipeline.experiments.stats import summarise
from pipeline.experiments.table import render_table
from pipeline.experiments.tuning import adopt_tuned_teachers, tune
from pipeline.experiments.variants import (
    ENSEMBLE,
    ENSEMBLE_SEEDS,
    EVERY,
    PARENT,
    SHARED,
    TEACHERS,
    TUNE_SEED,
    ReproduceError,
    parse_seeds,
    reports_teachers,
    seed_config,
    seed_stages,
    setting_label,
)
from stages import STAGES


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
    if any(v in ENSEMBLE for v in variants) and every != list(ENSEMBLE_SEEDS):
        raise ReproduceError(
            f"--variants bam-ensemble averages the teachers of seeds {ENSEMBLE_SEEDS[0]}–{ENSEMBLE_SEEDS[-1]}: "
            f"run it with --seeds {len(ENSEMBLE_SEEDS)} (got --seeds {seeds})"
        )
    seed_list, grid, teacher_grid = sorted(only) if only else every, grid or {}, teacher_grid or {}
    if not set(seed_list) <= set(every):
        raise ReproduceError(f"--only-seeds: {seed_list} not among the seeds 1..{seeds} of --seeds {seeds}")
    check_grid(cfg, out, variants, grid)
    check_parent_vocabulary(cfg, variants)
    _say_unused_per_task(cfg, out, teacher_grid, accelerator)
    untuned, cfg = cfg, with_tuned_teachers(cfg, out)  # a choice made before holds (until a new grid)
    tuning = not tuning_done(untuned, TEACHERS, out, teacher_grid) or not all(
        tuning_done(cfg, v, out, grid) for v in variants
    )
    if tuning and TUNE_SEED not in seed_list:  # every other seed runs with the choice made on the first
        accelerator.print(f"reproduce-glue: tuning is pending: seed {TUNE_SEED} runs first (it tunes on its dev)")
        seed_list = [TUNE_SEED, *seed_list]
    with contextlib.ExitStack() as claimed, contextlib.ExitStack() as tuning_claim:
        if not dry_run:
            claims = list(dict.fromkeys([*variants, *(PARENT[v] for v in variants if v in PARENT)]))
            _claim(out, seed_list, claims, claimed, tuning_claim if tuning else None, accelerator)
        steps = plan(cfg, out, seed_list, variants, grid, teacher_grid, untuned)
        which = f"{seeds} seeds" if seed_list == every else f"seeds {', '.join(map(str, seed_list))} of {seeds}"
        accelerator.print(f"reproduce-glue: {len(variants)} variants × {which} in {out}\n" + _chosen(cfg, out, variants)
                          + format_plan(steps))  # fmt: skip
        if dry_run:
            return None
        if TUNE_SEED in seed_list:
            with _shared(out, TUNE_SEED, accelerator):  # adopting tuned teachers writes into seed 1's shared folder
                cfg = _tune_all(untuned, out, variants, grid, teacher_grid, accelerator, every, command)
        tuning_claim.close()  # the choice is made: calls for other seeds may start
        write = functools.partial(write_results, cfg, out, every, variants, command)
        last = [v for v in variants if v in ENSEMBLE]  # they learn from every seed's teachers: after all the seeds
        first = [v for v in variants if v not in last] + ["single"] * bool(last)  # single: the seed's teachers
        for seed in seed_list:
            _run_seed(cfg, out, seed, every, list(dict.fromkeys(first)), accelerator, write)
        for seed in seed_list if last else []:
            _run_seed(cfg, out, seed, every, last, accelerator, write)
        results = write() if accelerator.is_main_process else None
    if accelerator.is_main_process and cfg.data.data_dir and results["runs"]:
        _submit(cfg, out, results["runs"], accelerator)
    return results


def check_parent_vocabulary(cfg: RunConfig, variants: list[str]) -> None:
    """Multi→Multi and BAM + fine-tuning start teachers from a student's model, which must read the data stage's
    token ids: refused before anything runs when `student.model` has a tokenizer of its own (else the teachers stage
    would refuse it only after the parent student has trained)."""
    derived = [v for v in variants if v in PARENT]
    student = cfg.student.model
    if not derived or student in (None, cfg.model.name_or_path) or "tiny-random" in (student, cfg.model.name_or_path):
        return
    remote = cfg.model.trust_remote_code
    teachers = load_tokenizer(resolve_model_path(cfg.model, Path()), remote).get_vocab()
    if other_vocabulary(resolve_model_path(cfg.model, Path(), student), teachers, remote):
        raise ReproduceError(
            f"--variants {','.join(derived)}: these start teachers from the {'/'.join(PARENT[v] for v in derived)} "
            f"student's model, but 'student.model' {student!r} has a tokenizer of its own (not model.name_or_path's, "
            "which tokenises the data); run them without student.model"
        )


def _say_unused_per_task(cfg: RunConfig, out: Path, teacher_grid: dict[str, list[Any]], accelerator) -> None:
    """A task's own value of a key the teachers are tuned over (by this grid, or the choice OUT holds) gives way to
    the grid's: say so."""
    record = tuning_record(cfg, TEACHERS, out)
    tuned_keys = {**(record["grid"] if record is not None else {}), **teacher_grid}
    for task, own in cfg.teachers.per_task.items():
        for key in sorted(set(tuned_keys) & set(own.given())):
            accelerator.print(
                f"reproduce-glue: teachers.per_task.{task}.{key} ({own.given()[key]}) is not used: "
                f"the teachers are tuned over {key} {tuned_keys[key]}"
            )


def _on_main_or_stop(accelerator, act) -> None:
    """`act()` on the main process; when it raises a ReproduceError, every rank stops, not only the main one."""
    refused = None
    if accelerator.is_main_process:
        try:
            act()
        except ReproduceError as err:
            refused = str(err)
    if accelerator.num_processes > 1:
        refused = broadcast_object_list([refused])[0]
    if refused is not None:
        raise ReproduceError(refused)


def _claim(
    out: Path,
    seeds: list[int],
    variants: list[str],
    claimed: contextlib.ExitStack,
    tuning: contextlib.ExitStack | None,
    accelerator,
) -> None:
    """The main process claims the runs (and the tuning) of OUT; every rank stops when it cannot."""
    _on_main_or_stop(accelerator, lambda: claim_runs(out, seeds, variants, claimed, tuning, every_variant=list(EVERY)))


@contextlib.contextmanager
def _shared(out: Path, seed: int, accelerator):
    """`seed`'s shared stages, held by the main process (`shared_stages`). A call of several processes does not wait
    for another call's (its other ranks would sit in a barrier meanwhile, which times out): every rank stops."""
    with contextlib.ExitStack() as held:
        one = accelerator.num_processes == 1
        _on_main_or_stop(accelerator, lambda: held.enter_context(shared_stages(out, seed, one, accelerator.print)))
        yield


def _chosen(cfg: RunConfig, out: Path, variants: list[str]) -> str:
    """The line on what OUT's tuning records chose (empty without any)."""
    chosen = [f"{v} {setting_label(c)}" for v in variants if (c := tuned_choice(cfg, v, out)) is not None]
    teachers = tuned_choice(cfg, TEACHERS, out)
    if teachers is not None:
        chosen.insert(0, "teachers " + ", ".join(f"{t} {setting_label(s)}" for t, s in teachers.items()))
    return f"  tuned on seed {TUNE_SEED} dev (OUT/tuning/): {'; '.join(chosen)}\n" if chosen else ""


def _tune_all(
    untuned: RunConfig,
    out: Path,
    variants: list[str],
    grid: dict[str, list[Any]],
    teacher_grid: dict[str, list[Any]],
    accelerator,
    every: list[int],
    command: str,
) -> RunConfig:
    """Tune the teachers, then every student variant, on the first seed; returns the config with the teachers'
    choice in it."""
    base = run_dirs(out, TUNE_SEED, TEACHERS)[0]
    if not tuning_done(untuned, TEACHERS, out, teacher_grid):
        run_stages(STAGES, seed_config(untuned, TUNE_SEED), base, accelerator, target="data")
        tune(untuned, out, TEACHERS, teacher_grid, accelerator)
    cfg = with_tuned_teachers(untuned, out)
    adopt_tuned_teachers(cfg, out, accelerator)
    todo = [v for v in variants if not tuning_done(cfg, v, out, grid)]
    if todo:
        target = "distill" if any(v != "multi" for v in todo) else "teachers"
        run_stages(STAGES, seed_config(cfg, TUNE_SEED), base, accelerator, target=target)
        write = functools.partial(write_results, cfg, out, every, variants, command)
        for variant in todo:
            tune(cfg, out, variant, grid, accelerator, write)
    return cfg


def _run_seed(cfg: RunConfig, out: Path, seed: int, every: list[int], variants: list[str], accelerator, write) -> None:
    """Every variant of one seed not finished yet, after the seed's shared stages that they read (its data from
    another seed's)."""
    scfg, recorded = seed_config(cfg, seed), recorded_runs(out)
    pending = [v for v in variants if finished_run(scfg, out, seed, v, recorded) is None]
    if not pending:
        return
    with _shared(out, seed, accelerator):  # another call of the seed waits here until they are done
        if accelerator.is_main_process:
            share_data(scfg, out, seed, every)
        accelerator.wait_for_everyone()
        target = max((seed_stages(v)[-1] for v in pending), key=SHARED.index)  # only what the pending variants read
        trains = SHARED.index(target) >= SHARED.index("teachers")  # else the pending variants read the data alone
        if trains and not (seed_dir(out, seed) / "teachers" / "manifests" / "teachers.json").exists():
            say_other_threads(finished_run(scfg, out, seed, "single", recorded), seed, accelerator)
        run_stages(STAGES, scfg, seed_dir(out, seed) / "teachers", accelerator, target=target)
    for variant in (v for v in pending if v != "single"):
        accelerator.print(f"reproduce-glue: seed {seed}, {variant}")
        run_variant(scfg, out, seed, variant, accelerator)
        if accelerator.is_main_process:
            write()


def say_other_threads(single: dict[str, Any] | None, seed: int, accelerator) -> None:
    """The seed's teachers are about to be trained on a CPU at another torch thread count than the recorded ones
    (`single`: results.json's run of them): sums then run in another order, so the new teachers, and the students
    that learn from them, differ slightly from those the recorded runs of the seed learnt from. Say so."""
    import torch

    compute = [c for c in ((single or {}).get("compute") or {}).values() if c]  # older records hold None
    threads = sorted({c["threads"] for c in compute if c.get("device") == "cpu" and c.get("threads")})
    if accelerator.device.type != "cpu" or not threads or threads == [torch.get_num_threads()]:
        return
    accelerator.print(
        f"reproduce-glue: seed {seed}'s recorded teachers were trained at {'/'.join(map(str, threads))} torch "
        f"thread(s), this call trains them at {torch.get_num_threads()}: on a CPU the new teachers, and what learns "
        "from them, differ slightly from those the recorded runs of this seed learnt from "
        + (
            f"(OMP_NUM_THREADS={threads[0]} trains them as they were)"
            if len(threads) == 1
            else "(its tasks at different counts)"
        )
    )


def best_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best variant by median average among those that make one model for every task (a student); of its
    seeds, the run with the highest dev average."""
    runs = [r for r in runs if not reports_teachers(r["variant"]) and r["variant"] != "single-single"]
    if not runs:
        return None
    variants = {r["variant"] for r in runs}
    medians = {v: statistics.median(r["average"] for r in runs if r["variant"] == v) for v in variants}
    variant = max(medians, key=medians.get)
    return max((r for r in runs if r["variant"] == variant), key=lambda r: r["average"])


def _submit(cfg: RunConfig, out: Path, runs: list[dict[str, Any]], accelerator) -> None:
    """Leaderboard files of the best student, when its folder is here (a run known only from results.json has no
    model) and the GLUE folder has test files."""
    best = best_run(runs)
    if best is None or not (out / best["run_dir"]).is_dir():
        return
    run_dir = out / best["run_dir"]
    models = {task: run_dir / "student" / "model" for task in cfg.data.tasks}
    specs = read_task_specs(run_dir, cfg.data.tasks)
    written = write_submission(models, specs, Path(cfg.data.data_dir), out / "submission", accelerator,
                               cfg.data.max_length)  # fmt: skip
    if written:
        accelerator.print(f"reproduce-glue: submission files of {best['variant']} seed {best['seed']}: {written}")


def machine() -> str:
    import platform

    import torch

    return (
        f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch thread(s) in the call that wrote this "
        "(each run's own: its compute record), "
        f"{torch.cuda.device_count()} GPUs, torch {torch.__version__}, {platform.platform()}; "
        f"{time.strftime('%Y-%m-%d')}"
    )


def task_specs(cfg: RunConfig, out: Path) -> list[TaskSpec]:
    """The specs of the call's tasks, as a seed's data stage wrote them (`data/tasks.json` of a seed's teachers
    folder), else as results.json holds them (its runs may all come from there)."""
    for folder in sorted((out / "runs").glob("seed-*/teachers")):
        if (folder / TASKS_FILE).is_file():
            with contextlib.suppress(StoreError):  # a folder of other tasks
                return read_task_specs(folder, cfg.data.tasks)
    specs = recorded_specs(out)
    missing = [t for t in cfg.data.tasks if t not in specs]
    if missing:
        raise ReproduceError(
            f"{out / 'results.json'}: no task specs of {missing} and no run folder that has them: a results.json "
            "of an earlier version (python scripts/migrate_results.py rewrites it), or of other tasks"
        )
    return [specs[t] for t in cfg.data.tasks]


def write_results(cfg: RunConfig, out: Path, seeds: list[int], variants: list[str], command: str) -> dict[str, Any]:
    """Gather the finished runs; write results.json, table.md and the plots (also mid-way, for what is done).

    Runs results.json already holds for variants or seeds outside this call's selection stay in it while they are
    runs of this config (same key): a call for the options alone keeps the paper's variants, so one OUT can be
    filled by several calls; a call under another config drops them rather than mixing two configs."""
    with results_lock(out):
        runs = keep_plotted_curves(_gather(cfg, out, seeds, variants))
        tasks = list(cfg.data.tasks)
        results = {
            "command": command,
            "machine": machine(),
            "tasks": tasks,
            "variants": {v: EVERY[v][0] for v in EVERY if any(r["variant"] == v for r in runs) or v in variants},
            "runs": runs,
            "summary": summarise(runs, tasks),
            "tuning": {v: r for v in (TEACHERS, *EVERY) if (r := tuning_record(cfg, v, out)) is not None},
            "tuning_runs": recorded_tuning_runs(out),  # every finished tuning run, also of grids not finished yet
        }
        specs = task_specs(cfg, out) if runs else []
        if specs:  # the table can be drawn again from results.json alone
            results["task_specs"] = [task_to_dict(spec) for spec in specs]
        write_json(out / "results.json", results)
        if runs:
            write_text(out / "table.md", render_table(runs, specs, command, results["machine"], results["tuning"]))
            write_plots(results, out)
        return results


def _gather(cfg: RunConfig, out: Path, seeds: list[int], variants: list[str]) -> list[dict[str, Any]]:
    """The finished runs of the call's selection, and results.json's runs of this config outside it, in table order."""
    recorded = recorded_runs(out)
    runs = [
        run
        for seed in seeds
        for variant in variants
        if (run := finished_run(seed_config(cfg, seed), out, seed, variant, recorded)) is not None
    ]
    selected = {(v, s) for v in variants for s in seeds}
    for (variant, seed), old in recorded.items():  # kept only while they are runs of this config
        if (variant, seed) in selected or variant not in EVERY or set(old["tasks"]) != set(cfg.data.tasks):
            continue
        if (found := finished_run(seed_config(cfg, seed), out, seed, variant, recorded)) is not None:
            runs.append(found)
    order = list(EVERY)
    return sorted(runs, key=lambda r: (order.index(r["variant"]), r["seed"]))
