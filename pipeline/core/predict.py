"""Run a trained student (or teacher) on new text: `python -m pipeline predict`.

    python -m pipeline predict --model artifacts/glue-small/student/model --task sst2 --input reviews.tsv
    echo '{"sentence": "a gripping film"}' | python -m pipeline predict --model DIR --task sst2 --input -

Input: TSV or CSV with a header (by extension), or JSON Lines (`.jsonl`, or `-` for stdin), in UTF-8. The text fields
are the task's columns (SST-2: `sentence`; MRPC: `#1 String`, `#2 String`; a custom task: its `text` columns) or
`text_a` / `text_b`. A TSV file is split on every tab, quotes being plain text (as in GLUE's files); a CSV field may
be put in double quotes to hold commas, quotes (doubled) and line breaks. Anything that cannot be read whole is a
`DataError` naming the file and line: not UTF-8, a quote that never closes, a row with more or fewer fields than the
header, a JSON line that is not an object, a text that is not text (a number, a null) or is empty.
Output: one JSON object per input row, in input order: the label and class probabilities, or the score.
The tasks' specs (label names, text columns, score range) are read from the model's `heads.json`, so a model of
custom tasks predicts without the config or data that made it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from pipeline.core.checksums import record_checksum
from pipeline.core.data import tokenize_split, unscale
from pipeline.core.glue import DataError, Example, check_text
from pipeline.core.model import MultiTaskModel, load_model
from pipeline.core.store import read_json, write_json
from pipeline.core.tables import decode, read_json_lines, read_table, read_text
from pipeline.core.tasks import TaskSpec, get_glue_task, task_from_dict, task_to_dict
from pipeline.core.training import predict


def save_task_specs(model_dir: str | Path, tasks: list[TaskSpec]) -> None:
    """Store each head's task spec in the saved model's `heads.json` (under `heads.<task>.task`)."""
    path = Path(model_dir) / "heads.json"
    meta = read_json(path)
    for task in tasks:
        meta["heads"][task.name]["task"] = task_to_dict(task)
    write_json(path, meta)
    record_checksum(model_dir, "heads.json")


def task_specs(model: MultiTaskModel) -> list[TaskSpec]:
    """The task of each head of a loaded model, in head order: as saved in `heads.json`, or else (a model saved
    without them) the GLUE task of that name."""
    return [
        task_from_dict(model.head_specs[name]["task"]) if "task" in model.head_specs[name] else get_glue_task(name)
        for name in model.task_names
    ]


def load_student(model_dir: str | Path) -> MultiTaskModel:
    """A saved student (or teacher): a MultiTaskModel answering every task it was trained on, in eval mode.

    Raises:
        ModelLoadError: The folder's files do not match the checksums recorded when it was saved, or it has none (a
            folder of an older format); see `load_model`.
    """
    return load_model(model_dir, require_checksums=True).eval()


def _read_stdin() -> str:
    buffer = getattr(sys.stdin, "buffer", None)  # a text stream without one (a test's StringIO) is decoded already
    return decode(buffer.read(), "<stdin>") if buffer is not None else sys.stdin.read()


def read_inputs(path: str, task: TaskSpec) -> list[tuple[str, str | None]]:
    """Texts to predict, in file order, surrounding whitespace stripped; '-' reads JSON Lines from stdin.

    Raises:
        DataError: Naming the file (or <stdin>) and line: see the module docstring.
    """
    hub = task.hub_text_columns or task.text_columns  # the Hub's names (MRPC: sentence1) as well as the TSV's
    required = [tuple(dict.fromkeys((column, hub_name, generic))) for column, hub_name, generic in zip(
        task.text_columns, hub, ("text_a", "text_b"))]  # fmt: skip
    source = "<stdin>" if path == "-" else path
    text = _read_stdin() if path == "-" else read_text(Path(path))
    suffix = Path(path).suffix.lower()
    if path == "-" or suffix == ".jsonl":
        rows = read_json_lines(text, source, required)
    else:
        tsv = suffix == ".tsv"
        hint = "" if tsv else "; put a field holding commas, quotes or line breaks in double quotes, its quotes doubled"
        rows = read_table(text, source, "\t" if tsv else ",", required, quoting=not tsv, hint=hint).rows
    texts = [[_field(row, names, f"{source}: line {line}") for names in required] for line, row in rows]
    return [(t[0], t[1] if len(t) > 1 else None) for t in texts]


def _field(row: dict, names: tuple[str, ...], where: str) -> str:
    """The text under the first of `names` the row has (`read_table` / `read_json_lines` checked it has one)."""
    name = next(name for name in names if name in row)
    return check_text(row[name], f"{where}: field {name!r}")


def predict_texts(
    model: MultiTaskModel, tokenizer, task: TaskSpec, texts: list[tuple[str, str | None]], accelerator,
    batch_size: int = 128, max_length: int = 128,
) -> list[dict]:  # fmt: skip
    """Predictions for `texts` (length-sorted batches, returned in input order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
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
