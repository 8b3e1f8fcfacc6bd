"""Fuzzing the file readers of custom tasks (`read_records`) and of `predict` (`read_inputs`) with hypothesis.

Any bytes, delimiters, quoting, encodings and line ends either load every record of the file or raise a `DataError`
naming the file and a line; never another exception, never a silent half-read. Files built here from known rows
(with a writer of our own, not the csv module the readers use) must load exactly those rows.

Inputs tried per run: 250 + 250 (any input: random bytes, or valid files mutated) + 150 + 100 + 100 (known rows) +
100 (cut inside a quote) + 100 (other encodings) = 1050, in about ten seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.config import CustomTaskConfig
from pipeline.core.custom import read_records
from pipeline.core.glue import DataError
from pipeline.core.predict import read_inputs
from pipeline.core.tasks import get_glue_task

LABELS = ["pos", "neg", "3"]
LINE_ENDS = ["\n", "\r\n", "\r"]
SST2, MRPC = get_glue_task("sst2"), get_glue_task("mrpc")  # one text column ("sentence"); a pair ("#1 String", ...)

# Fuzz files are rewritten in place for every input: the tmp_path fixture is made once per test, not per input.
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# A sentence: any characters but NUL (a NUL byte marks a file as not text) and lone surrogates (not encodable); not
# blank once stripped, since an empty text is an error (tests/test_custom_tasks_files.py).
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), min_size=1, max_size=30).filter(
    str.strip
)
# One line of a sentence: no line break, no tab (for the files where quotes are plain text and every tab splits).
PLAIN_TEXT = TEXT.filter(lambda t: not set(t) & {"\t", "\r", "\n"})

# Pieces that push a file close to valid (headers, delimiters, quotes, JSON) or off it (bad UTF-8, NUL, UTF-16).
PIECES = st.sampled_from(
    [b"sentence", b"label", b"text_a", b"pos", b",", b"\t", b'"', b'""', b"\n", b"\r\n", b"\r", b" ", b"\xef\xbb\xbf",
     b"\xff", b"\xc3", b"\x00", b"{", b"}", b"[", b"]", b'"sentence": ', b'"label": ', b"null", b"5", b"1e999",
     b'"\\ud800"', b"\xe2\x80\xa8", b"s\x00e\x00",
     b"9" * 4400, b"[" * 5000]  # json.loads: an integer too long to convert (ValueError); nesting (RecursionError)
)  # fmt: skip
ANY_BYTES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(PIECES, st.binary(max_size=4), TEXT.map(str.encode)), max_size=60).map(b"".join),
)


def declare(path: Path, fmt: str, quoting: bool = True, columns: tuple[str, ...] | None = None) -> CustomTaskConfig:
    return CustomTaskConfig(
        train=str(path), dev=str(path), format=fmt, quoting=quoting, columns=columns, text=("sentence",), label="label"
    )


def assert_names_file_and_line(err: DataError, path: Path) -> None:
    message = str(err)
    assert message.startswith(str(path)) and re.search(r": line \d+: ", message), message
    assert len(message) < 1000, f"the message quotes too much of the input ({len(message)} characters)"


def quoted(field: str, delimiter: str, always: bool) -> str:
    """RFC 4180: a field holding the delimiter, a quote or a line break goes in quotes, its quotes doubled."""
    if always or set(field) & {delimiter, '"', "\r", "\n"}:
        return '"' + field.replace('"', '""') + '"'
    return field


def non_blank_lines(text: str) -> int:
    return sum(1 for line in re.split(r"\r\n|\r|\n", text) if line.strip())


# -------------------------------------------------------------------------------------------- known rows round trip


@st.composite
def delimited_file(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], dict]:
    """(file text, the rows it holds, how to declare it): any delimiter, quoting, line end, BOM, header or not, an
    index column, blank lines at the end."""
    quoting = draw(st.booleans())
    delimiter = draw(st.sampled_from([",", "\t"]))
    texts = TEXT if quoting else PLAIN_TEXT.filter(lambda t: delimiter not in t)
    rows = draw(st.lists(st.tuples(texts, st.sampled_from(LABELS)), min_size=1, max_size=12))
    end, always = draw(st.sampled_from(LINE_ENDS)), draw(st.booleans())
    header, index = draw(st.booleans()), draw(st.booleans())
    lines = [["", "sentence", "label"] if index else ["sentence", "label"]] if header else []
    lines += [[str(i), *row] if index else list(row) for i, row in enumerate(rows)]
    if quoting:
        text = end.join(delimiter.join(quoted(f, delimiter, always) for f in line) for line in lines)
    else:
        text = end.join(delimiter.join(line) for line in lines)
    text = draw(st.sampled_from(["", "\ufeff"])) + text + end * draw(st.integers(0, 3))
    columns = None if header else (("id", "sentence", "label") if index else ("sentence", "label"))
    return text, rows, {"quoting": quoting, "columns": columns, "fmt": "csv" if delimiter == "," else "tsv"}


@settings(FUZZ, max_examples=150)
@given(case=delimited_file())
def test_custom_csv_and_tsv_load_every_row(tmp_path: Path, case: tuple[str, list[tuple[str, str]], dict]) -> None:
    text, rows, how = case
    path = tmp_path / "dev.txt"  # the declared format, not the suffix, says how to read it
    path.write_bytes(text.encode("utf-8"))
    _, records, _ = read_records(declare(path, how["fmt"], how["quoting"], how["columns"]), "dev")
    assert [(r.texts[0], r.label) for r in records] == [(t.strip(), y) for t, y in rows]


@st.composite
def jsonl_file(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    """(file text, the rows it holds): any line end, escaped or raw non-ASCII, blank lines between, a BOM or not."""
    rows = draw(st.lists(st.tuples(TEXT, st.sampled_from(LABELS)), min_size=1, max_size=12))
    end, ascii_only = draw(st.sampled_from(LINE_ENDS)), draw(st.booleans())
    objects = [
        json.dumps({"id": i, "sentence": t, "label": y}, ensure_ascii=ascii_only) for i, (t, y) in enumerate(rows)
    ]
    blank = draw(st.sampled_from(["", " ", "\t"]))
    return draw(st.sampled_from(["", "\ufeff"])) + (end + blank + end).join(objects) + end, rows


@settings(FUZZ, max_examples=100)
@given(case=jsonl_file())
def test_custom_jsonl_loads_every_row(tmp_path: Path, case: tuple[str, list[tuple[str, str]]]) -> None:
    text, rows = case
    path = tmp_path / "dev.jsonl"
    path.write_bytes(text.encode("utf-8"))
    _, records, _ = read_records(declare(path, "auto"), "dev")
    assert [(r.texts[0], r.label) for r in records] == [(t.strip(), y) for t, y in rows]


@st.composite
def predict_file(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str | None]], bool]:
    """(suffix, file text, the texts it holds, pair task?) in CSV (quoted as needed), TSV (quotes are text) or JSONL,
    with the task's column names or text_a / text_b."""
    suffix, pair = draw(st.sampled_from([".csv", ".tsv", ".jsonl"])), draw(st.booleans())
    task, end = (MRPC if pair else SST2), draw(st.sampled_from(LINE_ENDS))
    names = list(task.text_columns) if draw(st.booleans()) else ["text_a", "text_b"][: len(task.text_columns)]
    texts = TEXT if suffix != ".tsv" else PLAIN_TEXT
    rows = draw(st.lists(st.tuples(*[texts] * len(names)), min_size=1, max_size=10))
    if suffix == ".jsonl":
        lines = [json.dumps(dict(zip(names, row))) for row in rows]
    elif suffix == ".csv":
        always = draw(st.booleans())
        lines = [",".join(quoted(f, ",", always) for f in line) for line in [names, *rows]]
    else:
        lines = ["\t".join(line) for line in [names, *rows]]
    expected = [(row[0].strip(), row[1].strip() if pair else None) for row in rows]
    return suffix, end.join(lines) + end, expected, pair


@settings(FUZZ, max_examples=100)
@given(case=predict_file())
def test_predict_reader_loads_every_row(tmp_path: Path, case) -> None:
    suffix, text, expected, pair = case
    path = tmp_path / f"in{suffix}"
    path.write_bytes(text.encode("utf-8"))
    assert read_inputs(str(path), MRPC if pair else SST2) == expected


# ---------------------------------------------------------------------------------------------------- any input


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """`valid` with a few pieces inserted, deleted or overwritten, or cut short: often still loadable, often not."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 3))):
        at, piece = draw(st.integers(0, len(data))), draw(PIECES)
        kind = draw(st.sampled_from(["insert", "delete", "overwrite", "cut"]))
        if kind == "insert":
            data[at:at] = piece
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "overwrite":
            data[at : at + len(piece)] = piece
        else:
            del data[at:]
    return bytes(data)


@st.composite
def custom_input(draw: st.DrawFn) -> tuple[bytes, str, bool, tuple[str, ...] | None]:
    """(file bytes, format, quoting, declared columns): random bytes, or a valid file of that format mutated."""
    source = draw(st.sampled_from(["random", "delimited", "jsonl"]))
    if source == "delimited":
        text, _, how = draw(delimited_file())
        return draw(mutated(text.encode("utf-8"))), how["fmt"], how["quoting"], how["columns"]
    if source == "jsonl":
        return draw(mutated(draw(jsonl_file())[0].encode("utf-8"))), "jsonl", True, None
    columns = draw(st.sampled_from([None, ("sentence", "label")]))
    return draw(ANY_BYTES), draw(st.sampled_from(["csv", "tsv", "jsonl"])), draw(st.booleans()), columns


@settings(FUZZ, max_examples=250)
@given(case=custom_input())
def test_custom_reader_loads_or_names_file_and_line(tmp_path: Path, case) -> None:
    content, fmt, quoting, columns = case
    path = tmp_path / f"dev.{fmt}"
    path.write_bytes(content)
    try:
        _, records, _ = read_records(declare(path, fmt, quoting, columns), "dev")
    except DataError as err:
        assert_names_file_and_line(err, path)
        return
    lines = [int(r.where.rsplit("line ", 1)[1]) for r in records]
    assert lines == sorted(set(lines)), "records out of file order, or two from one line"
    assert all(len(r.texts) == 1 and r.texts[0] and r.texts[0] == r.texts[0].strip() for r in records)
    if fmt == "jsonl" or not quoting:  # every non-blank line is a record (or the header): none may go missing
        header = fmt != "jsonl" and columns is None
        assert len(records) == non_blank_lines(content.decode("utf-8-sig")) - header


@st.composite
def predict_input(draw: st.DrawFn) -> tuple[bytes, str, bool]:
    """(file bytes, suffix, pair task?): random bytes, or a valid input file mutated."""
    if draw(st.booleans()):
        return draw(ANY_BYTES), draw(st.sampled_from([".csv", ".tsv", ".jsonl", ".txt"])), draw(st.booleans())
    suffix, text, _, pair = draw(predict_file())
    return draw(mutated(text.encode("utf-8"))), suffix, pair


@settings(FUZZ, max_examples=250)
@given(case=predict_input())
def test_predict_reader_loads_or_names_file_and_line(tmp_path: Path, case: tuple[bytes, str, bool]) -> None:
    content, suffix, pair = case
    path = tmp_path / f"in{suffix}"
    path.write_bytes(content)
    try:
        texts = read_inputs(str(path), MRPC if pair else SST2)
    except DataError as err:
        assert_names_file_and_line(err, path)
        return
    assert texts and all(a and a == a.strip() and (b is not None) == pair for a, b in texts)
    if suffix in (".jsonl", ".tsv"):  # one record per non-blank line, the header aside
        assert len(texts) == non_blank_lines(content.decode("utf-8-sig")) - (suffix == ".tsv")


# --------------------------------------------------------------------------------------------- truncated, encoded


@settings(FUZZ, max_examples=100)
@given(
    rows=st.lists(TEXT.filter(lambda t: '"' not in t), min_size=1, max_size=6),
    cut=st.integers(0, 1000),
    reader=st.sampled_from(["custom", "predict"]),
)
def test_file_cut_inside_a_quoted_field_raises(tmp_path: Path, rows: list[str], cut: int, reader: str) -> None:
    """A CSV file cut short inside its last quoted field (a copy or download interrupted) never loads as fewer rows:
    the quote never closes, and the message names the line where that record starts."""
    label = ',"pos"' if reader == "custom" else ""
    head = "sentence,label\n" if reader == "custom" else "sentence\n"
    body = "".join(f'"{t}"{label}\n' for t in rows[:-1])
    text = head + body + '"' + rows[-1][: cut % len(rows[-1])]
    path = tmp_path / "dev.csv"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(DataError, match=r"unexpected end of data") as info:
        if reader == "custom":
            read_records(declare(path, "csv"), "dev")
        else:
            read_inputs(str(path), SST2)
    assert_names_file_and_line(info.value, path)
    first_line = len(re.findall(r"\r\n|\r|\n", head + body)) + 1  # the line after the last complete record
    assert f": line {first_line}: " in str(info.value)


@settings(FUZZ, max_examples=100)
@given(
    rows=st.lists(st.tuples(TEXT, st.sampled_from(LABELS)), min_size=1, max_size=6),
    encoding=st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "utf-8-sig"]),
    fmt=st.sampled_from(["csv", "jsonl"]),
)
def test_other_encodings_raise_or_load_every_row(tmp_path: Path, rows, encoding: str, fmt: str) -> None:
    """UTF-16 and UTF-32 are refused (NUL bytes), Latin-1 is refused unless its bytes happen to be UTF-8 as well
    (ASCII text, or rare byte pairs such as "Ã©"): then every row loads."""
    if fmt == "jsonl":
        text = "".join(json.dumps({"sentence": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows)
    else:
        text = "sentence,label\n" + "".join(f"{quoted(t, ',', False)},{y}\n" for t, y in rows)
    path = tmp_path / f"dev.{fmt}"
    try:
        path.write_bytes(text.encode(encoding))
    except UnicodeEncodeError:  # Latin-1 holds only the first 256 code points
        path.write_bytes(text.encode(encoding, errors="replace"))
    try:
        _, records, _ = read_records(declare(path, fmt), "dev")
    except DataError as err:
        assert encoding != "utf-8-sig", err
        assert_names_file_and_line(err, path)
        return
    assert encoding in ("latin-1", "utf-8-sig")
    assert len(records) == len(rows)
