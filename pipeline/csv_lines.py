"""Find the CSV lines that hold fewer fields than the header.

pandas reads such a line as a row whose last cells are empty: it cannot tell ``7,12.5`` from
``7,12.5,,``. Yet a short line is a broken record, not one with empty values: the last line of a
file read while it was still being written, or a record split by an unquoted line break. So the
file's bytes are scanned for the commas and line breaks outside quoted values, a block at a time
with numpy (a quote toggles quoting; an escaped quote ``""`` toggles it twice). A quote inside an
unquoted value (``5" screen``), which pandas reads as a character, would throw that count off: a
file holding one is read again with Python's ``csv`` module, which reads quotes as pandas does.

Example
-------
>>> import io
>>> short_lines(io.BytesIO(b'id,amount,mcc\\n1,"2,5",x\\n\\n2,3\\n3,4,y\\n4,5'))
ShortLines(width=3, lines={1: (4, 2, False), 3: (6, 2, True)}, ends_in_quote=False)
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

BLOCK = 1 << 22  # bytes scanned at a time
MAX_RECORD = 4 * BLOCK  # a record this long (an unclosed quote swallows the file): the file is not checked
_QUOTE, _COMMA, _NEWLINE, _RETURN = ord('"'), ord(","), ord("\n"), ord("\r")
_WHITE = np.zeros(256, dtype=bool)
_WHITE[[ord(" "), ord("\t"), ord("\r"), ord("\n")]] = True  # a line of these is blank: pandas skips it
_FIELD_START = np.zeros(256, dtype=bool)  # what may precede an opening quote
_FIELD_START[[_COMMA, _NEWLINE, _RETURN, _QUOTE]] = True
_FIELD_END = np.zeros(256, dtype=bool)  # what may follow a closing quote
_FIELD_END[[_COMMA, _NEWLINE, _RETURN, _QUOTE]] = True


@dataclass
class ShortLines:
    """The header's field count, and per row of pandas' frame that came from a short line: (its
    line in the file, counting every line break; its field count; whether it is the file's last
    line and ends without a line break)."""

    width: int | None = None
    lines: dict[int, tuple[int, int, bool]] = field(default_factory=dict)
    ends_in_quote: bool = False  # the file ends inside a quoted value: cut short, whatever its field count


class _IrregularQuote(Exception):
    """A quote the block scan cannot follow: the file is read again with the csv module."""


def short_lines(source: BinaryIO) -> ShortLines:
    """The short lines of a CSV read from ``source`` (binary, at its start; it is read to its end
    and may need to be read from the start again: a seekable file, or one reopened by the caller)."""
    try:
        return _scan_blocks(source)
    except _IrregularQuote:
        source.seek(0)
    try:
        return _scan_records(source)
    except csv.Error:  # a value over the csv module's limit (128 KiB), which pandas reads: not checked
        return ShortLines()


def _scan_blocks(source: BinaryIO) -> ShortLines:
    found, row, quoted, lines_before, carry = ShortLines(), 0, 0, 0, b""
    block = source.read(max(BLOCK, 3))
    if block.startswith(b"\xef\xbb\xbf"):  # a byte-order mark
        block = block[3:] or source.read(BLOCK)
    while True:
        ends_unbroken = not block and carry.strip(b" \t\r\n") != b"" and not carry.endswith(b"\r")
        data = carry + block if block else carry + b"\n"  # a last line without a line break ends here
        b = np.frombuffer(data, dtype=np.uint8)
        quotes, newlines, commas = (np.flatnonzero(b == c) for c in (_QUOTE, _NEWLINE, _COMMA))
        if (returns := np.flatnonzero(b[:-1] == _RETURN)).size:  # pandas breaks a line at a bare \r too
            newlines = np.union1d(newlines, returns[b[returns + 1] != _NEWLINE])  # (a last \r waits for the next block)
        breaks = newlines
        if len(quotes):  # outside quotes: an even count of quotes before
            _check_quotes(b, quotes, quoted, at_end=not block)
            breaks = breaks[((np.searchsorted(quotes, breaks) + quoted) & 1) == 0]
            commas = commas[((np.searchsorted(quotes, commas) + quoted) & 1) == 0]
        if not len(breaks) and not block:  # the file ends inside a quoted value: the rest is its last record
            breaks, found.ends_in_quote = np.array([len(b) - 1]), True
        elif not len(breaks):  # one record longer than the block
            if len(data) > MAX_RECORD:
                return ShortLines()
            carry, block = data, source.read(BLOCK)
            continue
        end = breaks[-1] + 1
        starts = np.concatenate([[0], breaks[:-1] + 1])
        fields = np.diff(np.searchsorted(commas, breaks), prepend=0) + 1  # from the commas before each break
        line = lines_before + 1 + np.searchsorted(newlines, starts)
        blank = fields == 1  # only a line without a comma can be blank: one whose bytes are all white
        if blank.any():
            solid = np.flatnonzero(~_WHITE[b[:end]])
            blank &= np.searchsorted(solid, breaks) == np.searchsorted(solid, starts)
        fields, line = fields[~blank], line[~blank]
        last = np.zeros(len(fields), dtype=bool)
        last[-1:] = ends_unbroken
        row = _note(found, row, fields, line, last)
        if found.width is not None and found.width <= 1:  # one column: no line can hold fewer
            return found
        quoted = (quoted + int(np.count_nonzero(quotes < end))) & 1
        lines_before += int(np.searchsorted(newlines, end))
        if not block:
            return found
        carry, block = data[end:], source.read(BLOCK)


def _check_quotes(b: np.ndarray, quotes: np.ndarray, quoted: int, at_end: bool) -> None:
    """Raise :class:`_IrregularQuote` unless every quote opens a value at its start, or closes
    one at its end (or is half of an escaped pair): the only quotes a parity count follows."""
    opening = ((np.arange(len(quotes)) + quoted) & 1) == 0
    before = np.where(quotes > 0, b[np.maximum(quotes - 1, 0)], _NEWLINE)
    after = b[np.minimum(quotes + 1, len(b) - 1)]
    after = np.where(quotes + 1 < len(b), after, _NEWLINE if at_end else _QUOTE)  # the next block decides
    if not (_FIELD_START[before[opening]].all() and _FIELD_END[after[~opening]].all()):
        raise _IrregularQuote


def _scan_records(source: BinaryIO) -> ShortLines:
    last = [""]

    def remembered(text: io.TextIOWrapper):
        for line in text:
            last[0] = line
            yield line

    reader = csv.reader(remembered(io.TextIOWrapper(source, encoding="utf-8-sig", errors="replace", newline="")))
    fields, lines, line_before, kept = [], [], 0, False
    for record in reader:
        start, line_before = line_before + 1, reader.line_num
        kept = bool(last[0].strip(" \t\r\n") or line_before - start)  # pandas skips blank lines ('""' is none)
        if kept:
            fields.append(len(record))
            lines.append(start)
    ends_unbroken = np.zeros(len(fields), dtype=bool)
    ends_unbroken[-1:] = kept and not last[0].endswith(("\n", "\r"))  # the file's last line, kept and unbroken
    found = ShortLines()
    _note(found, 0, np.array(fields, dtype=np.int64), np.array(lines, dtype=np.int64), ends_unbroken)
    return found


def _note(found: ShortLines, row: int, fields: np.ndarray, line: np.ndarray, last: np.ndarray) -> int:
    """Record the short ones of these non-blank records in ``found`` (the first record of the file
    is its header); returns the row number of the next record. A line longer than the header is no
    row of pandas' frame: it skips such a line."""
    if found.width is None and len(fields):
        found.width, fields, line, last = int(fields[0]), fields[1:], line[1:], last[1:]
    if found.width is None or not len(fields):
        return row
    is_row = fields <= found.width
    rows = row + np.cumsum(is_row) - 1
    for k in np.flatnonzero(fields < found.width):
        found.lines[int(rows[k])] = (int(line[k]), int(fields[k]), bool(last[k]))
    return row + int(is_row.sum())
