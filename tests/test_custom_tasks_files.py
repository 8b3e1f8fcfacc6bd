"""Your own tasks' files: every format reads the same examples, and a bad file is an error that names the file,
the line and what was expected."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from custom_tasks_helpers import declare, delimited, jsonl, read_dev, write

from pipeline.core.custom import resolve_task
from pipeline.core.glue import DataError, Example

# Texts that need quoting in CSV and TSV: the delimiters, quotes, a line break.
ROWS = [
    ("a plain sentence", "pos"),
    ("commas, and more, commas", "neg"),
    ('she said "hello" twice', "pos"),
    ("a\ttab inside", "neu"),
    ("two\nlines", "neg"),
    ("  padded  ", "neu"),
]
EXPECTED = [Example(f"mine:dev:{i}", text.strip(), None, ["neg", "neu", "pos"].index(y)) for i, (text, y) in
            enumerate(ROWS)]  # fmt: skip


# --------------------------------------------------------------------------------------------------------- readers


@pytest.mark.parametrize(
    "variant",
    ["csv", "csv-index-column", "csv-no-header", "tsv", "tsv-index-column", "jsonl", "jsonl-declared-format"],
)
def test_every_format_reads_the_same_examples(tmp_path: Path, variant: str) -> None:
    fmt = variant.split("-")[0]
    suffix = "txt" if variant == "jsonl-declared-format" else fmt
    kwargs = {"format": fmt} if suffix == "txt" else {}
    if fmt == "jsonl":
        text = "\n" + jsonl([{"sentence": t, "label": y, "id": i} for i, (t, y) in enumerate(ROWS)]) + "\n\n"
    else:
        header = None if variant.endswith("no-header") else ("sentence", "label")
        text = delimited(ROWS, "," if fmt == "csv" else "\t", header, index=variant.endswith("index-column"))
        if header is None:
            kwargs["columns"] = ("sentence", "label")
        if variant.endswith("index-column"):
            assert text.startswith(("," if fmt == "csv" else "\t") + "sentence")  # the index column has no name
    path = write(tmp_path / f"dev.{suffix}", text)
    assert read_dev(declare(path, path, **kwargs)) == EXPECTED


def test_quoted_csv_as_written_by_hand(tmp_path: Path) -> None:
    text = 'id,sentence,label\r\n7,"a, b",pos\r\n8,"say ""hi""",neg\r\n9,plain,pos\r\n'
    path = write(tmp_path / "dev.csv", "\ufeff" + text)  # a byte-order mark and Windows line ends, too
    assert [(e.text_a, e.label) for e in read_dev(declare(path, path))] == [("a, b", 1), ('say "hi"', 0), ("plain", 1)]


def test_unquoted_tsv_keeps_quotes_as_text(tmp_path: Path) -> None:
    text = 'sentence\tlabel\n"an opening quote only\tpos\nhe said "hi\tneg\n'
    path = write(tmp_path / "dev.tsv", text)
    examples = read_dev(declare(path, path, quoting=False))
    assert [e.text_a for e in examples] == ['"an opening quote only', 'he said "hi']
    with pytest.raises(DataError, match=r"dev\.tsv: line 2: .*set quoting: false"):
        read_dev(declare(path, path))  # with quoting, the first quote never closes


def test_sentence_pairs(tmp_path: Path) -> None:
    path = write(
        tmp_path / "dev.jsonl", jsonl([{"q1": " a? ", "q2": "b?", "dup": 1}, {"q1": "c", "q2": "d", "dup": 0}])
    )
    examples = read_dev(declare(path, path, text=("q1", "q2"), label="dup"))
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [("a?", "b?", 1), ("c", "d", 0)]


# -------------------------------------------------------------------------------------------------------- bad files


BAD_FILES = {  # case: (file name, content, what the message must say besides the file)
    "missing column": ("dev.csv", "sentence,lab\nx,pos\n", ["line 1", "lacks column 'label'", "['sentence', 'lab']"]),
    "missing field": ("dev.jsonl", '{"sentence": "x", "label": "a"}\n{"sentence": "y"}', ["line 2", "no field"]),
    "bad label": ("dev.tsv", "sentence\tlabel\nx\tpos\ny\t\n", ["line 3", "column 'label'", "expected a label name"]),
    "empty file": ("dev.csv", "", ["line 1", "the file is empty", "['sentence', 'label']"]),
    "header only": ("dev.csv", "sentence,label\n\n", ["line 3", "expected data rows after the header"]),
    "empty jsonl": ("dev.jsonl", "\n \n", ["line 1", "the file is empty"]),
    "ragged row": ("dev.csv", "sentence,label\nx,pos\ny,neg,extra\n", ["line 3", "expected 2 comma-separated fields"]),
    "unclosed quote": ("dev.csv", 'sentence,label\nx,pos\n"y,neg\nz,pos\n', ["line 3", "set quoting: false"]),
    "not json": ("dev.jsonl", '{"sentence": "x", "label": "pos"\n', ["line 1", "not valid JSON"]),
    "not an object": ("dev.jsonl", '["x", "pos"]\n', ["line 1", "expected a JSON object"]),
    "text not text": ("dev.jsonl", '{"sentence": null, "label": "a"}\n', ["line 1", "'sentence'", "expected text"]),
    "not utf-8": ("dev.csv", b"sentence,label\nx,pos\n\xff,neg\n", ["line 3", "not valid UTF-8"]),
    "no such file": ("missing.csv", None, ["no such file"]),
    "empty text": ("dev.csv", "sentence,label\nx,pos\n  ,neg\n", ["line 3", "'sentence'", "the text is empty"]),
    "quoted empty text": ("dev.tsv", 'sentence\tlabel\nx\tpos\n""\tneg\n', ["line 3", "the text is empty"]),
    "empty text in json": ("dev.jsonl", '{"sentence": " ", "label": "a"}\n', ["line 1", "the text is empty"]),
    "number as text": ("dev.jsonl", '{"sentence": 5, "label": "a"}\n', ["line 1", "expected text, got 5"]),
    "lone surrogate": ("dev.jsonl", '{"sentence": "a\\ud800", "label": "a"}\n', ["line 1", "not a character"]),
    "utf-16": ("dev.csv", "sentence,label\nx,pos\n".encode("utf-16"), ["line 1", "NUL byte", "save it as UTF-8"]),
    "huge integer": ("dev.jsonl", '{"sentence": "x", "label": 1' + "0" * 5000 + "}\n", ["line 1", "refuses"]),
    "deep nesting": ("dev.jsonl", '{"sentence": "x", "label": ' + "[" * 5000 + "\n", ["line 1", "refuses"]),
    "long line": ("dev.jsonl", '["' + "x" * 100_000 + '"]\n', ["line 1", "expected a JSON object", "100004 char"]),
    "cr-only json": ("dev.jsonl", '{"sentence": "x", "label": "a"}\r["y"]\r', ["line 2", "expected a JSON object"]),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_names_file_line_and_what_was_expected(tmp_path: Path, case: str) -> None:
    name, content, fragments = BAD_FILES[case]
    train = write(tmp_path / "train.csv", "sentence,label\nx,pos\ny,neg\n")
    dev = str(tmp_path / name) if content is None else write(tmp_path / name, content)
    with pytest.raises(DataError) as info:
        read_dev(declare(train, dev))
    message = str(info.value)
    assert message.startswith(dev), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert len(message) < len(dev) + 400, f"the message quotes too much of the file: {message[:500]!r}..."


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_cr_only_line_ends_read_the_same(tmp_path: Path, fmt: str) -> None:
    """Files saved with old-Mac line ends (a lone \\r) read as with \\n, quoted line breaks kept."""
    if fmt == "jsonl":
        text = jsonl([{"sentence": t, "label": y} for t, y in ROWS]).replace("\n", "\r")  # JSON escapes its own
    else:
        out = io.StringIO()
        csv.writer(out, delimiter="," if fmt == "csv" else "\t", lineterminator="\r", quoting=csv.QUOTE_ALL).writerows(
            [("sentence", "label"), *ROWS]
        )
        text = out.getvalue()
    path = write(tmp_path / f"dev.{fmt}", text)
    assert "\n" not in text.replace("two\nlines", "")
    assert read_dev(declare(path, path)) == EXPECTED


def test_huge_integer_score_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "train.jsonl", '{"a": "x", "score": 1}\n{"a": "y", "score": 1' + "0" * 400 + "}\n")
    with pytest.raises(DataError, match=r"train\.jsonl: line 2: column 'score': score 1000.* is not a finite") as info:
        resolve_task("sim", declare(path, path, text=("a",), label="score", kind="regression"))
    assert len(str(info.value)) < len(path) + 400


def test_bad_score_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", "a\tb\tscore\nx\ty\t1\nx\ty\thigh\n")
    with pytest.raises(DataError, match=r"train\.tsv: line 3: column 'score': score 'high' is not a finite decimal"):
        resolve_task("sim", declare(path, path, text=("a", "b"), label="score", kind="regression"))
