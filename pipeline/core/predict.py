"""Run a trained student (or teacher) on new text: `python -m pipeline predict`.

    python -m pipeline predict --model artifacts/glue-small/student/model --task sst2 --input reviews.tsv
    echo '{"sentence": "a gripping film"}' | python -m pipeline predict --model DIR --task sst2 --input -

Input: TSV or CSV with a header (by extension), or JSON Lines (`.jsonl`, or `-` for stdin). The text fields are
the task's columns (SST-2: `sentence`; MRPC: `#1 String`, `#2 String`; a custom task: its `text` columns) or
`text_a` / `text_b`.
Output: one JSON object per input row, in input order: the label and class probabilities, or the score.
The tasks' specs (label names, text columns, score range) are read from the model's `heads.json`, so a model of
custom tasks predicts without the config or data that made it.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch

from pipeline.core.data import tokenize_split, unscale
from pipeline.core.glue import DataError, Example
from pipeline.core.model import MultiTaskModel, load_model
from pipeline.core.store import read_json, write_json
from pipeline.core.tasks import TaskSpec, get_glue_task, task_from_dict, task_to_dict
from pipeline.core.training import predict


def save_task_specs(model_dir: str | Path, tasks: list[TaskSpec]) -> None:
    """Store each head's task spec in the saved model's `heads.json` (under `heads.<task>.task`)."""
    path = Path(model_dir) / "heads.json"
    meta = read_json(path)
    for task in tasks:
        meta["heads"][task.name]["task"] = task_to_dict(task)
    write_json(path, meta)


def task_specs(model: MultiTaskModel) -> list[TaskSpec]:
    """The task of each head of a loaded model, in head order: as saved in `heads.json`, or else (a model saved
    without them) the GLUE task of that name."""
    return [
        task_from_dict(model.head_specs[name]["task"]) if "task" in model.head_specs[name] else get_glue_task(name)
        for name in model.task_names
    ]


def load_student(model_dir: str | Path) -> MultiTaskModel:
    """A saved student (or teacher): a MultiTaskModel answering every task it was trained on, in eval mode."""
    return load_model(model_dir).eval()


def read_inputs(path: str, task: TaskSpec) -> list[tuple[str, str | None]]:
    """Texts to predict, in file order; '-' reads JSON Lines from stdin."""
    name = "<stdin>" if path == "-" else path
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    if path == "-" or path.endswith(".jsonl"):
        rows = []
        for line_no, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((line_no, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise DataError(f"{name}: line {line_no}: not valid JSON ({err})") from None
    else:
        dialect = "excel-tab" if path.endswith(".tsv") else "excel"
        reader = csv.DictReader(io.StringIO(text), dialect=dialect)
        rows = [(line_no, row) for line_no, row in enumerate(reader, 2)]
    pair = len(task.text_columns) == 2
    out = []
    for line_no, row in rows:
        a = _field(row, (task.text_columns[0], "text_a"), name, line_no)
        b = _field(row, (task.text_columns[1], "text_b"), name, line_no) if pair else None
        out.append((a, b))
    if not out:
        raise DataError(f"{name}: no rows to predict")
    return out


def _field(row: dict, names: tuple[str, str], source: str, line_no: int) -> str:
    for key in names:
        if key in row and row[key] is not None:
            return str(row[key])
    raise DataError(f"{source}: line {line_no}: expected a field named '{names[0]}' or '{names[1]}'")


def predict_texts(
    model: MultiTaskModel, tokenizer, task: TaskSpec, texts: list[tuple[str, str | None]], accelerator,
    batch_size: int = 128, max_length: int = 128,
) -> list[dict]:  # fmt: skip
    """Predictions for `texts` (length-sorted batches, returned in input order)."""
    if task.name not in model.task_names:
        raise DataError(f"the model has no head for '{task.name}' (it has: {', '.join(model.task_names)})")
    examples = [Example(f"input:{i}", a, b, 0) for i, (a, b) in enumerate(texts)]
    split = tokenize_split(examples, tokenizer, max_length, task.name, "input")
    index = model.task_names.index(task.name)
    outputs = predict(model, split, index, task_specs(model), accelerator, batch_size, desc=f"predict {task.name}")
    if task.kind == "regression":
        return [{"score": float(s)} for s in unscale(task, outputs)]
    probs = torch.softmax(torch.from_numpy(outputs), dim=-1).numpy()
    return [
        {"label": task.labels[int(np.argmax(p))], "probabilities": dict(zip(task.labels, map(float, p)))} for p in probs
    ]
