"""CSV, TSV and JSON Lines, read strictly: the file readers of custom tasks (`custom.py`) and of `predict`.

Every problem is a `DataError` naming the source and the 1-based line where the record starts (lines end at "\\n",
"\\r\\n" or a lone "\\r"), quoting at most `QUOTE_LIMIT` characters of the input: not UTF-8 (or a NUL byte, as in
UTF-16), a quote that never closes, a row with more or fewer fields than the header, a header without a required
column, a line that is not a JSON object or lacks a required field. What loads holds every record of the file, in
order: only blank lines are skipped, never a row.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.glue import DataError, quote

# Lines end where the csv module ends them, so JSON Lines and CSV files number their lines alike.
_LINE_END = re.compile(r"\r\n|\r|\n")
_LINE_END_BYTES = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Table:
    """The data rows of a CSV or TSV file.

    Attributes:
        columns: The header line's fields, or the columns declared for a file without a header line.
        rows: (line where the record starts, {column: field}) per data row, in file order.
    """

    columns: tuple[str, ...]
    rows: list[tuple[int, dict[str, str]]]


def _line_of(raw: bytes, offset: int) -> int:
    return len(_LINE_END_BYTES.findall(raw[:offset])) + 1


def decode(raw: bytes, source: str) -> str:
    """A file's bytes as UTF-8 text, a leading byte-order mark dropped.

    Raises:
        DataError: Bytes that are not UTF-8, or a NUL byte (no text file holds one; UTF-16 text is full of them).
    """
    nul = raw.find(b"\0")
    if nul >= 0:
        raise DataError(
            f"{source}: line {_line_of(raw, nul)}: a NUL byte (byte {nul}): this is not UTF-8 text (UTF-16, or a "
            "binary file?); save it as UTF-8"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{source}: line {_line_of(raw, err.start)}: not valid UTF-8 ({err.reason} at byte {err.start}); save "
            "the file as UTF-8"
        ) from None


def read_text(path: Path) -> str:
    """The text of a UTF-8 file (see `decode`)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror})") from None
    return decode(raw, str(path))


def _wanted(names: tuple[str, ...]) -> str:
    return " or ".join(repr(name) for name in names)


def _check_header(fields: list[str], required: Sequence[tuple[str, ...]], source: str, line: int) -> None:
    for names in required:
        present = [name for name in names if name in fields]
        if not present:
            raise DataError(
                f"{source}: line {line}: header lacks column {_wanted(names)}; header found: {quote(fields)}"
            )
        for name in present:
            if fields.count(name) > 1:
                raise DataError(f"{source}: line {line}: column {name!r} appears twice in the header {quote(fields)}")


def _records(reader, source: str, separator: str, hint: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, fields) per record that is not a blank line."""
    while True:
        line = reader.line_num + 1  # a quoted field may span lines: the record starts after the last one read
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(
                f"{source}: line {line}: cannot split the {separator}-separated fields: {err}{hint}"
            ) from None
        if fields:
            yield line, fields


def read_table(
    text: str, source: str, delimiter: str, required: Sequence[tuple[str, ...]], quoting: bool = True,
    columns: tuple[str, ...] | None = None, hint: str = "",
) -> Table:  # fmt: skip
    """The data rows of CSV or TSV text.

    Args:
        text: The file's text (`read_text`).
        source: The file, for messages.
        delimiter: "," or "\\t".
        required: The columns the header must hold, each as alternatives of which one must be there (once):
            `[("sentence", "text_a")]`.
        quoting: Fields in double quotes may hold the delimiter, line breaks and doubled quotes (RFC 4180); False:
            quotes are plain text and every delimiter splits.
        columns: The column names of a file without a header line (None: the first line is the header).
        hint: Added to the message of a field that cannot be split (an unclosed quote): what to do about it.

    Raises:
        DataError: An unclosed or stray quote, a header without a required column, a row whose field count is not the
            header's, or no data rows.
    """
    mode = csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=mode, strict=True)
    separator = "tab" if delimiter == "\t" else "comma"
    header, rows = columns, []
    for line, fields in _records(reader, source, separator, hint):
        if header is None:
            _check_header(fields, required, source, line)
            header = tuple(fields)
        elif len(fields) != len(header):
            raise DataError(
                f"{source}: line {line}: expected {len(header)} {separator}-separated fields {quote(list(header))}, "
                f"got {len(fields)}"
            )
        else:
            rows.append((line, dict(zip(header, fields))))
    if rows:
        return Table(header, rows)
    if header is None or columns is not None:
        what = "a header line with the columns" if columns is None else "rows with the columns"
        raise DataError(f"{source}: line 1: the file is empty; expected {what} {list(header or _first(required))}")
    raise DataError(f"{source}: line {reader.line_num + 1}: expected data rows after the header, found none")


def _first(required: Sequence[tuple[str, ...]]) -> list[str]:
    return [names[0] for names in required]


def _parse_json(line: str, source: str, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{source}: line {number}: not valid JSON ({err.msg} at column {err.colno})") from None
    except (ValueError, RecursionError) as err:  # an integer of over 4300 digits; arrays nested thousands deep
        raise DataError(f"{source}: line {number}: JSON this reader refuses ({quote(str(err))})") from None


def read_json_lines(text: str, source: str, required: Sequence[tuple[str, ...]]) -> list[tuple[int, dict[str, Any]]]:
    """(line, object) per line of JSON Lines text that is not blank.

    Args:
        text: The file's text (`read_text`).
        source: The file, for messages.
        required: The fields every object must have, each as alternatives of which one must be there.

    Raises:
        DataError: A line that is not JSON, not an object, or lacks a required field; or no objects at all.
    """
    rows = []
    for number, line in enumerate(_LINE_END.split(text), start=1):
        if not line.strip():
            continue
        row = _parse_json(line, source, number)
        if not isinstance(row, dict):
            raise DataError(
                f"{source}: line {number}: expected a JSON object with the fields {_first(required)}, got {quote(row)}"
            )
        for names in required:
            if not any(name in row for name in names):
                raise DataError(f"{source}: line {number}: no field {_wanted(names)}; fields found: {quote(list(row))}")
        rows.append((number, row))
    if not rows:
        raise DataError(
            f"{source}: line 1: the file is empty; expected a JSON object per line with the fields {_first(required)}"
        )
    return rows
