"""Read GLUE examples from a folder in the original TSV layout or from the Hub (`nyu-mll/glue`).

Both readers return the same `Example`s in the same order: ids are `"{task}:{split}:{row}"` with `row` the 0-based
data-row index in file order, labels are class indices in `TaskSpec.labels` order (or the unscaled float score for
regression), and every text field has its surrounding whitespace stripped (SST-2 sentences end with a space in the
TSV). The TSV reader is strict: every problem is a `DataError` naming the file, the 1-based line and the column; an
empty text (a blank sentence) is one too, since it would train on nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import DataError
from pipeline.core.tasks import TaskSpec

HUB_DATASET = "nyu-mll/glue"
HUB_SPLITS = {
    "train": "train",
    "dev": "validation",
    "dev_matched": "validation_matched",
    "dev_mismatched": "validation_mismatched",
}
# A plain decimal number; stricter than float(), which also takes "nan", "inf", "1_0" and non-ASCII digits.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# How much of an offending input an error message quotes: enough to find it, never a whole file read as one line.
QUOTE_LIMIT = 200


def quote(value: object) -> str:
    """`repr(value)` for an error message, cut to `QUOTE_LIMIT` characters (saying how long it was)."""
    text = repr(value)
    if len(text) <= QUOTE_LIMIT:
        return text
    return f"{text[:QUOTE_LIMIT]}… ({len(text)} characters in all)"


def check_text(value: object, where: str) -> str:
    """A text field's value with surrounding whitespace stripped.

    Raises:
        DataError: The value is not a string (a number, a null), holds a lone surrogate, or is empty once stripped:
            an empty sentence would train (or be predicted) on nothing but [CLS] [SEP], so it is refused, not kept.
    """
    if not isinstance(value, str):
        raise DataError(f"{where}: expected text, got {quote(value)}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:  # a lone surrogate, e.g. JSON's "\ud800": no tokenizer takes it
            raise DataError(f"{where}: the text holds {quote(value[err.start])}, which is not a character") from None
    text = value.strip()
    if not text:
        raise DataError(f"{where}: the text is empty ({quote(value)}); fill it in or delete the example")
    return text


@dataclass(frozen=True)
class Example:
    """One GLUE example.

    Attributes:
        id: Stable id `"{task}:{split}:{row}"`, `row` being the 0-based data-row index in file order.
        text_a: The first (or only) text, surrounding whitespace stripped.
        text_b: The second text of a pair task, stripped; None for single-sentence tasks.
        label: Class index in `TaskSpec.labels` order, or the unscaled float score for regression.
    """

    id: str
    text_a: str
    text_b: str | None
    label: int | float


def _check_split(task: TaskSpec, split: str) -> None:
    if split not in task.splits:
        raise ValueError(f"task {task.name!r} has no split {split!r}; expected one of {', '.join(task.splits)}")


def split_path(task: TaskSpec, split: str, data_dir: Path) -> Path:
    """Where a split lives in the GLUE TSV layout: `<data_dir>/<glue_dir>/<split>.tsv`.

    Args:
        task: The task.
        split: "train", "dev", or for MNLI "dev_matched" / "dev_mismatched".
        data_dir: Root of the GLUE TSV layout.

    Returns:
        The file path (not checked for existence).

    Raises:
        ValueError: The task has no such split.
    """
    _check_split(task, split)
    return Path(data_dir) / task.glue_dir / f"{split}.tsv"


def _read_lines(path: Path) -> list[str]:
    """Decode a file into lines without their "\\n" / "\\r\\n" endings; a leading BOM and trailing blank lines go."""
    lines = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            lines.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: line {number}: not valid UTF-8 ({err.reason} at byte {err.start})") from err
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def _cr_hint(line: str) -> str:
    """For a message about a line holding carriage returns: the likely cause (CR-only line ends), else nothing."""
    if "\r" not in line:
        return ""
    return (
        f" (the line holds {line.count(chr(13))} carriage returns (\\r) not followed by \\n: if the file has CR-only "
        "line ends, as old Mac editors write, convert them to \\n)"
    )


def parse_decimal(value: str) -> float:
    """A plain decimal number ("3", "-0.5", "1e3") as a float; NaN for anything else ("nan", "inf", "1_0", "")."""
    return float(value) if _NUMBER.fullmatch(value) else math.nan


def _parse_score(task: TaskSpec, value: str, where: str) -> float:
    assert task.label_range is not None
    low, high = task.label_range
    score = parse_decimal(value)
    if not (math.isfinite(score) and low <= score <= high):  # also rejects NaN and "1e999" (inf)
        raise DataError(f"{where}: score {quote(value)} is not a finite decimal number in [{low}, {high}]")
    return score


def _parse_label(task: TaskSpec, value: str, where: str) -> int | float:
    """Turn a TSV label cell into a class index (classification) or a float score (regression)."""
    value = value.strip()
    if task.tsv_labels is None:
        return _parse_score(task, value, where)
    if value not in task.tsv_labels:
        allowed = ", ".join(repr(label) for label in task.tsv_labels)
        raise DataError(f"{where}: label {quote(value)} is not one of the {task.name} labels {allowed}")
    return task.tsv_labels.index(value)


def _get_columns(task: TaskSpec, path: Path, lines: list[str]) -> tuple[tuple[str, ...], int]:
    """Return the column names and the index of the first data line."""
    if task.tsv_header is not None:
        return task.tsv_header, 0
    if not lines:
        expected = [*task.text_columns, task.label_column]
        raise DataError(f"{path}: line 1: the file is empty (empty split); expected a header with columns {expected}")
    header = tuple(lines[0].split("\t"))
    for column in (*task.text_columns, task.label_column):
        if column not in header:
            raise DataError(
                f"{path}: line 1: header lacks required column {column!r}; header found: {quote(list(header))}"
                f"{_cr_hint(lines[0])}"
            )
    return header, 1


def read_tsv_split(task: TaskSpec, split: str, data_dir: str | Path) -> list[Example]:
    """Read one split from a folder in the GLUE TSV layout.

    Lines are split on tabs only (no CSV quoting: GLUE sentences contain unbalanced quotes).

    Args:
        task: The task.
        split: "train", "dev", or for MNLI "dev_matched" / "dev_mismatched".
        data_dir: Root of the GLUE TSV layout, e.g. `<data_dir>/SST-2/train.tsv`.

    Returns:
        The examples in file order.

    Raises:
        DataError: Missing file, bad encoding, missing header column, wrong field count, empty text, bad label, or no
            data rows.
    """
    path = split_path(task, split, Path(data_dir))
    if not path.is_file():
        raise DataError(
            f"no {split} data for task {task.name!r}: {path} does not exist. Expected the GLUE TSV layout "
            f"<data_dir>/{task.glue_dir}/{split}.tsv under data_dir={str(data_dir)!r}"
        )
    lines = _read_lines(path)
    columns, first = _get_columns(task, path, lines)
    if len(lines) <= first:
        after = " after the header" if first else ""
        raise DataError(f"{path}: line {first + 1}: expected data rows{after}, found none (empty split)")
    text_index = [columns.index(column) for column in task.text_columns]
    label_index = columns.index(task.label_column)
    examples = []
    for row, line in enumerate(lines[first:]):
        number = first + row + 1
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise DataError(
                f"{path}: line {number}: expected {len(columns)} tab-separated fields {quote(list(columns))}, "
                f"got {len(fields)}{_cr_hint(line)}"
            )
        texts = [check_text(fields[i], f"{path}: line {number}: column {columns[i]!r}") for i in text_index]
        where = f"{path}: line {number}: column {task.label_column!r}"
        examples.append(
            Example(
                id=f"{task.name}:{split}:{row}",
                text_a=texts[0],
                text_b=texts[1] if len(texts) > 1 else None,
                label=_parse_label(task, fields[label_index], where),
            )
        )
    return examples


def _check_hub_label(task: TaskSpec, value: object, where: str) -> int | float:
    if task.labels is None:
        assert task.label_range is not None
        low, high = task.label_range
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
            raise DataError(f"{where}: score {value!r} is not a finite number in [{low}, {high}]")
        return float(value)
    if not isinstance(value, int) or not 0 <= value < len(task.labels):
        raise DataError(f"{where}: label {value!r} is not a class index 0..{len(task.labels) - 1} of {task.labels}")
    return value


def read_hub_split(task: TaskSpec, split: str) -> list[Example]:
    """Read one split of `nyu-mll/glue` through `datasets.load_dataset` (needs the Hub or a warm cache).

    Args:
        task: The task.
        split: "train", "dev", or for MNLI "dev_matched" / "dev_mismatched" (mapped to the Hub's "validation*").

    Returns:
        The examples in dataset order, in the same form as `read_tsv_split`.

    Raises:
        DataError: The Hub could not be reached, or a row has an invalid label or a missing or empty text.
    """
    _check_split(task, split)
    import datasets  # slow import; only the Hub path needs it

    hub_split = HUB_SPLITS[split]
    try:
        dataset = datasets.load_dataset(HUB_DATASET, task.hub_config, split=hub_split)
    except OSError as err:  # ConnectionError, huggingface_hub's HTTP / offline errors and "not found" are OSErrors
        raise DataError(
            f"could not load {HUB_DATASET} config {task.hub_config!r} split {hub_split!r} for task {task.name!r}: "
            f"the Hugging Face Hub could not be reached ({type(err).__name__}: {err}). Pass a local folder in the "
            f"GLUE TSV layout (<data_dir>/{task.glue_dir}/{split}.tsv) with --data-dir / data.data_dir instead."
        ) from err
    columns = task.hub_text_columns or task.text_columns
    data = dataset.to_dict()
    examples = []
    for row in range(len(dataset)):
        where = f"{HUB_DATASET}/{task.hub_config} split {hub_split}: row {row}"
        texts = [check_text(data[column][row], f"{where}: column {column!r}") for column in columns]
        examples.append(
            Example(
                id=f"{task.name}:{split}:{row}",
                text_a=texts[0],
                text_b=texts[1] if len(texts) > 1 else None,
                label=_check_hub_label(task, data["label"][row], f"{where}: column 'label'"),
            )
        )
    return examples


def read_split(task: TaskSpec, split: str, data_dir: str | Path | None) -> list[Example]:
    """Read a split from `data_dir` in the GLUE TSV layout, or from the Hub when `data_dir` is None."""
    if data_dir is None:
        return read_hub_split(task, split)
    return read_tsv_split(task, split, data_dir)
