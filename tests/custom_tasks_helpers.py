"""Shared by the test_custom_tasks_* files: writing task files (CSV/TSV, JSON Lines), declaring a task and
reading its dev split."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pipeline.core.config import CustomTaskConfig
from pipeline.core.custom import read_custom_split, resolve_task
from pipeline.core.glue import Example


def write(path: Path, text: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return str(path)


def delimited(rows: list[tuple], delimiter: str, header: tuple | None = ("sentence", "label"), index: bool = False):
    """Rows as CSV / TSV text, quoted where needed (csv module), optionally with a pandas-style index column."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    if header is not None:
        writer.writerow(("", *header) if index else header)
    writer.writerows((i, *row) if index else row for i, row in enumerate(rows))
    return out.getvalue()


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def declare(train: str, dev: str, **kwargs) -> CustomTaskConfig:
    return CustomTaskConfig(**{"train": train, "dev": dev, "text": ("sentence",), "label": "label", **kwargs})


def read_dev(decl: CustomTaskConfig, name: str = "mine") -> list[Example]:
    return read_custom_split(resolve_task(name, decl), decl, "dev")
