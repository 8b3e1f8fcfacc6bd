"""Where each run of an OUT lives, and sharing finished work between run folders by hard links.

    OUT/runs/seed-<s>/teachers/                 the seed's data, teachers and soft targets (and Single's numbers)
    OUT/runs/seed-<s>/<variant>/                a variant's run; single-single: one run per task below it
    OUT/runs/seed-1/tune/<name>/<setting>/      a tuning run of a variant, or of the teachers (name "teachers")

Stage outputs are only ever replaced, never written in place, so a file linked into several folders cannot be changed
through one of them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.config import RunConfig
from pipeline.core.store import done_intact, read_json, read_manifest, write_json
from pipeline.dag import stage_record, stage_status
from pipeline.experiments.variants import SHARED, TEACHERS, setting_label
from stages import STAGES
from stages.teachers import task_digest


def seed_dir(out: Path, seed: int) -> Path:
    return out / "runs" / f"seed-{seed}"


def run_dirs(out: Path, seed: int, variant: str, setting: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """(the seed's teachers folder, the run's folder): "single" (and TEACHERS) read the teachers folder itself; a
    `setting` of a tuning grid runs in `OUT/runs/seed-<s>/tune/<variant>/<setting>/` (the empty setting, the
    untuned variant, in the variant's folder)."""
    base = seed_dir(out, seed)
    if setting:
        return base / "teachers", base / "tune" / variant / setting_label(setting)
    return base / "teachers", base / "teachers" if variant in ("single", TEACHERS) else base / variant


def link_files(src: Path, dst: Path, keep: Callable[[Path], bool], copy: tuple[str, ...] = ()) -> None:
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
    memo: dict = {}
    src_memo: dict = {}
    done = []
    for name in stages:
        if stage_status(STAGES, name, cfg, dst, memo)[0] == "done":
            done.append(name)
            continue
        if stage_status(STAGES, name, cfg, src, src_memo)[0] != "done":
            continue
        if read_manifest(src, name)["digest"] != stage_record(STAGES, name, cfg, dst)["digest"]:
            continue
        for rel in STAGES[name].makes(cfg):
            if (dst / rel).is_dir():
                shutil.rmtree(dst / rel)
            link_files(src / rel, dst / rel, lambda rel: not rel.name.endswith(".previous"))
        (dst / "manifests").mkdir(parents=True, exist_ok=True)
        manifest = dst / "manifests" / f"{name}.json"
        manifest.unlink(missing_ok=True)
        os.link(src / "manifests" / f"{name}.json", manifest)
        memo.clear()
        done.append(name)
    return done


def share_data(scfg: RunConfig, out: Path, seed: int, seeds: list[int]) -> None:
    """Tokenise once for every seed: the seed's data stage, hard-linked from another seed's that has it done."""
    for other in (s for s in seeds if s != seed):
        try:
            if link_shared(scfg, seed_dir(out, other) / "teachers", seed_dir(out, seed) / "teachers", ("data",)):
                return  # done here: from that seed, or before
        except FileNotFoundError:  # being made anew by the call that holds that seed: tokenised here
            pass


def adopt_teacher(src_cfg: RunConfig, src: Path, dst_cfg: RunConfig, dst: Path, task: str) -> bool:
    """Hard-link the finished teacher of `task` in the run `src` into the run `dst` (whose data stage is done) when it
    is the teacher `dst` would train: the same per-task digest. What `dst` held for the task before (another
    teacher, or a part-trained one) is removed first; its `done.json` is written anew for `dst` and its log
    copied, so nothing in `dst` writes into `src`."""
    folder, target = src / "teachers" / task, dst / "teachers" / task
    if read_manifest(src, "data") is None:
        return False
    own = task_digest(src_cfg, src, task)
    if not done_intact(folder / "done.json", (own,), folder):
        return False
    if task_digest(dst_cfg, dst, task) != own or done_intact(target / "done.json", (own,), target):
        return False
    if target.is_dir():
        shutil.rmtree(target)  # hard links: the files live on in the folders that share them
    record = read_json(folder / "done.json")
    link_files(folder, target, lambda rel: rel.parts[0] != "checkpoints" and rel.name != "done.json", ("log.jsonl",))
    write_json(target / "done.json", {"digest": own, "files": record["files"]})
    return True
