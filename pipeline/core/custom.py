"""Your own tasks: declared under `data.custom_tasks`, read from CSV, TSV or JSON Lines files or a Hub dataset, and
turned into a `TaskSpec` that every stage uses like a GLUE task's.

    data:
      tasks: [sst2, reviews]
      custom_tasks:
        reviews: {train: reviews-train.csv, dev: reviews-dev.csv, text: [review], label: stars, metrics: [accuracy]}

Files: the format comes from the suffix (`.csv`, `.tsv`, `.jsonl`) unless `format` names it. A CSV or TSV file's first
line names its columns, unless `columns` does (a file without a header line). Fields in double quotes may hold the
delimiter, line breaks and doubled quotes, as the csv module reads them; with `quoting: false` quotes are plain text
and every delimiter splits (as in GLUE's TSV files). Other columns (an index column, ids) are ignored. JSON Lines: one
object per line. Blank lines are skipped everywhere; a row whose text is empty (or not text: a number, a null) is an
error naming its line, never a silent empty example. Files are read by `tables.py`.

Labels: a classification task's classes are `labels` in the declared order; else, for a Hub dataset whose label
column is a ClassLabel, its names in its order; else the sorted set of values in the training data (in numeric order
when every value is an integer, so "10" follows "9"). Values are compared as text: 3 in JSON and "3" in a CSV are the
same label. A regression task's range (which scales its scores to [0, 1]) is `range`, or else the training data's
minimum and maximum; only a declared range rejects scores outside it.

Examples are `Example`s with ids `"{task}:{split}:{row}"`, as GLUE's. Every problem is a `DataError` naming the file
and its 1-based line (or the Hub dataset, split and 0-based row), the column, and what was expected.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.glue import DataError, Example, check_text, parse_decimal, quote
from pipeline.core.tables import read_json_lines, read_table, read_text
from pipeline.core.tasks import TaskSpec

if TYPE_CHECKING:
    from pipeline.core.config import CustomTaskConfig

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}
_INTEGER = re.compile(r"[+-]?[0-9]+")
DEFAULT_METRICS = {"classification": ("accuracy",), "regression": ("spearman", "pearson")}


@dataclass(frozen=True)
class Record:
    """One row of a split before its label is checked against the task.

    Attributes:
        where: Where the row is, for messages: "FILE: line N" or "Hub dataset D split S: row N".
        texts: The one or two text fields, surrounding whitespace stripped.
        label: The class as text (classification) or the score (regression).
    """

    where: str
    texts: tuple[str, ...]
    label: str | float


def file_format(path: str, declared: str) -> str | None:
    """The declared format, or else the one the file's suffix names: "csv", "tsv", "jsonl", or None."""
    return declared if declared != "auto" else SUFFIXES.get(Path(path).suffix.lower())


def _read_delimited(path: Path, delimiter: str, decl: CustomTaskConfig) -> list[tuple[str, dict[str, str]]]:
    """(where, {column: field}) per data row of a CSV or TSV file."""
    hint = "; if quotes are plain text in this file, set quoting: false" if decl.quoting else ""
    required = [(column,) for column in (*decl.text, decl.label)]
    table = read_table(read_text(path), str(path), delimiter, required, decl.quoting, decl.columns, hint)
    return [(f"{path}: line {line}", row) for line, row in table.rows]


def _read_jsonl(path: Path, decl: CustomTaskConfig) -> list[tuple[str, dict[str, Any]]]:
    """(where, object) per non-blank line of a JSON Lines file."""
    required = [(column,) for column in (*decl.text, decl.label)]
    return [(f"{path}: line {line}", row) for line, row in read_json_lines(read_text(path), str(path), required)]


def _read_hub(decl: CustomTaskConfig, split: str) -> tuple[str, list[tuple[str, dict[str, Any]]], list[str] | None]:
    """The Hub split's description, its (where, row) pairs, and its label column's ClassLabel names (or None)."""
    import datasets  # slow import; only the Hub path needs it

    source = f"Hub dataset {decl.hub}" + (f" ({decl.hub_config})" if decl.hub_config else "") + f" split {split!r}"
    try:
        dataset = datasets.load_dataset(decl.hub, decl.hub_config, split=split)
    except (OSError, ValueError) as err:  # unreachable Hub, unknown dataset (OSError); unknown split (ValueError)
        raise DataError(f"could not load {source}: {type(err).__name__}: {err}") from err
    for column in (*decl.text, decl.label):
        if column not in dataset.column_names:
            raise DataError(f"{source}: no column {column!r}; columns found: {dataset.column_names}")
    feature = dataset.features[decl.label]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    if len(dataset) == 0:
        raise DataError(f"{source}: no rows (empty split)")
    data = dataset.to_dict()
    rows = []
    for row in range(len(dataset)):
        values = {column: data[column][row] for column in (*decl.text, decl.label)}
        if names is not None:
            index = values[decl.label]
            if not isinstance(index, int) or not 0 <= index < len(names):
                raise DataError(
                    f"{source}: row {row}: column {decl.label!r}: label {index!r} is not a class index "
                    f"0..{len(names) - 1} of the dataset's names {names}"
                )
            values[decl.label] = names[index]
        rows.append((f"{source}: row {row}", values))
    return source, rows, names


def _class(value: Any, where: str) -> str:
    """A class label as text: a string (stripped) or an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: expected a label name or an integer, got {quote(value)}")
    return value.strip()


def _score(value: Any, where: str) -> float:
    """A regression label: a finite number, or text holding a plain decimal number."""
    if isinstance(value, str):
        score = parse_decimal(value.strip())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            score = float(value)
        except OverflowError:  # an integer beyond a float's range: JSON allows 400 digits
            score = math.inf
    else:
        score = math.nan
    if not math.isfinite(score):
        raise DataError(f"{where}: score {quote(value)} is not a finite decimal number")
    return score


def read_records(decl: CustomTaskConfig, split: str) -> tuple[str, list[Record], list[str] | None]:
    """Read one split of a declared task.

    Args:
        decl: The task's declaration.
        split: "train", "dev" or "test"; the declaration's field of that name is the file (or the Hub split).

    Returns:
        The split's source (file path or Hub description), its rows in order, and the label names a Hub ClassLabel
        column declares (None otherwise).

    Raises:
        DataError: A missing or unreadable file, no rows, a missing column, a ragged row, or bad text or label.
    """
    location = getattr(decl, split)
    if decl.hub is not None:
        source, rows, names = _read_hub(decl, location)
    else:
        path, names = Path(location), None
        fmt = file_format(location, decl.format)
        rows = _read_jsonl(path, decl) if fmt == "jsonl" else _read_delimited(path, "\t" if fmt == "tsv" else ",", decl)
        source = str(path)
    parse = _class if decl.kind == "classification" else _score
    records = [
        Record(
            where=where,
            texts=tuple(check_text(row[column], f"{where}: column {column!r}") for column in decl.text),
            label=parse(row[decl.label], f"{where}: column {decl.label!r}"),
        )
        for where, row in rows
    ]
    return source, records, names


def _sorted_labels(values: set[str]) -> tuple[str, ...]:
    """Inferred classes in a stable order: numeric when every value is an integer, else alphabetical."""
    if all(_INTEGER.fullmatch(value) for value in values):
        return tuple(sorted(values, key=int))
    return tuple(sorted(values))


def resolve_task(name: str, decl: CustomTaskConfig) -> TaskSpec:
    """The `TaskSpec` of a declared task; reads its training split when the label set or range is to be inferred.

    Raises:
        DataError: The training split cannot be read, or holds a single class (or a single score).
    """
    labels = None if decl.labels is None else tuple(str(label).strip() for label in decl.labels)
    label_range = None if decl.range is None else (float(decl.range[0]), float(decl.range[1]))
    if decl.kind == "classification" and labels is None:
        source, records, names = read_records(decl, "train")
        labels = tuple(names) if names is not None else _sorted_labels({str(r.label) for r in records})
        if len(labels) < 2:
            raise DataError(
                f"{source}: column {decl.label!r}: every training example has the label {labels[0]!r}; a "
                f"classification task needs two classes or more (declare them under data.custom_tasks.{name}.labels)"
            )
    if decl.kind == "regression" and label_range is None:
        source, records, _ = read_records(decl, "train")
        scores = [float(r.label) for r in records]
        label_range = (min(scores), max(scores))
        if label_range[0] == label_range[1]:
            raise DataError(
                f"{source}: column {decl.label!r}: every training score is {scores[0]}; declare the range of valid "
                f"scores under data.custom_tasks.{name}.range"
            )
    metrics = decl.metrics or DEFAULT_METRICS[decl.kind]
    return TaskSpec(
        name=name,
        glue_dir=None,
        hub_config=None,
        text_columns=tuple(decl.text),
        label_column=decl.label,
        labels=labels,
        tsv_labels=labels,
        label_range=label_range,
        metrics=tuple(metrics),
        main_metric=metrics[0],
        dev_splits=("dev", "test") if decl.test is not None else ("dev",),
    )


def read_custom_split(task: TaskSpec, decl: CustomTaskConfig, split: str) -> list[Example]:
    """Read one split of a declared task as `Example`s (class indices in `task.labels` order, or raw scores).

    Raises:
        DataError: As `read_records`, or a label outside the task's classes (or outside a declared range).
    """
    _, records, _ = read_records(decl, split)
    index = {label: i for i, label in enumerate(task.labels or ())}
    if decl.labels is not None:
        origin = f"declared under data.custom_tasks.{task.name}.labels"
    else:
        origin = f"inferred from the train split, {decl.train}"
    examples = []
    for row, record in enumerate(records):
        where = f"{record.where}: column {decl.label!r}"
        if task.kind == "classification" and record.label not in index:
            raise DataError(f"{where}: label {record.label!r} is not one of the task's labels {task.labels} ({origin})")
        if decl.range is not None and not decl.range[0] <= record.label <= decl.range[1]:
            raise DataError(
                f"{where}: score {record.label} is outside the range {list(decl.range)} declared under "
                f"data.custom_tasks.{task.name}.range"
            )
        examples.append(
            Example(
                id=f"{task.name}:{split}:{row}",
                text_a=record.texts[0],
                text_b=record.texts[1] if len(record.texts) > 1 else None,
                label=index[record.label] if task.kind == "classification" else record.label,
            )
        )
    return examples
