"""Copy a finished run's small result files into a folder meant for version control, with the machine and times.

    python scripts/export_run.py --run artifacts/glue-small --to results/glue-small \
        --command "python -m pipeline run --config configs/glue-small.yaml --data-dir ../shared/data/glue"

Copies metrics.json, report.md, config.yaml, student/summary.json, student/log.jsonl and each teacher's
metrics.json and log.jsonl (no weights, no data), and writes RUN.md: the command, the machine (cores, threads,
torch), the date and each stage's wall time from its manifest.
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

FILES = ["metrics.json", "report.md", "config.yaml", "student/summary.json", "student/log.jsonl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the run folder")
    parser.add_argument("--to", type=Path, required=True, help="where to copy the results")
    parser.add_argument("--command", required=True, help="the exact command that produced the run")
    args = parser.parse_args()

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
        f"Machine: {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}. "
        f"Exported {time.strftime('%Y-%m-%d')}.",
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
