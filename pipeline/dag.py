"""The staged DAG: what is done, what is stale and why, and running what is needed in order.

A stage's digest is sha256 of {its config subset, the digests of its input stages' output files, the checksums of
the files outside the run folder it reads (its optional `sources`), the run-folder format}. The stages are handed
in (`stages/`'s `STAGES`, or any mapping of names to stage modules): the engine knows none of them.
A stage is done when `manifests/<stage>.json` holds that digest, every file it lists still has its checksum, and
every stage it needs is done. A changed config key makes that stage stale, and everything downstream with it; once
it reruns, the stages after it see different input files and rerun too (identical outputs need no rerun).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from filelock import FileLock

from pipeline.core.config import ConfigError, RunConfig, mixed_precision
from pipeline.core.context import Context, Stage
from pipeline.core.locks import acquire, file_lock
from pipeline.core.model_limits import check_model_limits
from pipeline.core.store import (
    FORMAT_VERSION,
    StoreError,
    digest,
    extra_files,
    format_of,
    leftovers,
    manifest_path,
    read_manifest,
    verify_files,
    write_manifest,
)

Stages = Mapping[str, Stage]


def stage_record(stages: Stages, name: str, cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """The record a stage's digest is computed from: its config subset, the digest of each input stage's output
    files (from that stage's manifest: what is on disk now, not what its config says), the checksum of each file it
    reads from outside the run folder (`sources`, e.g. a custom task's data), and the run-folder format."""
    stage = stages[name]
    inputs = {}
    for up in stage.needs(cfg):
        manifest = read_manifest(run_dir, up)
        inputs[up] = digest(manifest["files"]) if manifest is not None else "missing"
    if hasattr(stage, "sources"):
        inputs |= stage.sources(cfg)
    record = {"stage": name, "config": stage.config_subset(cfg), "inputs": inputs, "format_version": FORMAT_VERSION}
    return {**record, "digest": digest(record)}


def nested_outputs(stages: Stages, name: str, cfg: RunConfig) -> set[str]:
    """Paths other stages declare inside this stage's folders (the report's model card in `student/model/`):
    they belong to the stage that declares them, not to this one's manifest."""
    own = stages[name].makes(cfg)
    others = {rel for other, stage in stages.items() if other != name for rel in stage.makes(cfg)}
    return {rel for rel in others if any(rel.startswith(f"{mine}/") for mine in own)}


def stage_order(stages: Stages, cfg: RunConfig, target: str | None = None) -> list[str]:
    """Topological order of `target` and everything it needs (all stages when target is None)."""
    if target is not None and target not in stages:
        raise ConfigError(f"--stage: unknown stage '{target}'; choose from {', '.join(stages)}")
    graph = {name: set(stage.needs(cfg)) for name, stage in stages.items()}
    order = list(TopologicalSorter(graph).static_order())
    if target is None:
        return order
    wanted, todo = set(), [target]
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(graph[name])
    return [n for n in order if n in wanted]


def stage_status(stages: Stages, name: str, cfg: RunConfig, run_dir: Path, memo: dict | None = None) -> tuple[str, str]:
    """("done" | "stale" | "missing", why). A stage is done only when everything it needs is done too."""
    memo = {} if memo is None else memo
    if name in memo:
        return memo[name]
    manifest = read_manifest(run_dir, name)
    upstream = [(up, stage_status(stages, up, cfg, run_dir, memo)[0]) for up in stages[name].needs(cfg)]
    not_done = [f"'{up}' is {state}" for up, state in upstream if state != "done"]
    if manifest is None:
        result = ("missing", "never finished (no manifest)")
    elif format_of(manifest) < FORMAT_VERSION:
        result = ("stale", f"made by run-folder format {format_of(manifest)}, this version writes {FORMAT_VERSION}: "
                  "it reruns (or use --out for a new folder)")  # fmt: skip
    elif format_of(manifest) > FORMAT_VERSION:  # made by a newer version: never overwritten unasked
        raise StoreError(
            f"{manifest_path(run_dir, name)}: written by run-folder format {format_of(manifest)}, newer than this "
            f"version's {FORMAT_VERSION}; use a new --out folder, or rerun with --force to redo it in format "
            f"{FORMAT_VERSION}"
        )
    elif not_done:
        result = ("stale", "needs " + ", ".join(not_done))
    elif manifest.get("digest") != (expected := stage_record(stages, name, cfg, run_dir))["digest"]:
        result = ("stale", _why_stale(manifest, expected))
    else:
        bad = verify_files(run_dir, manifest)
        if bad:
            result = ("stale", "outputs changed since it finished: " + ", ".join(bad[:5]))
        else:
            result = ("done", f"up to date (finished {manifest.get('finished', '?')})")
    memo[name] = result
    return result


def _why_stale(old: dict[str, Any], new: dict[str, Any]) -> str:
    reasons = []
    for key in sorted(set(_flatten(old.get("config", {}))) | set(_flatten(new["config"]))):
        a, b = _flatten(old.get("config", {})).get(key), _flatten(new["config"]).get(key)
        if a != b:
            reasons.append(f"config {key}: {a!r} → {b!r}")
    for up in sorted(set(old.get("inputs", {})) | set(new["inputs"])):
        if old.get("inputs", {}).get(up) != new["inputs"].get(up):
            reasons.append(f"input '{up}' changed")
    return "; ".join(reasons) or "digest differs"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _set_aside(stage: Stage, cfg: RunConfig, run_dir: Path, name: str, forced: bool) -> list[tuple[Path, Path]]:
    """Move the stage's manifest (and, unless it resumes, or when it is forced, its outputs with their checkpoints:
    a forced stage starts over) aside as `*.previous` rather than deleting them: a run that fails is undone by
    `_after_failure`. A resumable stage that is not forced keeps its outputs and checkpoints where it resumes from
    them. Returns (path, where it was put) pairs."""
    targets = [manifest_path(run_dir, name)]
    if not getattr(stage, "RESUMABLE", False) or forced:
        targets += [run_dir / rel for rel in stage.makes(cfg)]
    moved = []
    for path in targets:
        if path.exists():
            backup = path.with_name(path.name + ".previous")
            _remove(backup)
            os.replace(path, backup)
            moved.append((path, backup))
    return moved


def _progress(set_aside: list[tuple[Path, Path]]) -> set[tuple[Path, int]]:
    """The saved progress in the places set aside: each checkpoint and each finished part's `done.json`, with its
    modification time."""
    return {
        (p, p.stat().st_mtime_ns) for path, _ in set_aside if path.is_dir() for p in path.rglob("*")
        if p.name == "done.json" or (p.parent.name == "checkpoints" and (p / "state.json").is_file())
    }  # fmt: skip


def _after_failure(
    set_aside: list[tuple[Path, Path]], before: set[tuple[Path, int]], name: str, accelerator: Accelerator
) -> None:
    """A stage stopped (an error, a signal). When it saved progress since it started (`before`: `_progress` then) —
    a checkpoint, or a finished part with its `done.json` — that progress replaces what was set aside, which is
    removed: the next run resumes from it. Otherwise the previous outputs and manifest (with the checkpoints a forced
    run had set aside) are put back as they were."""
    if _progress(set_aside) - before:
        for _, backup in set_aside:
            _remove(backup)
        accelerator.print(f"[{name}] its progress is kept (the previous outputs are replaced): run again to resume")
        return
    for path, backup in set_aside:
        _remove(path)
        os.replace(backup, path)


def stray_files(stages: Stages, cfg: RunConfig, run_dir: Path, memo: dict | None = None) -> list[Path]:
    """What is in the run folder but no stage's output: files inside a finished stage's folders that its manifest does
    not list (or of a kind no stage makes), and the leftovers of interrupted writes (`*.previous`, `.*.tmp`, …).
    Only done stages are looked into: a stage that is not may hold a stopped run's parts, which it resumes from."""
    found, memo = leftovers(run_dir), {} if memo is None else memo  # `status` hands in its statuses
    for name, stage in stages.items():
        manifest = read_manifest(run_dir, name)
        # a stage that is not done may hold a stopped run's work that its (older) manifest does not list yet
        if manifest is not None and stage_status(stages, name, cfg, run_dir, memo)[0] == "done":
            makes, nested = stage.makes(cfg), nested_outputs(stages, name, cfg)
            found += [run_dir / rel for rel in extra_files(run_dir, makes, manifest.get("files", {}), nested)]
    return sorted(set(found))


def run_lock(run_dir: Path) -> FileLock:
    """The run folder's lock (`RUN/.lock`, the kernel's flock: it goes with the process, also a killed one), taken at
    once or never: one call runs or cleans a folder at a time."""
    lock = file_lock(run_dir / ".lock")
    acquire(lock, f"{run_dir} is in use by another call; wait for it", StoreError, "the run folder")
    return lock


def clean(stages: Stages, cfg: RunConfig, run_dir: Path) -> list[Path]:
    """Remove `stray_files`, under the run folder's lock; returns what was removed (nothing from a missing folder)."""
    if not run_dir.is_dir():
        return []
    with run_lock(run_dir):
        stray = stray_files(stages, cfg, run_dir)
        for path in stray:
            _remove(path)
    return stray


def run_stages(
    stages: Stages,
    cfg: RunConfig,
    run_dir: Path,
    accelerator: Accelerator,
    target: str | None = None,
    force: bool = False,
) -> list[str]:
    """Run `target` (or every stage) and whatever it needs that is missing or stale; returns the stages run.

    Raises:
        ConfigError: `accelerator` computes in another precision than `cfg.model.precision`, which the digests count.
    """
    mixed = mixed_precision(cfg.model.precision)
    if accelerator.mixed_precision != mixed:
        raise ConfigError(
            f"the Accelerator's mixed precision is {accelerator.mixed_precision!r}, the config's model.precision "
            f"{cfg.model.precision!r}: make the Accelerator with pipeline.core.accel.make_accelerator(precision=...)"
        )
    problems = check_model_limits(cfg)  # what the config alone cannot know: the model's own limits
    if problems:
        raise ConfigError("invalid configuration for the model:\n  " + "\n  ".join(problems))
    lock, refused = None, [None]
    if accelerator.is_main_process:
        try:
            lock = run_lock(run_dir)
        except StoreError as err:
            refused = [str(err)]
    if accelerator.num_processes > 1:  # every process stops when the main one cannot lock the folder
        broadcast_object_list(refused)
    if refused[0] is not None:
        raise StoreError(refused[0])
    try:
        return _run_stages(stages, cfg, run_dir, accelerator, target, force)
    finally:
        if lock is not None:
            lock.release()


def _run_stages(
    stages: Stages, cfg: RunConfig, run_dir: Path, accelerator: Accelerator, target: str | None, force: bool
) -> list[str]:
    ran = []
    # Statuses of stages already handled stay valid (each rerun stage is recorded as done below), so every
    # stage's files are checksummed once per call, not once per downstream stage.
    memo: dict[str, tuple[str, str]] = {}
    for name in stage_order(stages, cfg, target):
        forced = force and (target is None or name == target)
        try:
            state, why = stage_status(stages, name, cfg, run_dir, memo)
        except StoreError:
            if not forced:
                raise
            state, why = "stale", "forced over a manifest this version cannot read"
        if state == "done" and not forced:
            accelerator.print(f"[{name}] skip: {why}")
            continue
        accelerator.print(f"[{name}] run: {'forced' if forced and state == 'done' else why}")
        stage = stages[name]
        record = stage_record(stages, name, cfg, run_dir)
        set_aside = _set_aside(stage, cfg, run_dir, name, forced) if accelerator.is_main_process else []
        before = _progress(set_aside)
        accelerator.wait_for_everyone()
        start = time.time()
        try:
            result = stage.run(Context(cfg, run_dir, accelerator, record["digest"])) or {}
        except BaseException:
            if accelerator.is_main_process:
                _after_failure(set_aside, before, name, accelerator)
            raise
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            finished = time.strftime("%Y-%m-%d %H:%M:%S")
            extra = {"result": result, "wall_s": round(time.time() - start, 2), "finished": finished}
            write_manifest(run_dir, name, stage.makes(cfg), {**record, **extra}, nested_outputs(stages, name, cfg))
            for _, backup in set_aside:
                _remove(backup)
        accelerator.wait_for_everyone()
        memo[name] = ("done", "just ran")
        ran.append(name)
    return ran
