"""Rewrite the keys of a reproduce-glue results.json made by an earlier version with today's, changing no number.

    python scripts/migrate_results.py --data-dir PATH_TO_GLUE results/glue-small/*/results.json
    python scripts/migrate_results.py --data-dir PATH_TO_GLUE --check results/glue-small/bf16/results.json

Run keys, tuning-run keys and tuning bases carry the run-folder format (`FORMAT_VERSION`): a results.json of an
earlier format finds none of its runs done. This computes each key anew from the record's stored config (its
`data.data_dir` replaced by --data-dir, where the GLUE files are read by content), as `reproduce-glue` computes it
from the config it is given: a run's from its own config (and its parent run's key), a tuning run's from its own
config (the teachers': from the first seed's Single run, at the setting), a tuning record's base from its grid's
tuning-run keys. It also adds the tasks' specs (`task_specs`, GLUE tasks only), which today's table is drawn from.
Everything else stays as it is. Then check with the command the results were made by and `--dry-run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from pipeline.core.config import RunConfig, override
from pipeline.core.store import read_json, write_json
from pipeline.core.tasks import get_glue_task, task_to_dict
from pipeline.experiments.results import run_key, teachers_key, tuning_base
from pipeline.experiments.variants import (
    PARENT,
    TEACHER_CHANGES,
    TEACHERS,
    TUNE_SEED,
    apply_variant,
    seed_config,
    settings,
    teacher_setting,
)


def stored_config(stored: dict[str, Any], data_dir: Path | None) -> RunConfig:
    """A record's config (keys it lacks at today's defaults), reading GLUE from `data_dir` when it read GLUE."""
    cfg = override(RunConfig(), stored, "a stored config")
    if cfg.data.data_dir is not None and data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir.resolve())))
    return cfg


class Migration:
    """The new keys of one results.json's records."""

    def __init__(self, results: dict[str, Any], data_dir: Path | None) -> None:
        self.results, self.data_dir = results, data_dir
        self.runs = {(r["variant"], r["seed"]): r for r in results.get("runs", [])}

    def config(self, record: dict[str, Any]) -> RunConfig:
        return stored_config(record["config"], self.data_dir)

    def run_key(self, run: dict[str, Any]) -> str:
        parent = PARENT.get(run["variant"])
        if parent is not None and (parent, run["seed"]) not in self.runs:
            raise SystemExit(f"{run['variant']} seed {run['seed']}: its parent run {parent} is not in the file")
        parent_key = None if parent is None else self.run_key(self.runs[(parent, run["seed"])])
        return run_key(self.config(run), run["variant"], parent_key)

    def setting_key(self, name: str, setting: dict[str, Any]) -> str:
        """The key of `name`'s tuning run at `setting`, from a stored config of its: the teachers' from a Single run
        (any run's teachers but a derived variant's or a small single's), a variant's from one of its runs or tuning
        runs."""
        if name == TEACHERS:
            source = self.runs.get(("single", TUNE_SEED)) or next(
                (r for r in self.runs.values() if r["variant"] not in PARENT and r["variant"] not in TEACHER_CHANGES),
                None,
            )
            if source is None:
                raise SystemExit("a teachers' tuning record but no run to read the teachers' config from")
            return teachers_key(teacher_setting(seed_config(self.config(source), TUNE_SEED), setting))
        own = [r for r in [*self.runs.values(), *self.results.get("tuning_runs", [])] if r["variant"] == name]
        if not own:
            raise SystemExit(f"a tuning record of {name} but no run of it to read its config from")
        cfg = seed_config(apply_variant(self.config(own[0]), name, setting, None), TUNE_SEED)
        return run_key(cfg, name)

    def tuning_base(self, name: str, record: dict[str, Any]) -> str:
        return tuning_base([self.setting_key(name, setting) for setting in settings(record["grid"])])


def migrate(results: dict[str, Any], data_dir: Path | None) -> int:
    """Rewrite `results`' keys in place (and add GLUE task specs); returns how many keys changed."""
    m, changed = Migration(results, data_dir), 0
    new_keys = [(run, m.run_key(run)) for run in results.get("runs", [])]
    new_keys += [(run, m.setting_key(run["variant"], run["setting"])) for run in results.get("tuning_runs", [])]
    for record, key in new_keys:
        changed += record["key"] != key
        record["key"] = key
    for name, record in results.get("tuning", {}).items():
        base = m.tuning_base(name, record)
        changed += record["base"] != base
        record["base"] = base
    if "task_specs" not in results:
        results["task_specs"] = [task_to_dict(get_glue_task(t)) for t in results["tasks"]]
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="results.json files of reproduce-glue")
    parser.add_argument("--data-dir", type=Path, help="the GLUE folder (TSV layout) the runs read")
    parser.add_argument("--check", action="store_true", help="only say how many keys would change")
    args = parser.parse_args(argv)
    for path in args.files:
        results = read_json(path)
        changed = migrate(results, args.data_dir)
        if not args.check:
            write_json(path, results)
        runs, tuning = len(results.get("runs", [])), len(results.get("tuning_runs", []))
        print(f"{path}: {changed} keys {'would change' if args.check else 'rewritten'} ({runs} runs, {tuning} tuning "
              f"runs, {len(results.get('tuning', {}))} tuning records)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
