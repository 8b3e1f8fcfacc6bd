"""Copy a finished run's small result files into a folder meant for version control, with the machine and times.

    python scripts/export_run.py --run artifacts/glue-small --to results/glue-small \
        --command "python -m pipeline run --config configs/glue-small.yaml --data-dir PATH_TO_GLUE"
    python scripts/export_run.py --run DIR --to results/glue-small/reproduce     # a reproduce-glue folder
    python scripts/export_run.py --run DIR --to results/glue-small/reproduce --options-to results/options

Copies metrics.json, report.md, the plots, config.yaml, student/summary.json, student/log.jsonl, the student's
model card and each teacher's metrics.json and log.jsonl (no weights, no data), and writes RUN.md: the command,
the machine (cores, threads, torch), the date and each stage's wall time from its manifest. From a reproduce-glue
folder (it has results.json) it copies table.md, results.json and plots/, and RUN.md says what is finished;
with --options-to, also the multitask options' table, plots and times, and which options are still to run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from pipeline.core.store import read_json, write_text
from pipeline.experiments.plan import run_threads
from stages import STAGES

FILES = [
    "metrics.json", "report.md", "config.yaml", "student/summary.json", "student/log.jsonl",
    "student/model/README.md", "plots/scores.png", "plots/training.png",
]  # fmt: skip
REPRODUCE_FILES = ["table.md", "results.json", "plots/scores.png", "plots/training.png"]  # options: --options-to


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}. "
        f"Exported {time.strftime('%Y-%m-%d')}."
    )


def _provenance(results: dict) -> list[str]:
    """The command and both machines (the runs' and this export's) of a reproduce-glue folder's results."""
    return [
        f"Command: `{results['command']}`",
        "",
        f"Machine (as the runs recorded it): {results['machine']}",
        f"Machine (export): {machine()}",
        "",
    ]


def threads(run: dict) -> str:
    """The torch threads a run's training had (its teachers' or its students' per task; "?": not recorded)."""
    recorded = run_threads(run)
    counts = sorted(t for t in recorded if t is not None)
    return ", ".join(map(str, counts)) + (" + ?" if counts and None in recorded else "") if counts else "?"


def export_reproduce(run: Path, to: Path) -> None:
    """table.md, results.json and the plots of a reproduce-glue folder, and RUN.md listing the finished runs."""
    for rel in REPRODUCE_FILES:
        if (run / rel).is_file():
            (to / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / rel, to / rel)
    results = read_json(run / "results.json")
    rows = [
        f"| {r['variant']} | {r['seed']} | {r['average']:.2f} | {r['wall_s'] / 60:.1f} | {threads(r)} |"
        for r in results["runs"]
    ]
    lines = [
        f"# reproduce-glue `{run.name}`",
        "",
        *_provenance(results),
        "Finished runs (wall time: the teachers' training for `single`, the student stage otherwise):",
        "",
        "| variant | seed | dev average | wall time (min) | torch threads |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        "The table is in `table.md`; every run's metrics and config in `results.json`.",
        "",
    ]
    write_text(to / "RUN.md", "\n".join(lines))
    print(f"exported {run} → {to}")


def export_options(run: Path, to: Path, reproduce_to: Path) -> None:
    """The multitask options' part of a reproduce-glue folder: README.md (their table beside BAM, each run's wall
    time, what is not run yet) and plots/options*.png."""
    from pipeline.experiments.variants import OPTIONS

    results, table = read_json(run / "results.json"), (run / "table.md").read_text(encoding="utf-8")
    marker = "## Multitask options"
    section = (
        marker + table.split(marker)[1].split("\n## ")[0].rstrip() if marker in table else "No option has run yet."
    )
    done = [r for r in results["runs"] if r["variant"] in OPTIONS]
    pending = [v for v in OPTIONS if v not in {r["variant"] for r in done}]
    walls = ", ".join(f"{r['variant']} {r['wall_s'] / 60:.1f}" for r in done) or "none"
    where = os.path.relpath(reproduce_to, to)
    lines = [
        "# glue-small: the multitask options beside BAM",
        "",
        *_provenance(results),
        section,
        "",
        f"Student wall time (min): {walls}.",
        f"Not run yet: {', '.join(pending) or 'none'}.",
        "",
        f"Every run's metrics and config: `{where}/results.json`; BAM's row is the run of `{where}/table.md`.",
        "",
    ]
    for name in ("options.png", "options-training.png"):
        if (run / "plots" / name).is_file():
            (to / "plots").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / "plots" / name, to / "plots" / name)
    write_text(to / "README.md", "\n".join(lines))
    print(f"exported the options of {run} → {to}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the run folder")
    parser.add_argument("--to", type=Path, required=True, help="where to copy the results")
    parser.add_argument("--command", help="the exact command that produced the run (not for reproduce-glue)")
    parser.add_argument("--options-to", type=Path, help="reproduce-glue only: where the options' results go")
    args = parser.parse_args()
    if (args.run / "results.json").is_file():  # a reproduce-glue folder (maybe without runs/: all from results.json)
        export_reproduce(args.run, args.to)
        if args.options_to:
            export_options(args.run, args.options_to, args.to)
        return
    if not args.command:
        parser.error("--command is required for a run folder")

    wanted = list(FILES)
    for teacher in sorted((args.run / "teachers").glob("*/metrics.json")):
        wanted += [f"teachers/{teacher.parent.name}/metrics.json", f"teachers/{teacher.parent.name}/log.jsonl"]
    for rel in wanted:
        src = args.run / rel
        if src.is_file():
            (args.to / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, args.to / rel)

    rows, total = [], 0.0
    for stage in STAGES:  # in pipeline order
        path = args.run / "manifests" / f"{stage}.json"
        if path.is_file():
            m = read_json(path)
            total += m.get("wall_s", 0)
            rows.append(f"| {stage} | {m.get('wall_s', 0) / 60:.1f} | {m.get('finished', '?')} |")
    lines = [
        f"# Run `{args.run.name}`",
        "",
        f"Command: `{args.command}`",
        "",
        f"Machine: {machine()}",
        "",
        "| stage | wall time (min) | finished |",
        "|---|---:|---|",
        *rows,
        f"| **total** | **{total / 60:.1f}** | |",
        "",
        "Scores: see `report.md` (the table) and `metrics.json` (every metric).",
        "",
    ]
    write_text(args.to / "RUN.md", "\n".join(lines))
    print(f"exported {args.run} → {args.to}")


if __name__ == "__main__":
    main()
