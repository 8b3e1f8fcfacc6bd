"""What makes two runs the same (their keys), OUT/results.json as a record of finished runs, and OUT's locks.

A finished run's numbers survive its folder: results.json holds each run (and each tuning run) with its key, and a
later call, on any machine, counts a recorded run as done while its key is the one it would make. A key is the
digest of the config subsets the run's numbers depend on (as its stages' digests are made of them), the data by
content and the run-folder format (`FORMAT_VERSION`): a key of another format never matches, it is rerun (or
rewritten once by scripts/migrate_results.py).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

from filelock import FileLock

from pipeline.core.config import RunConfig
from pipeline.core.locks import acquire, file_lock
from pipeline.core.store import FORMAT_VERSION, digest, read_json, write_json
from pipeline.core.tasks import TaskSpec, task_from_dict
from pipeline.experiments.variants import DERIVED, TEACHERS, TUNE_SEED, ReproduceError, reports_teachers, uses_teachers
from stages import STAGES

# ---- keys ----------------------------------------------------------------------------------------------------------


def data_identity(cfg: RunConfig) -> dict[str, Any]:
    """The data part of a key: the data stage's config subset, but with the GLUE files by content (named relative to
    `data.data_dir`, as the data stage's `sources`) instead of the folder's path, so a results.json holds wherever
    the GLUE copy lives."""
    stage = STAGES["data"]
    subset = stage.config_subset(cfg)
    if cfg.data.data_dir is None:
        return subset
    data = {k: v for k, v in subset["data"].items() if k != "data_dir"}
    return {**subset, "data": data, "files": stage.sources(cfg)}


def run_key(vcfg: RunConfig, variant: str, parent: str | None = None, members: list[str] | None = None) -> str:
    """What makes two runs of `variant` the same; `vcfg` is the run's own config (`variant_config`). The config
    subsets its numbers depend on, as its stages' digests are made of them (so settings that do not change
    results do not count): the teachers' for a variant reporting them or a student learning from them, not for
    Multi's (λ = 1, it never reads them); the data by content (`data_identity`); a variant made from another run
    adds that run's key `parent` (not the folder it starts from, so a moved OUT keeps its keys); an ensemble, the
    keys of its other members' teachers, `members`."""
    if reports_teachers(variant):
        names: tuple[str, ...] = (TEACHERS,)
    else:
        names = (TEACHERS, "student") if uses_teachers(vcfg, variant) else ("student",)
    key: dict[str, Any] = {"format_version": FORMAT_VERSION, "data": data_identity(vcfg)}
    key |= {name: STAGES[name].config_subset(vcfg) for name in names}
    if members:  # a teacher ensemble: the other members' teachers keys (`teachers_key`)
        key |= {"members": members}
    if parent is not None:
        key |= {"parent": parent, "variant": variant}
    elif variant in DERIVED:
        key |= {"variant": variant}
    return digest(key)


def teachers_key(cfg: RunConfig) -> str:
    """What the teachers of `cfg` are made of: their data (`data_identity`) and settings, and teachers.init_from's
    model by content."""
    stage = STAGES[TEACHERS]
    subsets = {"data": data_identity(cfg), TEACHERS: stage.config_subset(cfg), "sources": stage.sources(cfg)}
    return digest({"format_version": FORMAT_VERSION, **subsets})


def tuning_base(run_keys: list[str]) -> str:
    """What a tuning record was made for: the keys of its grid's runs, in the grid's order. The same runs make the
    same choice, whatever the config's own values of the tuned keys or a choice made before."""
    return digest({"format_version": FORMAT_VERSION, "runs": run_keys})


# ---- results.json ---------------------------------------------------------------------------------------------------

_RECORDED: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}  # path → (its version, its content)


def recorded(out: Path) -> dict[str, Any]:
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
    return {(r["variant"], r["seed"]): r for r in recorded(out).get("runs", [])}


def recorded_tuning_runs(out: Path) -> list[dict[str, Any]]:
    """results.json's finished tuning runs (each setting's, students' and teachers'): a tuning run's numbers survive
    its folder, so a grid can be finished on another machine."""
    return recorded(out).get("tuning_runs", [])


def recorded_tuning_run(out: Path, name: str, key: str) -> dict[str, Any] | None:
    """results.json's tuning run of `name` (TEACHERS or a variant) with this key, or None."""
    return next((r for r in recorded_tuning_runs(out) if (r["variant"], r["key"]) == (name, key)), None)


def recorded_specs(out: Path) -> dict[str, TaskSpec]:
    """The task specs results.json holds (those of its runs' tasks), by name."""
    return {spec["name"]: task_from_dict(spec) for spec in recorded(out).get("task_specs", [])}


def tuning_file(out: Path, name: str) -> Path:
    return out / "tuning" / f"{name}.json"


def read_tuning(out: Path, name: str) -> dict[str, Any] | None:
    """The tuning record of `name` in OUT/tuning/, else results.json's copy (an OUT made anew from a committed
    results.json), else None; whether it holds for a config is `choices.tuning_record`'s to say."""
    path = tuning_file(out, name)
    return read_json(path) if path.is_file() else recorded(out).get("tuning", {}).get(name)


def record_tuning_run(out: Path, run: dict[str, Any]) -> None:
    """Add a finished tuning run to results.json's "tuning_runs" (the rest of the file as it is), unless it is there
    (also one finished before, in its folder: a call killed before recording it)."""
    with results_lock(out):
        if recorded_tuning_run(out, run["variant"], run["key"]) is not None:
            return
        path = out / "results.json"
        results = read_json(path) if path.is_file() else {"runs": []}
        results["tuning_runs"] = [*results.get("tuning_runs", []), run]
        write_json(path, results)


# ---- locks ----------------------------------------------------------------------------------------------------------

LOCK_WAIT = 600.0  # seconds a call waits for results.json's lock before it says which file holds it
PROBE_WAIT = 3.0  # seconds a call waits for the tuning lock: a call that only looks at it holds it for a moment
TUNING_WAIT = 60.0  # seconds a tuning call waits for seed 1's shared stages (a call checking done stages is brief)


@functools.cache
def _lock(path: str) -> FileLock:
    """One lock object per file in this process (so holding it again here does not wait on itself). The kernel's
    lock (flock), never a lock file that a killed process would leave behind: a folder whose filesystem has no
    flock is an error (`_acquire`)."""
    return file_lock(path)


def results_lock(out: Path):
    """Held while results.json or OUT/tuning/ is read to be rewritten and written: calls filling one OUT keep each
    other's runs."""
    return _acquire(out, "results", LOCK_WAIT, f"waited {LOCK_WAIT:.0f} s for it, held by another call")


def _acquire(out: Path, name: str, timeout: float, why: str):
    """OUT/locks/<name>.lock, taken within `timeout` seconds (0: now or never), as a context manager; else an error
    saying `why` and which file."""
    return acquire(_lock(str(out.resolve() / "locks" / f"{name}.lock")), why, ReproduceError, "OUT", timeout)


def _try_lock(out: Path, name: str, stack: contextlib.ExitStack, why: str, timeout: float = 0) -> None:
    stack.enter_context(_acquire(out, name, timeout, f"{why}; another process holds it"))


def claim_runs(
    out: Path,
    seeds: list[int],
    variants: list[str],
    stack: contextlib.ExitStack,
    tuning: contextlib.ExitStack | None,
    every_variant: list[str] = (),
) -> None:
    """Claim each of `variants` on each of `seeds` of OUT for this process until `stack` closes; a run another process
    holds is an error (the lock is the kernel's: it goes with the process, also one that was killed), while other
    variants of the same seed may run beside it (they take turns only on the seed's shared stages: `shared_stages`).
    With `tuning` (a call that tunes on the first seed, then among `seeds`), OUT/locks/tuning.lock and the first
    seed's shared stages are held until that stack closes (once the choice is made); meanwhile a call for other seeds
    is refused, as it would run without the choice, and a tuning call is refused while another call runs any of
    `every_variant` on the first seed (it would change that run's teachers under it)."""
    busy = f"another call is tuning on seed {TUNE_SEED} of {out}: start this one once it has made its choice"
    with contextlib.ExitStack() as probe:  # without tuning: taken and let go at once, only to see if one is (calls
        # started together probe at once, hence the short wait)
        _try_lock(out, "tuning", tuning if tuning is not None else probe, busy, PROBE_WAIT)
    if tuning is not None:
        busy = f"another call is running seed {TUNE_SEED}'s shared stages in {out}, which tuning replaces"
        _try_lock(out, f"seed-{TUNE_SEED}", tuning, busy, TUNING_WAIT)
        for variant in every_variant:  # each taken and let go at once: is another call running it?
            busy = f"another call is running seed {TUNE_SEED}'s {variant} in {out}, whose teachers tuning would change"
            with contextlib.ExitStack() as probe:
                _try_lock(out, f"seed-{TUNE_SEED}-{variant}", probe, busy)
    for seed in seeds:
        for variant in variants:
            busy = (
                f"seed {seed}'s {variant} in {out} is being run by another call; give each call its own seeds "
                "(--only-seeds) or variants"
            )
            _try_lock(out, f"seed-{seed}-{variant}", stack, busy)


@contextlib.contextmanager
def shared_stages(out: Path, seed: int, wait: bool = True, say=print):
    """Held while a call runs `seed`'s shared stages (its data, teachers and soft targets) or writes into them: with
    `wait`, a second call of the seed waits for the first to finish them (then finds them done), saying so with
    `say`; without, it is refused (a ReproduceError)."""
    lock = _lock(str(out.resolve() / "locks" / f"seed-{seed}.lock"))
    busy = f"another call is running seed {seed}'s shared stages" + (
        "" if wait else "; a call of several processes does not wait for it: start this one when it is done"
    )

    def waiting() -> None:
        say(f"reproduce-glue: {busy}; waiting for it ({lock.lock_file})")

    with acquire(lock, busy, ReproduceError, "OUT", -1 if wait else 0, waiting):
        yield
