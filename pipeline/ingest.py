"""Ingest and validation: read CSV / Parquet batches, split rows into scoreable and quarantined.

A :class:`Schema` (id column, feature columns and their kind) is learned on the training data and
saved with the model; :func:`validate` checks every later batch against it. A batch that lacks a
feature column is refused outright (:class:`SchemaError`); a row that cannot be scored (missing or
duplicate id, text or infinity in a numeric column, a CSV line with more or fewer fields than the
header) is quarantined with a reason, never dropped.
Missing cells and unseen categories are *not* problems: the model reads them as hidden / unknown.
Read big files with :func:`iter_batches`, whose memory depends on the chunk size, not the file.

Example
-------
>>> import pandas as pd
>>> train = pd.DataFrame({"txn_id": ["a", "b"], "amount": [3.0, 5.0], "mcc": ["5411", "5812"]})
>>> schema = Schema.infer(train, id_column="txn_id")
>>> schema.features
{'amount': 'numeric', 'mcc': 'categorical'}
>>> batch = pd.DataFrame({"txn_id": ["c", "c", "d"], "amount": ["7", "8", "abc"], "mcc": ["5411", None, "zz"]})
>>> checked = validate(batch, schema)
>>> checked.clean["amount"].tolist()
[7.0]
>>> checked.quarantined["quarantine_reason"].tolist()
["duplicate id 'c': an earlier row has the same id", "amount: 'abc' is not a number"]
"""

from __future__ import annotations

import bz2
import csv
import dataclasses  # dataclasses.field: the name field is an Arrow field's in this module
import gzip
import itertools
import lzma
import re
import threading
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from maskae.table_encoding import ColumnWarning, is_numeric_column, missing_cells, near_names_hint, numbers
from pipeline.config import format_from_suffix
from pipeline.csv_lines import ShortLines, short_lines

KINDS = ("numeric", "categorical")
REASON_COLUMN = "quarantine_reason"
# ``frame.attrs`` key: the reasons of the CSV lines a read could not split into the header's columns,
# which :func:`validate` quarantines (each is not a row of the frame: its values are unknown).
MALFORMED_LINES = "maskae.malformed_lines"
# ``frame.attrs`` key: {row: reason} for the frame's rows read from CSV lines with fewer fields than
# the header, which :func:`validate` quarantines with the values they have.
SHORT_LINES = "maskae.short_lines"
MAX_MALFORMED_LINES = 10_000  # in one file: more, and its layout is wrong, not a few of its lines
HEAD_RECORDS = 1_000  # a CSV's first records, checked for lines longer than the header before it is read
PARQUET_BUFFER = 8 << 20  # bytes read at a time from a Parquet file when streaming it
_FIXES = {
    "csv": "check that it is comma-separated text with a header row (a Parquet file is named .parquet)",
    "parquet": "it may be truncated or still being written: copy or export it again (a CSV file is named .csv)",
}


class IngestError(ValueError):
    """A file could not be read as a table; the message names the file, the reason and a fix."""


class FileChangedError(IngestError):
    """A file (or a folder of images) changed while it was read, or a CSV ends mid-line: it was
    still being written. Unlike the other input errors, trying again later can succeed."""


class SchemaError(ValueError):
    """A table does not have the columns the schema needs; the message names them."""


# Files people export that are not read, by suffix, and what to export instead.
_SHEET = "a spreadsheet workbook is not read; save the sheet as 'CSV UTF-8' (.csv)"
_NOT_READ = {".xlsx": _SHEET, ".xls": _SHEET, ".xlsm": _SHEET, ".ods": _SHEET,
             ".tsv": "tab-separated text is not read; export it comma-separated (.csv)"}
# A file's first bytes that say what it is when its name says CSV (a copy that kept the wrong name),
# and what makes a table's file of it.
_UTF16 = ("UTF-16 text (a spreadsheet's 'Unicode text'), not UTF-8", "save it as 'CSV UTF-8'")
_SIGNATURES = {b"\x1f\x8b": ("gzip-compressed", "name it .csv.gz"), b"BZh": ("bzip2-compressed", "name it .csv.bz2"),
               b"\xfd7zXZ": ("xz-compressed", "name it .csv.xz"), b"PAR1": ("a Parquet file", "name it .parquet"),
               b"PK\x03\x04": ("a zip archive (an Excel workbook is one)",
                              "save the sheet as 'CSV UTF-8', or name a zipped CSV .csv.zip"),
               b"\xff\xfe": _UTF16, b"\xfe\xff": _UTF16}


def file_signature(path: Path) -> tuple[str, str] | None:
    """What a file that is not UTF-8 text is, by its first bytes, and how a table's file is made
    of it; None if unknown."""
    with open(path, "rb") as file:
        head = file.read(4)
    return next((kind for signature, kind in _SIGNATURES.items() if head.startswith(signature)), None)


def _checked_source(path: str | Path, fmt: str | None) -> tuple[Path, str]:
    """The path and its format, after the failures that can be named from its name, size and header."""
    path = Path(path)
    if not path.exists():  # before the format: a mistyped folder of images has no suffix to tell one
        raise IngestError(f"cannot read {str(path)!r}: no such file or folder; check the path and the working "
                          f"directory")
    fmt = fmt or format_from_suffix(path)
    if fmt is None and path.suffix.lower() in _NOT_READ:
        raise IngestError(f"cannot read {str(path)!r}: {_NOT_READ[path.suffix.lower()]}")
    if fmt not in _FIXES and not path.is_dir():
        what = f"unknown format {fmt!r}" if fmt else "the file name does not say the format"
        raise IngestError(f"cannot read {str(path)!r}: {what}; name it after its format (.csv, .csv.gz, .parquet); "
                          f"a training config may instead set data.format, and the Python readers take fmt='csv' or "
                          f"fmt='parquet'")
    if path.is_dir():
        raise IngestError(f"cannot read {str(path)!r}: it is a folder; point at a file, or a glob like "
                          f"'{path}/*.{fmt or 'csv'}'")
    if path.stat().st_size == 0:
        raise IngestError(f"cannot read {str(path)!r}: the file is empty (0 bytes, not even a header); export it again")
    if fmt == "csv":  # pandas would rename a repeated name ("V1" -> "V1.1") and read on
        with _reading(path, fmt):
            try:
                header = pd.read_csv(path, header=None, nrows=2, dtype=str).iloc[0].dropna()  # blank names: "Unnamed"
            except pd.errors.ParserError as error:
                if "EOF inside string" in str(error):  # its second line cut inside a quoted value
                    raise _cut_inside_quote(path) from error
                if not (fields := _FIELD_COUNT.search(str(error))):
                    raise
                # Else pandas would read the first column as the index (or, with index_col=False, cut
                # every line to the first row's length): values in the wrong columns, or lost.
                expected, line, seen = fields.groups()
                with (_opener(path) or open)(path, "rb") as head:  # one field "a;b;c": another separator
                    first = head.readline(4096)
                other = next((f"; is the file {name}-separated (with decimal commas)? export it comma-separated"
                              for sep, name in ((b";", "semicolon"), (b"\t", "tab"), (b"|", "pipe")) if sep in first),
                             None) if expected == "1" else None
                raise IngestError(f"cannot read {str(path)!r} as csv: its first row (line {line}) has {seen} fields "
                                  f"where the header has {expected}" + (other or
                                  "; if every line ends with a comma, name that last column in the header or export "
                                  "the file without it, else quote the values that hold a comma")) from error
            _check_head(path)
        repeated = sorted(set(header[header.duplicated()]))
        if repeated:
            raise IngestError(f"cannot read {str(path)!r}: column name(s) {repeated} appear more than once in its "
                              f"header (or the file has no header row); columns are matched by name, so rename them")
    return path, fmt


def _trailing_blanks(names: Sequence[str]) -> int:
    """How many of a header's last names are empty (a header line ending with a comma)."""
    blanks = len(names) - len(list(itertools.dropwhile(lambda name: not name.strip(), reversed(names))))
    return blanks if blanks < len(names) else 0


def _check_head(path: Path) -> None:
    """Refuse a CSV whose first records are often longer than its header before pandas reads it:
    its layout is not the header's, and pandas' time to skip such lines grows with their square."""
    opener = _opener(path)
    if opener is None:  # zip, zstd: reading them stops at MAX_MALFORMED_LINES
        return
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as text:
            records = (record for record in csv.reader(text) if record)  # as pandas, blank lines skipped
            header = next(records, [])
            width = len(header)
            named = width - _trailing_blanks(header)  # "id,a,b,": the empty last name is no field a line lacks
            lengths = [len(record) for record in itertools.islice(records, HEAD_RECORDS)]
    except csv.Error:  # a field over the csv module's limit (128 KiB), which pandas reads: pandas decides
        return
    if (longer := sum(n > width for n in lengths)) > HEAD_RECORDS // 10:
        raise IngestError(f"cannot read {str(path)!r} as csv: {longer:,} of its first {len(lengths):,} rows have more "
                          f"fields than its header's {width}: its layout is not the header's; quote the values that "
                          f"hold a comma, or export the file again")
    if (shorter := sum(n < named for n in lengths if n > 1)) > HEAD_RECORDS // 10:  # 1 field: blank, or too few
        raise IngestError(f"cannot read {str(path)!r} as csv: {shorter:,} of its first {len(lengths):,} rows have fewer "
                          f"fields than its header's {named}: its layout is not the header's; have the export write "
                          f"every field, empty ones too (7,12.5,, rather than 7,12.5)")


@contextmanager
def _reading(path: Path, fmt: str) -> Iterator[None]:
    """Turn the readers' many exception types into one IngestError that says what to do."""
    try:
        yield
    except IngestError:  # said already
        raise
    except UnicodeDecodeError as error:
        if _opener(path) is open and (kind := file_signature(path)):  # its name says plain text
            raise IngestError(f"cannot read {str(path)!r} as {fmt}: it is {kind[0]}: {kind[1]}") from error
        line = first_line_not_utf8(path)
        where = f"line {line:,}" if line else "it"
        raise IngestError(f"cannot read {str(path)!r} as {fmt}: {where} is not UTF-8 text (byte "
                          f"0x{error.object[error.start]:02x}); export the file as UTF-8") from error
    except pd.errors.EmptyDataError as error:  # a compressed file of no text (an empty plain one is caught before)
        raise IngestError(f"cannot read {str(path)!r}: it holds no text once decompressed (not even a header); "
                          f"export it again") from error
    except EOFError as error:  # a compressed stream cut short: the file is still being copied, or was cut
        raise FileChangedError(f"cannot read {str(path)!r}: it ends before its compressed data does (it may still be "
                               f"being written or copied); screen it again once it is complete, or copy it "
                               f"again") from error
    except (gzip.BadGzipFile, zipfile.BadZipFile, lzma.LZMAError, zlib.error) as error:
        raise IngestError(f"cannot read {str(path)!r}: its compressed data are damaged or not of the kind its name "
                          f"says ({error}); copy or export it again") from error
    except (OSError, ValueError, pa.ArrowException) as error:
        reason = " ".join(str(error).split())[:300].rstrip(".") or type(error).__name__
        raise IngestError(f"cannot read {str(path)!r} as {fmt}: {reason}; {_FIXES[fmt]}") from error


# pandas' reader, told to warn, skips a line with more fields than the header and says so, several
# lines to a warning: "Skipping line 12: expected 7 fields, saw 8" (lines counted as records).
_UNNAMED = re.compile(r"Unnamed: \d+")  # pandas' name for a column whose header cell is empty
_SKIPPED = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")
_FIELD_COUNT = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")  # the error of a read that does not skip
_OPENERS = {".csv": open, ".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}  # as pandas infers them


def _opener(path: Path) -> Callable[..., Any] | None:
    """How to open a CSV's text as pandas does: by its compression suffix, plain for any other
    suffix (``.txt`` with ``fmt='csv'``); None for zip, zstd and tar, not read here."""
    suffix = path.suffix.lower()
    if suffix in (".zip", ".zst", ".tar") or ".tar" in [s.lower() for s in path.suffixes[-2:-1]]:
        return None
    return _OPENERS.get(suffix, open)


def first_line_not_utf8(path: Path) -> int | None:
    """The number of the first line of ``path`` that is not UTF-8 (read only once reading failed);
    None for a compression whose lines cannot be read one by one here (zip, zstd)."""
    opener = _opener(path)
    if opener is None:
        return None
    with opener(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


# pandas' default spellings of a missing value, which a numeric column keeps (R writes NA).
NUMBER_MISSING = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
                  "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")


def _csv_options(path: Path, text_columns: Sequence[str]) -> dict[str, Any]:
    # Ids and categories stay text: "000123" keeps its zeros, and a column cannot turn from text
    # into numbers in a chunk where every value happens to be digits (columns not in the file are
    # no error here: validation names those). In them only an empty cell is missing: "NA" is
    # Namibia's country code and "null" someone's id, not pandas' missing value. A line with more
    # fields than the header (an unquoted comma) is skipped with a warning, which
    # :func:`_noting_malformed` turns into its reason (the first row may not be such a line:
    # :func:`_checked_source`).
    if not text_columns:
        return {"on_bad_lines": "warn"}
    text = set(text_columns)
    missing = {name: [""] if name in text else list(NUMBER_MISSING) for name in pd.read_csv(path, nrows=0).columns}
    return {"on_bad_lines": "warn", "dtype": dict.fromkeys(text_columns, str), "keep_default_na": False,
            "na_values": missing}


class _NotCopied:
    """pandas deep-copies a frame's ``attrs`` in every operation on it: reasons that never change
    (the frame's malformed and short lines) are shared instead."""

    def __deepcopy__(self, memo: dict) -> _NotCopied:
        return self


class ShortRows(_NotCopied, dict):
    """{row: reason} of the rows read from short CSV lines, as ``frame.attrs[SHORT_LINES]`` holds them."""


def _short_lines(path: Path) -> ShortLines:
    """The CSV lines of ``path`` with fewer fields than its header (none found in a zip or zstd
    file, whose bytes are not read here).

    Raises
    ------
    FileChangedError
        The file ends mid-line: it is being written (or copied) still.
    IngestError
        More than :data:`MAX_MALFORMED_LINES` of them.
    """
    opener = _opener(path)
    if opener is None:
        return ShortLines()
    with opener(path, "rb") as source:
        found = short_lines(source)
    blanks = _trailing_blanks([name if not _UNNAMED.fullmatch(name) else "" for name in
                               map(str, pd.read_csv(path, nrows=0).columns)]) if found.lines else 0
    if blanks:  # "id,a,b,": a line "1,2,3" lacks only the unnamed column's empty value
        found.width -= blanks
        found.lines = {row: line for row, line in found.lines.items() if line[1] < found.width}
    if found.ends_in_quote:
        raise _cut_inside_quote(path)
    if found.lines and (last := found.lines[max(found.lines)])[2]:
        raise FileChangedError(f"cannot read {str(path)!r} as csv: it ends mid-line (its last line, line {last[0]:,}, has "
                               f"{last[1]} of the header's {found.width} fields and no line break), as a file still "
                               f"being written or copied does; read it once complete (move a batch in by renaming it "
                               f"when it is), or, if it is complete, finish or remove that line")
    if len(found.lines) > MAX_MALFORMED_LINES:
        raise IngestError(f"cannot read {str(path)!r} as csv: more than {MAX_MALFORMED_LINES:,} of its lines have fewer "
                          f"fields than its header's {found.width}; have the export write every field, empty ones too "
                          f"(7,12.5,, rather than 7,12.5)")
    return found


def _cut_inside_quote(path: Path) -> FileChangedError:
    return FileChangedError(f"cannot read {str(path)!r} as csv: it ends inside a quoted value, as a file still being "
                            f"written or copied does; read it once complete (move a batch in by renaming it when it "
                            f"is), or, if it is complete, close that quote")


def _short_rows(path: Path, found: ShortLines, frame: pd.DataFrame) -> ShortRows:
    """The reasons of the rows of ``frame`` (as pandas read them from ``path``) that came from short
    lines. A row whose last cells are not all empty shows that pandas split the file's lines
    otherwise than the scan did (an old Mac file, broken at a bare \r only): from that row on no
    line is taken for short, with a warning."""
    reasons = ShortRows()
    for row in frame.index[frame.index.isin(list(found.lines))] if found.lines else ():
        line, fields, _ = found.lines[row]
        if not frame.loc[row].iloc[fields:].isna().all():
            warnings.warn(f"could not check which lines of {str(path)!r} have fewer fields than its header: pandas "
                          f"splits its lines otherwise (line breaks that are a bare carriage return?); its short "
                          f"lines from line {line} on are read with their last cells empty", stacklevel=2)
            found.lines.clear()
            return reasons
        reasons[row] = (f"line {line} has {fields} of the header's {found.width} fields: a value may hold an unquoted "
                        f"line break, or the export left values out; export the file again")
    return reasons


class MalformedLines(_NotCopied, tuple):
    """The reasons of the CSV lines a read skipped, as ``frame.attrs[MALFORMED_LINES]`` holds them."""


# Python 3.11's warning filters belong to the process: two reads capturing them at once would
# restore each other's filters and take each other's skipped lines.
_CAPTURING = threading.Lock()


def _noting_malformed(path: Path, read: Callable[[], pd.DataFrame | None], before: int = 0
                      ) -> tuple[pd.DataFrame | None, MalformedLines]:
    """``read()``'s frame, and the reasons of the CSV lines of ``path`` it skipped, from pandas'
    warnings (any other warning is passed on); ``before``: how many the file had so far.

    Raises
    ------
    IngestError
        The file has more than :data:`MAX_MALFORMED_LINES`.
    """
    with _CAPTURING, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = read()
    reasons = []
    for warning in caught:
        skipped = _SKIPPED.findall(str(warning.message)) if warning.category is pd.errors.ParserWarning else []
        if not skipped:
            # module=None would show nothing (Python's shutdown case): only ours is named
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno,
                                   **({"module": __name__} if warning.filename == __file__ else {}))
        reasons += [f"line {line} (a quoted value's line breaks not counted) has {seen} fields where the header "
                    f"has {expected}, so its values are not read: quote the values that hold a comma, or export "
                    f"the file again" for line, expected, seen in skipped]
    if before + len(reasons) > MAX_MALFORMED_LINES:
        raise IngestError(f"cannot read {str(path)!r} as csv: more than {MAX_MALFORMED_LINES:,} of its lines have more "
                          f"fields than its header (the latest: {reasons[-1]}); its layout is not the header's")
    return frame, MalformedLines(reasons)


def read_table(path: str | Path, fmt: str | None = None, *, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a whole CSV or Parquet file, indexed by row number; a CSV with only a header gives an empty frame.

    Parameters
    ----------
    path : str or Path
        The file.
    fmt : {"csv", "parquet"} or None, default=None
        None infers it from the suffix (``.csv``, ``.csv.gz``, ``.parquet``, ``.pq``).
    text_columns : sequence of str, default=()
        Read these CSV columns as text: ids and categories are labels, not numbers
        (:meth:`Schema.text_columns`).

    A CSV line with more fields than the header is not a row of the frame: its reason is in
    ``frame.attrs[MALFORMED_LINES]``, and :func:`validate` quarantines it. A line with fewer fields
    is a row whose last cells are empty: its reason is in ``frame.attrs[SHORT_LINES]``, and
    :func:`validate` quarantines the row. Many lines of either kind (more than a tenth of the first
    :data:`HEAD_RECORDS`, or more than :data:`MAX_MALFORMED_LINES`) are an ``IngestError``.

    Raises
    ------
    IngestError
        Missing, empty, truncated or unparseable file.
    """
    path, fmt = _checked_source(path, fmt)
    with _reading(path, fmt):
        if fmt == "parquet":
            with pq.ParquetFile(path) as source:
                return _to_pandas(source.read()).reset_index(drop=True)
        short = _short_lines(path)
        frame, malformed = _noting_malformed(path, lambda: pd.read_csv(path, **_csv_options(path, text_columns)))
        frame.attrs[MALFORMED_LINES], frame.attrs[SHORT_LINES] = malformed, _short_rows(path, short, frame)
        return frame


def iter_batches(
    path: str | Path, fmt: str | None = None, batch_rows: int = 100_000, *, text_columns: Sequence[str] = (),
    short_lines: bool = True,
) -> Iterator[pd.DataFrame]:
    """Yield the file as frames of at most ``batch_rows`` rows, indexed by row number in the file.

    Same parameters and errors as :func:`read_table` (each frame holds the malformed CSV lines met
    while it was read); a file without rows yields one empty frame (so its columns can still be
    checked), as does one whose last lines are malformed (to hold them). Errors found before
    parsing are raised by the call, parsing errors during iteration, possibly after earlier chunks
    were yielded. ``short_lines=False`` skips the scan of a CSV for lines shorter than its header
    (a whole extra pass over the file), for a read of its first chunk's column types only.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    path, fmt = _checked_source(path, fmt)
    return _chunks(path, fmt, batch_rows, text_columns, short_lines)


def parquet_stream(path: str | Path) -> pq.ParquetFile:
    """A Parquet file to read batch by batch in memory that does not grow with the file: with
    pyarrow's default ``pre_buffer`` every column chunk read stays cached until the file is closed,
    so memory grows with the file; buffered reads keep ``PARQUET_BUFFER`` at a time."""
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER)


def _chunks(path: Path, fmt: str, batch_rows: int, text_columns: Sequence[str], short_lines: bool
            ) -> Iterator[pd.DataFrame]:
    with _reading(path, fmt):
        if fmt == "csv":  # pandas numbers the rows of each chunk on from the previous one
            short = _short_lines(path) if short_lines else ShortLines()
            with pd.read_csv(path, chunksize=batch_rows, **_csv_options(path, text_columns)) as reader:
                last, so_far = None, 0
                while True:
                    frame, malformed = _noting_malformed(path, lambda: next(reader, None), so_far)
                    if frame is None and not malformed:
                        return
                    # lines after the last row read (a first row was read: it cannot be malformed)
                    frame = last = last.iloc[:0].copy() if frame is None else frame
                    frame.attrs[MALFORMED_LINES], so_far = malformed, so_far + len(malformed)
                    frame.attrs[SHORT_LINES] = _short_rows(path, short, frame)
                    yield frame
        with parquet_stream(path) as source:
            start = 0
            for record_batch in source.iter_batches(batch_size=batch_rows):
                frame = _to_pandas(pa.Table.from_batches([record_batch]))
                frame.index = pd.RangeIndex(start, start + len(frame))
                start += len(frame)
                yield frame
            if start == 0:
                yield _to_pandas(source.schema_arrow.empty_table())


NULLABLE_INTEGERS = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                     pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
                     pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype()}


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """A Parquet table as pandas, each value exact where pandas' defaults would change it:

    * decimals, which pandas holds as Python Decimal objects (read as text, hence as categories):
      whole ones (an Oracle NUMBER(18) id) as int64, or as text beyond its 18 digits; others (a
      warehouse's amounts) as float64;
    * integers with a gap as pandas' nullable integers: NumPy's float64 rounds an id above 2**53
      (so that distinct ids read as duplicates) and writes 12 as 12.0."""
    for i, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type):  # by type, so that every chunk of a column reads alike
            target = pa.float64() if field.type.scale else pa.int64() if field.type.precision <= 18 else pa.string()
            table = table.set_column(i, field.with_type(target), table.column(i).cast(target))
    frame = table.to_pandas()
    # A pandas writer's stored index (and its names: "0" for 0) are restored: the frame's columns
    # are the table's other columns, in order, so they are set by position, values without an index.
    stored_index = {name for name in (table.schema.pandas_metadata or {}).get("index_columns", ()) if isinstance(name, str)}
    data = [(field, column) for field, column in zip(table.schema, table.columns) if field.name not in stored_index]
    for position, (field, column) in enumerate(data):
        if pa.types.is_integer(field.type) and column.null_count:
            frame.isetitem(position, column.to_pandas(types_mapper=NULLABLE_INTEGERS.get).array)
    return frame


def _warn_if_mostly_numbers(name: str, series: pd.Series) -> None:
    # A few words in a CSV column of amounts make the whole column text, hence categorical (training
    # reads a column with at most STRAY_TEXT_SHARE of text cells as numbers: pipeline.train).
    given = series[~missing_cells(series)]
    text = given[pd.to_numeric(given, errors="coerce").isna()]
    if len(given) and 0 < len(text) <= 0.1 * len(given):
        warnings.warn(f"column {name!r} is text: {len(text):,} of its {len(given):,} values do not parse as numbers "
                      f"(e.g. {_show(text.iloc[0])}); it is treated as categorical unless column_types sets it to "
                      f"'numeric' (then rows with text in it are quarantined)", ColumnWarning, stacklevel=3)


@dataclass
class Schema:
    """The columns a model was trained on: ``features`` maps name -> "numeric" | "categorical"."""

    id_column: str
    features: dict[str, str]
    label_column: str | None = None
    # The training data's other columns, left out by choice: a batch that holds them is not warned of them.
    left_out: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        bad = {name: kind for name, kind in self.features.items() if kind not in KINDS}
        if bad or not self.features:
            raise SchemaError(f"a schema needs at least one feature, each of kind {KINDS}; got {self.features}")

    @property
    def feature_columns(self) -> list[str]:
        return list(self.features)

    def columns_of_kind(self, kind: str) -> list[str]:
        return [name for name, k in self.features.items() if k == kind]

    @property
    def text_columns(self) -> list[str]:
        """The columns to read from a CSV as text: the id and the categorical features."""
        return [self.id_column, *self.columns_of_kind("categorical")]

    @classmethod
    def infer(cls, frame: pd.DataFrame, id_column: str, *, label_column: str | None = None,
              columns: list[str] | None = None, exclude_columns: list[str] | None = None,
              column_types: dict[str, str] | None = None) -> Schema:
        """Learn the schema from a training frame (keywords as in ``config.data``).

        A numeric, non-boolean column is numeric, anything else categorical; ``column_types`` wins.
        Warns when a text column is mostly numbers.
        """
        excluded = exclude_columns or []
        names = columns or [c for c in frame.columns if c not in (id_column, label_column, *excluded)]
        missing = [c for c in [id_column, *names, *excluded] if c not in frame.columns]
        if missing:
            raise SchemaError(f"column(s) {missing} are not in the training data{near_names_hint(missing, frame.columns)}; "
                              f"it has {list(frame.columns)}")
        overrides = column_types or {}
        unknown = [c for c in overrides if c not in names]
        if unknown:
            raise SchemaError(f"column_types names {unknown}, which are not features; features: {names}")
        features = {}
        for name in names:
            # the model's own rule, so that the model reads each column as the schema says
            features[name] = overrides.get(name) or ("numeric" if is_numeric_column(frame[name]) else "categorical")
            if name not in overrides and features[name] == "categorical":
                _warn_if_mostly_numbers(name, frame[name])
        left_out = [str(c) for c in frame.columns if c not in (id_column, label_column, *names)]
        return cls(id_column, features, label_column, left_out)

    def to_dict(self) -> dict[str, Any]:
        return {"id_column": self.id_column, "label_column": self.label_column, "features": dict(self.features),
                "left_out": list(self.left_out)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Schema:
        return cls(state["id_column"], dict(state["features"]), state.get("label_column"),
                   list(state.get("left_out", [])))


class SeenIds:
    """The ids of a batch's earlier chunks, kept as sorted 64-bit hashes: 8 bytes a row whatever
    the id's length, so a file of millions of rows checks for repeats without holding its ids.
    (Two different ids share a hash with probability ~n²/2⁶⁵: about 3e-6 for 10 million ids.)

    The hashes sit in sorted blocks of at most :data:`BLOCK_HASHES` (or one chunk's): adding a chunk
    copies at most one block, where one sorted array of them all was copied whole by every chunk,
    and a file's peak memory grew by another 8 bytes a row at its last chunk."""

    BLOCK_HASHES = 2**21  # 16 MB a block; a lookup searches n / 2**21 blocks (5 for 10 million ids)

    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []  # each sorted; only the last may take more hashes

    def check_and_add(self, ids: pd.Series) -> np.ndarray:
        """True where an id was seen in an earlier call; then remembers all of ``ids``."""
        hashes = pd.util.hash_pandas_object(ids, index=False).to_numpy()
        order = np.argsort(hashes)
        hashes = hashes[order]  # searched in order, each search starts where the last one ended
        found = np.zeros(len(hashes), dtype=bool)
        for block in self._blocks:
            found |= block[np.searchsorted(block, hashes).clip(max=len(block) - 1)] == hashes
        seen = np.empty_like(found)
        seen[order] = found
        if self._blocks and len(self._blocks[-1]) + len(hashes) <= self.BLOCK_HASHES:
            merged = np.concatenate([self._blocks.pop(), hashes])
            merged.sort(kind="stable")  # two sorted runs: the stable sort merges them in linear time
            self._blocks.append(merged)
        elif len(hashes):
            self._blocks.append(hashes)
        return seen


@dataclass
class ValidatedBatch:
    """``clean``: scoreable rows, features coerced (numbers as float, categories as text).
    ``quarantined``: the other rows as read, plus ``quarantine_reason``. Row order is kept in each
    (the CSV lines that could not be read come last in ``quarantined``)."""

    clean: pd.DataFrame
    quarantined: pd.DataFrame


def _show(value: Any) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 40 else text[:37] + "..."


DECIMAL_COMMA = r"\s*[-+]?\d+,\d{1,2}\s*"  # 12,50 (1,234 may be a thousands separator: not said to be one)


def _notes(mask: np.ndarray, values: pd.Series, template: str) -> np.ndarray:
    """Per row: ``template`` filled with the row's value where ``mask``, else ""."""
    notes = np.full(len(mask), "", dtype=object)
    for i in np.flatnonzero(mask):  # only the bad rows, which are few
        notes[i] = template.format(_show(values.iloc[i]))
    return notes


def _empty(series: pd.Series) -> pd.Series:
    """True where an id or a category is missing: no value, or blank text. Any other text is a value,
    whatever it spells ("NA" is Namibia's country code); numbers use ``missing_cells``."""
    return series.isna() | series.astype(str).str.strip().eq("")


def _category_text(series: pd.Series) -> pd.Series:
    # 5411 and 5411.0 (a CSV chunk with a gap turns ints into floats) must be the same category.
    def text(v: Any) -> str:
        return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)

    if isinstance(series.dtype, pd.StringDtype):  # read as text: spelt as a typed read (or Parquet) has them
        lower = series.str.lower()
        series = series.mask(lower == "true", "True").mask(lower == "false", "False")
        return series.str.replace(r"^(-?\d+)\.0*$", r"\1", regex=True)  # 5411.0 -> 5411; 0742 keeps its zero
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "bi":  # no gaps: str() of each in one go
        return series.astype(str).astype(object)
    return pd.Series([None if pd.isna(v) else text(v) for v in series], index=series.index, dtype=object)


def validate(frame: pd.DataFrame, schema: Schema, *, seen_ids: SeenIds | None = None,
             warn_extra: bool = True) -> ValidatedBatch:
    """Split ``frame`` into rows that can be scored and quarantined rows with their reason.

    Parameters
    ----------
    frame : DataFrame
        One batch (or one chunk of it), as read. The CSV lines that its read could not split
        (``frame.attrs[MALFORMED_LINES]``) are quarantined too, after its own rows, every value
        empty (index -1), and so are its rows read from lines with fewer fields than the header
        (``frame.attrs[SHORT_LINES]``), with the values they have.
    schema : Schema
        What the model expects.
    seen_ids : SeenIds or None, default=None
        Ids of earlier chunks of the same batch: repeats are quarantined as duplicates, and this
        chunk's ids are added (8 bytes a row).
    warn_extra : bool, default=True
        Warn about columns that are not in the schema (False at training: the schema was chosen
        from these very columns).

    Raises
    ------
    SchemaError
        The id column or a feature column is missing from the whole batch.
    """
    expected = [schema.id_column, *schema.feature_columns]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        one = str(frame.columns[0]) if len(frame.columns) == 1 else ""
        hint = next((f" (its one column {one[:60]!r} holds {sep!r}: is the file {name}-separated? export it "
                     f"comma-separated)" for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe"))
                     if sep in one), "")
        hint = hint or near_names_hint(missing, frame.columns.difference(expected, sort=False))  # not one it reads
        raise SchemaError(f"the batch lacks column(s) {missing}{hint}; expected id column {schema.id_column!r} and "
                          f"features {schema.feature_columns}: add them (empty values are allowed) or retrain")
    extra = [c for c in frame.columns if c not in expected and c != schema.label_column and c not in schema.left_out]
    if extra and warn_extra:
        warnings.warn(f"column(s) {extra} are not in the schema: they are kept but not checked or scored", stacklevel=2)
    ids = frame[schema.id_column]
    has_id = ~_empty(ids).to_numpy()
    # Spaces around a text id do not make it another record's: a verdict's id is read without them.
    if pd.api.types.is_string_dtype(ids) or ids.dtype == object:
        stripped = ids.str.strip()  # NaN for a value that is not text: that one is kept as it is
        same = stripped.where(stripped.notna(), ids)
    else:
        same = ids
    blank = {name: (missing_cells if kind == "numeric" else _empty)(frame[name]).to_numpy()
             for name, kind in schema.features.items()}
    # A record without a single value would be scored on nothing (a blank line, a broken export).
    empty = np.logical_and.reduce(list(blank.values()))
    notes = [
        np.where(has_id, "", f"missing id ({schema.id_column!r} is empty)"),
        np.where(empty, "no feature values: every feature column is empty", ""),
        pd.Series(frame.attrs.get(SHORT_LINES) or {}, dtype=object).reindex(frame.index, fill_value="").to_numpy(),
    ]
    clean = frame.copy()
    clean.attrs.pop(MALFORMED_LINES, None)  # quarantined below
    clean.attrs.pop(SHORT_LINES, None)
    for name in schema.columns_of_kind("numeric"):
        raw = frame[name]
        number = pd.Series(numbers(raw), index=raw.index)
        if not is_numeric_column(raw):  # text that fails to parse, as opposed to an empty cell
            failed = number.isna().to_numpy() & ~blank[name]
            comma = failed.copy()  # of the failed cells only, which are few
            comma[failed] = raw[failed].astype(str).str.fullmatch(DECIMAL_COMMA).to_numpy(dtype=bool)
            notes.append(_notes(failed & ~comma, raw, f"{name}: {{}} is not a number"))
            notes.append(_notes(comma, raw, f"{name}: {{}} is not a number (a decimal comma? export numbers with "
                                            f"'.' as the decimal mark)"))
        notes.append(_notes(np.isinf(number.to_numpy()), raw, f"{name}: {{}} is not a finite number"))
        # float32 stays float32, so that the outputs write 1950.74 as read, not its float64 1950.739990234375
        clean[name] = number.to_numpy().astype(raw.dtype) if raw.dtype == np.float32 else number.to_numpy()
    for name in schema.columns_of_kind("categorical"):
        clean[name] = _category_text(frame[name]).to_numpy()
    # An id is taken by the first row that is scored: a row quarantined for its own fault leaves
    # its id to a later, sound row, which would otherwise never be scored (nor its id).
    sound = has_id & (np.stack(notes, axis=1) == "").all(axis=1)
    repeated = np.zeros(len(frame), dtype=bool)
    repeated[sound] = same[sound].duplicated(keep="first").to_numpy()
    if seen_ids is not None:
        repeated[sound] |= seen_ids.check_and_add(same[sound])
    notes.append(_notes(repeated, ids, "duplicate id {}: an earlier row has the same id"))
    table = np.stack(notes, axis=1)
    bad = (table != "").any(axis=1)
    quarantined = frame.iloc[np.flatnonzero(bad)].copy()
    quarantined[REASON_COLUMN] = np.array(["; ".join(n for n in row if n) for row in table[bad]], dtype=object)
    if malformed := frame.attrs.get(MALFORMED_LINES):
        # empty as floats, not objects, so that the chunk's number columns stay numbers in quarantine.csv
        lines = pd.DataFrame(np.nan, columns=quarantined.columns, index=[-1] * len(malformed))
        lines[REASON_COLUMN] = list(malformed)
        quarantined = pd.concat([quarantined, lines])
    return ValidatedBatch(clean.iloc[np.flatnonzero(~bad)], quarantined)
