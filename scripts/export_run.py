"""Copy a finished run's small result files into a folder meant for version control, with the machine and times.

    python scripts/export_run.py --run artifacts/glue-small --to results/glue-small \
        --command "python -m pipeline run --config configs/glue-small.yaml --data-dir ../shared/data/glue"
    python scripts/export_run.py --run DIR --to results/glue-small/reproduce     # a reproduce-glue folder

Copies metrics.json, report.md, the plots, config.yaml, student/summary.json, student/log.jsonl, the student's
model card and each teacher's metrics.json and log.jsonl (no weights, no data), and writes RUN.md: the command,
the machine (cores, threads, torch), the date and each stage's wall time from its manifest. From a reproduce-glue
folder (it has results.json) it copies table.md, results.json and plots/, and RUN.md says what is finished.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from pipeline.store import read_json, write_text
from stages import STAGES

FILES = [
    "metrics.json", "report.md", "config.yaml", "student/summary.json", "student/log.jsonl",
    "student/model/README.md", "plots/scores.png", "plots/training.png",
]  # fmt: skip
REPRODUCE_FILES = [
    "table.md", "results.json", "plots/scores.png", "plots/training.png", "plots/options.png",
    "plots/options-training.png",
]  # fmt: skip


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}. "
        f"Exported {time.strftime('%Y-%m-%d')}."
    )


def export_reproduce(run: Path, to: Path) -> None:
    """table.md, results.json and the plots of a reproduce-glue folder, and RUN.md listing the finished runs."""
    for rel in REPRODUCE_FILES:
        if (run / rel).is_file():
            (to / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / rel, to / rel)
    results = read_json(run / "results.json")
    rows = [f"| {r['variant']} | {r['seed']} | {r['average']:.2f} | {r['wall_s'] / 60:.1f} |" for r in results["runs"]]
    lines = [
        f"# reproduce-glue `{run.name}`",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Machine (as the runs recorded it): {results['machine']}",
        f"Machine (export): {machine()}",
        "",
        "Finished runs (wall time: the teachers' training for `single`, the student stage otherwise):",
        "",
        "| variant | seed | dev average | wall time (min) |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        "The table is in `table.md`; every run's metrics and config in `results.json`.",
        "",
    ]
    write_text(to / "RUN.md", "\n".join(lines))
    print(f"exported {run} → {to}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the run folder")
    parser.add_argument("--to", type=Path, required=True, help="where to copy the results")
    parser.add_argument("--command", help="the exact command that produced the run (not for reproduce-glue)")
    args = parser.parse_args()
    if (args.run / "results.json").is_file() and (args.run / "runs").is_dir():
        export_reproduce(args.run, args.to)
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
