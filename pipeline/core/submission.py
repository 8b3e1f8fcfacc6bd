"""GLUE leaderboard submission files: a model's predictions on a task's test.tsv, as `index<TAB>prediction`.

The GLUE test files (`<TASK>/test.tsv`; MNLI's test_matched, test_mismatched and the AX diagnostic set) have no
labels: a header with `index` (or `id`) and the task's text columns, no quoting. Each prediction is written as the
task's TSV spells its labels (a class index for 0/1 tasks, a label name for MNLI, QNLI and RTE), a score clipped
to the task's range for STS-B. Custom tasks have no leaderboard: they are skipped.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.model import load_tokenizer
from pipeline.core.predict import load_student, predict_texts
from pipeline.core.store import write_text
from pipeline.core.tasks import TaskSpec


def read_test_split(task: TaskSpec, path: Path) -> tuple[list[str], list[tuple[str, str | None]]]:
    """A GLUE test file: a header with `index` (or `id`) and the task's text columns; no quoting."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines:
        raise ValueError(f"{path}: line 1: empty file; expected a header with 'index' and {list(task.text_columns)}")
    header = lines[0].split("\t")
    columns = list(task.text_columns)
    key = "index" if "index" in header else "id"
    for column in (key, *columns):
        if column not in header:
            raise ValueError(f"{path}: line 1: header lacks column {column!r}; header found: {header}")
    ids, texts = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < len(header):
            raise ValueError(f"{path}: line {number}: {len(cells)} fields, expected {len(header)}")
        ids.append(cells[header.index(key)])
        pair = [cells[header.index(c)] for c in columns]
        texts.append((pair[0], pair[1] if len(pair) > 1 else None))
    return ids, texts


def glue_test_files(task: TaskSpec, data_dir: Path) -> list[tuple[Path, str]]:
    """(the test file, the submission file's name) of a GLUE task: MNLI's matched, mismatched and AX sets."""
    if task.name == "mnli":
        folder = data_dir / task.glue_dir
        return [
            (folder / "test_matched.tsv", "MNLI-m"),
            (folder / "test_mismatched.tsv", "MNLI-mm"),
            (data_dir / "diagnostic" / "diagnostic.tsv", "AX"),
        ]
    return [(data_dir / task.glue_dir / "test.tsv", task.glue_dir)]


def _prediction(task: TaskSpec, result: dict) -> str:
    if task.kind == "regression":
        lo, hi = task.label_range
        return f"{min(max(result['score'], lo), hi):.3f}"
    index = task.labels.index(result["label"])
    return task.tsv_labels[index] if task.tsv_labels else str(index)


def write_submission(
    models: dict[str, Path], tasks: list[TaskSpec], data_dir: Path, out_dir: Path, accelerator, max_length: int
) -> list[str]:
    """The leaderboard file of each GLUE task of `tasks` whose test file `data_dir` has, predicted by its model
    (`models`: task name → a saved model folder), into `out_dir`; returns the names of the files written."""
    written = []
    for task in (t for t in tasks if t.glue_dir is not None):
        for path, label in glue_test_files(task, data_dir):
            if not path.is_file():
                continue
            model = load_student(models[task.name]).to(accelerator.device)
            ids, texts = read_test_split(task, path)
            tokenizer = load_tokenizer(str(models[task.name]))
            results = predict_texts(model, tokenizer, task, texts, accelerator, max_length=max_length)
            rows = ["index\tprediction", *(f"{i}\t{_prediction(task, r)}" for i, r in zip(ids, results))]
            write_text(out_dir / f"{label}.tsv", "\n".join(rows) + "\n")
            written.append(f"{label}.tsv")
    return written
