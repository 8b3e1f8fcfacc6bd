"""The staged DAG: what is done, what is stale and why, and running what is needed in order.

A stage's digest is sha256 of {its config subset, its inputs' digests, the code version}. A stage is done when
`manifests/<stage>.json` holds that digest and every file it lists still has its checksum. A changed config key
or input makes the stage stale, and with it everything downstream, because their input digests change too.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from pipeline import __version__
from pipeline.config import RunConfig
from pipeline.store import digest, manifest_path, read_manifest, verify_files, write_manifest


@dataclass
class Context:
    """What a stage's `run` gets: the resolved config, the run folder, the accelerator and its own digest."""

    cfg: RunConfig
    run_dir: Path
    accelerator: Accelerator
    digest: str


def get_stages() -> dict[str, Any]:
    from stages import STAGES

    return STAGES


def stage_record(name: str, cfg: RunConfig, memo: dict[str, dict] | None = None) -> dict[str, Any]:
    """The record a stage's digest is computed from: config subset, input digests, code version."""
    memo = {} if memo is None else memo
    if name not in memo:
        stage = get_stages()[name]
        inputs = {up: stage_record(up, cfg, memo)["digest"] for up in stage.needs(cfg)}
        record = {"stage": name, "config": stage.config_subset(cfg), "inputs": inputs, "version": __version__}
        memo[name] = {**record, "digest": digest(record)}
    return memo[name]


def stage_order(cfg: RunConfig, target: str | None = None) -> list[str]:
    """Topological order of `target` and everything it needs (all stages when target is None)."""
    stages = get_stages()
    if target is not None and target not in stages:
        raise ValueError(f"unknown stage '{target}' (stages: {', '.join(stages)})")
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


def stage_status(name: str, cfg: RunConfig, run_dir: Path, memo: dict | None = None) -> tuple[str, str]:
    """("done" | "stale" | "missing", why)."""
    expected = stage_record(name, cfg, memo)
    manifest = read_manifest(run_dir, name)
    if manifest is None:
        return "missing", "never finished (no manifest)"
    if manifest.get("digest") != expected["digest"]:
        return "stale", _why_stale(manifest, expected)
    bad = verify_files(run_dir, manifest)
    if bad:
        return "stale", "outputs changed since it finished: " + ", ".join(bad[:5])
    return "done", f"up to date (finished {manifest.get('finished', '?')})"


def _why_stale(old: dict[str, Any], new: dict[str, Any]) -> str:
    reasons = []
    if old.get("version") != new["version"]:
        reasons.append(f"code version {old.get('version')} → {new['version']}")
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


def run_stages(
    cfg: RunConfig, run_dir: Path, accelerator: Accelerator, target: str | None = None, force: bool = False
) -> list[str]:
    """Run `target` (or every stage) and whatever it needs that is missing or stale; returns the stages run."""
    stages = get_stages()
    memo: dict[str, dict] = {}
    ran = []
    for name in stage_order(cfg, target):
        state, why = stage_status(name, cfg, run_dir, memo)
        forced = force and (target is None or name == target)
        if state == "done" and not forced and not (set(stages[name].needs(cfg)) & set(ran)):
            accelerator.print(f"[{name}] skip: {why}")
            continue
        accelerator.print(f"[{name}] run: {'forced' if forced and state == 'done' else why}")
        stage = stages[name]
        record = stage_record(name, cfg, memo)
        if accelerator.is_main_process:
            manifest_path(run_dir, name).unlink(missing_ok=True)
            if not getattr(stage, "RESUMABLE", False) or forced:
                for rel in stage.makes(cfg):
                    path = run_dir / rel
                    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        accelerator.wait_for_everyone()
        start = time.time()
        result = stage.run(Context(cfg, run_dir, accelerator, record["digest"])) or {}
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            finished = time.strftime("%Y-%m-%d %H:%M:%S")
            extra = {"result": result, "wall_s": round(time.time() - start, 2), "finished": finished}
            write_manifest(run_dir, name, stage.makes(cfg), {**record, **extra})
        accelerator.wait_for_everyone()
        ran.append(name)
    return ran
