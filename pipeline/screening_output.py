"""The screening output folder of DESIGN.md, written atomically, and the reasons and report in it.

One folder per screening run::

    scores.parquet   id column (own name), anomaly_score, p_value, flagged — every scored row
    flagged.csv      flagged records, most anomalous first, with a ``reasons`` column
    quarantine.csv   rows that could not be scored, as read, plus ``quarantine_reason``
    report.html      the analyst's self-contained page (:mod:`pipeline.report`)
    summary.json     counts (rows_in == rows_scored + rows_quarantined), model, calibration, ...

:class:`ScreeningFolder` builds it chunk by chunk under a hidden sibling name
(``.<name>.tmp-<random>``) and renames it into place with ``os.replace``, so a reader sees the
whole folder or none of it.

Example
-------
>>> explanation = pd.DataFrame({"row": [0, 0], "feature": ["amount", "country"],
...     "observed": [4522.931, "IT"], "expected": [799.1634, "DE"], "contribution": [2.0, 0.7],
...     "share": [0.47, 0.17], "tail_share": [0.0004, float("nan")], "beyond": [float("nan")] * 2,
...     "unseen": [None, None]})
>>> reasons_text(explanation, n_rows=1)  # doctest: +NORMALIZE_WHITESPACE
['amount=4522.93 (expected ~799.16, 47% of the mismatch, as far out as 1 in 2,500 training values); country=IT (expected
  ~DE, 17% of the mismatch)']
>>> evidence = pd.DataFrame({"reconstruction": [2.5], "tails": [0.4], "neighbours@16": [3.0], "neighbours@64": [3.4]})
>>> evidence_summary(evidence, kinds=("reconstruction", "neighbours", "tails"))
['unlike any training record +3.2 sd, columns that do not fit together +2.5 sd']
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Collection, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import pyarrow as pa
import pyarrow.parquet as pq

from maskae.table_encoding import BOOLEAN_SPELLINGS
from pipeline.ingest import REASON_COLUMN, parquet_stream
from pipeline.report import EXACT_INTEGERS, QUARANTINE_ROWS, UNSEEN_WORDS, shown_number

SCORES, FLAGGED, QUARANTINE, REPORT, SUMMARY = (
    "scores.parquet", "flagged.csv", "quarantine.csv", "report.html", "summary.json")
# RFC 4180 line ends: the csv writer then quotes any field holding "\r" too, which pandas would
# otherwise read back as a line break (a record's text could shift every later column).
CSV_LINE_END = "\r\n"
ROW = "_row"  # a scored row's number in the input file, in the folder's working files (not in its outputs)
# The columns written beside a record's own: a batch's column of one of these names (an upstream
# system's score) is kept under its name with INPUT_PREFIX, not overwritten; a model never reads one.
WRITTEN_COLUMNS, INPUT_PREFIX = ("anomaly_score", "p_value", "reasons", "flagged", REASON_COLUMN, ROW), "input_"
_UNFLAGGED, _LOCK, _FLAGGED_PART = ".scores-unflagged.parquet", ".lock", ".flagged-part-"
FLAGGED_BLOCK = 50_000  # flagged records ordered at a time
SCORE_BATCH = 500_000  # rows of scores read back at a time (~20 MB)


# A spreadsheet runs a cell that starts with one of = + - @ (or a tab or carriage return) as a
# formula: a merchant name or an image file name "=HYPERLINK(...)" in flagged.csv would become a
# live link, or worse (CSV injection). Such text is written after a "'", as OWASP advises, unless
# it is a plain number; text that already starts with "'"s and one of them gets one "'" more, so
# that reading back (:func:`read_output_csv`) takes exactly one "'" off what was written.
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_DEFUSED = re.compile(r"'+[=+\-@\t\r]")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def read_output_csv(path: Path, **options: Any) -> pd.DataFrame:
    """Read ``flagged.csv`` or ``quarantine.csv`` back as it was before :func:`for_csv`: they spell
    a missing value as an empty cell and nothing else, so "NA" (Namibia's country code, or an id)
    stays a value, and text that would run as a spreadsheet formula was written after a "'"."""
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""], **options)
    return frame.assign(**{name: without_formula_quote(frame[name]) for name in _text_columns(frame)})


def without_formula_quote(values: pd.Series) -> pd.Series:
    """``values`` with the "'" that :func:`for_csv` put before formula-like text taken off (a
    verdict file's ids, copied from ``flagged.csv`` in a spreadsheet, may keep it)."""
    quoted = values.str.match(_DEFUSED, na=False)
    return values.where(~quoted, values.str[1:]) if quoted.any() else values


def for_csv(frame: pd.DataFrame, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """``frame`` as the CSV files people read hold it: each float column (but those in ``keep``)
    whose values are all whole as integers (scoring holds numbers as floats, and pandas reads a CSV
    column of integers with a gap in it as floats, which ``to_csv`` would write as 12.0 where the
    input said 12), and text a spreadsheet would run as a formula after a "'" (see ``_FORMULA``)."""
    whole = {}
    for name in frame.columns[[dtype == np.float64 and name not in keep for name, dtype in frame.dtypes.items()]]:
        values = frame[name].to_numpy()
        given = values[~np.isnan(values)]
        if len(given) and (np.abs(given) < EXACT_INTEGERS).all() and (given == np.round(given)).all():
            whole[name] = "Int64"
    defused = {}
    for name in _text_columns(frame):
        values = frame[name]
        formula = values.str.match(_FORMULA, na=False) & ~values.str.fullmatch(_NUMBER, na=False)
        if formula.any():
            defused[name] = values.where(~formula, "'" + values.astype(str))
    frame = frame.assign(**defused) if defused else frame
    return frame.astype(whole) if whole else frame


def _text_columns(frame: pd.DataFrame) -> list:
    """The columns that hold text (those pandas' ``.str`` takes: an object column of text, or of
    text among other values)."""
    return [name for name in frame.columns
            if pd.api.types.infer_dtype(frame[name], skipna=True) in ("string", "mixed", "mixed-integer")]


# A reason's numbers, as the report shows them but without thousands separators (parse_reasons reads them back).
_plain = partial(shown_number, thousands=False)

MIN_SHARE = 0.05
# A value the model expected, but doubted enough to carry this share of the mismatch, is named too:
# left out, the reasons listed could add up to a small part of it.
DOUBTED_SHARE = 0.25
RARE_TAIL_SHARE = 0.01  # a value this far out in its own column is named, and how far out said
# The detector's kinds of evidence (maskae.detector) in an analyst's words. Feature shares explain
# only the reconstruction evidence, so a record flagged for being unlike every training record
# says so first.
EVIDENCE_WORDS = {
    "neighbours": "unlike any training record",
    "nearest": "far from its nearest training records or near a suspect cluster of them",
    "reconstruction": "columns that do not fit together",
    "tails": "values rare in their own columns",
}
NOTABLE_SD = 1.0  # evidence this many standard deviations above a typical training record is named


IMAGE_EVIDENCE_WORDS = {"neighbours": "unlike any training image", "reconstruction": "parts unlike their surroundings"}


def evidence_summary(evidence: pd.DataFrame, kinds: tuple[str, ...], words: dict[str, str] = EVIDENCE_WORDS
                     ) -> list[str]:
    """Per row of ``evidence`` (``MaskedAutoencoderDetector.evidence_scores``), the ``kinds`` of
    evidence the score combines that stand at least ``NOTABLE_SD`` above a typical training record,
    strongest first, with their standard deviations (a kind's terms averaged, as in the score),
    in ``words`` (:data:`IMAGE_EVIDENCE_WORDS` for images)."""
    by_kind = evidence.T.groupby(lambda name: name.split("@")[0]).mean().T
    by_kind = by_kind[[k for k in words if k in by_kind.columns and k in kinds]]
    out = []
    for values in by_kind.to_numpy():
        notable = sorted(((v, k) for k, v in zip(by_kind.columns, values) if v >= NOTABLE_SD), reverse=True)
        out.append(", ".join(f"{words[k]} {v:+.1f} sd" for v, k in notable))
    return out


def reasons_text(explanation: pd.DataFrame, n_rows: int, evidence: list[str] | None = None,
                 top_k: int | None = None, far_out_values: bool = True,
                 routine_new: Collection[str] = (), categories: Collection[str] = ()) -> list[str]:
    """One ``"feature=observed (expected ~value, share%[, as far out as 1 in N training values])"``
    list per row (``", above the largest training value, V"`` or ``"below the smallest"`` for a value
    past its column's training range), ``"; "``-joined, after the row's ``evidence`` text (:func:`evidence_summary`)
    when given and not empty.

    ``explanation`` is ``MaskedAutoencoderDetector.explain(X)`` of ``n_rows`` records; the share
    is the feature's part of the row's reconstruction evidence (``"expected ~False but doubted"``:
    the value the model expected, but with enough doubt to carry ``DOUBTED_SHARE`` of it). With
    ``top_k``, a row's ``top_k`` features by share are read, and its ``top_k`` rarest values in the
    outer ``RARE_TAIL_SHARE`` of their columns. A feature with under ``MIN_SHARE`` of the share is
    left out, and so is one whose value is the one expected with under ``DOUBTED_SHARE`` (a category
    predicted right but without full confidence): an analyst reads what stood out. A value in the
    outer ``RARE_TAIL_SHARE`` of its column's training values is named regardless, with how far out
    it lies (``", as far out as 1 in 2,500 training values"``): the tail evidence's reason, which
    reconstruction shares alone would hide. (In a column with under 99 observed training values
    none lies that far out: the rarest reads 1 / (n + 1); a value beyond them all is named, with
    where they end.) ``far_out_values=False`` leaves that out, for a model whose score has no tail
    evidence. A category value never seen in training (``unseen`` "unknown") is named too, besides
    those ``top_k`` (``", never seen in training"``), but not in the ``routine_new`` features
    (identifiers and dates, whose new values are routine); one outside a capped column's kept values
    ("other", common there) says so when named. A value of the ``categories`` features is rare,
    not far out: ``", as rare as 1 in 380 training values"``.
    """
    # A value beyond every training value is named even where the column is too short to call it rare.
    far_out = ((explanation["tail_share"] <= RARE_TAIL_SHARE) | explanation["beyond"].notna()) & far_out_values
    unseen = explanation["unseen"]
    never_seen = (unseen == "unknown") & ~explanation["feature"].isin(list(routine_new))
    if top_k is not None:
        by_share = explanation.groupby("row")["contribution"].rank(method="first", ascending=False)
        # the never-seen values are named besides the rarest, not in their place
        by_rarity = explanation["tail_share"].where(far_out & ~never_seen).groupby(explanation["row"]).rank(
            method="first")
        kept = (by_share <= top_k) | (by_rarity <= top_k) | never_seen  # a NaN rank compares False
        explanation, far_out, unseen, never_seen = explanation[kept], far_out[kept], unseen[kept], never_seen[kept]
    parts: list[list[str]] = [[text] if text else [] for text in evidence or [""] * n_rows]
    for row, rare, outside, new in zip(explanation.itertuples(index=False), far_out, unseen, never_seen):
        as_expected = _as_expected(row.observed, row.expected)
        if rare or new or row.share >= (DOUBTED_SHARE if as_expected else MIN_SHARE):
            if outside in UNSEEN_WORDS:  # what the rarest of categories is: said as such
                tail = f", {UNSEEN_WORDS[outside]}"
            else:
                tail = _far_out_text(row.observed, row.beyond, row.tail_share, row.feature in categories) if rare \
                    else ""
            parts[row.row].append(f"{row.feature}={_plain(row.observed)} (expected ~{_plain(row.expected)}"
                                  f"{' but doubted' if as_expected else ''}, {row.share:.0%} of the mismatch{tail})")
    return ["; ".join(p) for p in parts]


def _as_expected(observed: Any, expected: Any) -> bool:
    """Whether a value is the one the model expected; a flag given as 1/0 or true/false is read as
    the model reads it (``card_present=0`` where ``False`` was expected is no mismatch)."""
    if isinstance(expected, (bool, np.bool_)):
        observed = BOOLEAN_SPELLINGS.get(str(observed).lower(), observed)
    return _plain(observed) == _plain(expected)


def _far_out_text(observed: Any, beyond: Any, tail_share: float, category: bool) -> str:
    if pd.notna(beyond):  # its tail probability is the floor, 1 / (n + 1): where the training values end says more
        try:
            side = "above the largest" if observed > beyond else "below the smallest"
        except TypeError:  # a number given as text to the library: no side to tell
            return f", outside the training values, which end at {_plain(beyond)}"
        return f", {side} training value, {_plain(beyond)}"
    # Two significant figures: the tails read a probability to within 5-11 % (maskae.tails). A
    # category has no "far out": it is rare.
    rarity = "as rare as" if category else "as far out as"
    return f", {rarity} 1 in {float(f'{1 / tail_share:.2g}'):,.0f} training values"


def read_summary(out_dir: Path) -> dict[str, Any] | None:
    """The ``summary.json`` of a finished screening folder, or None if there is none."""
    path = Path(out_dir) / SUMMARY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _locked_by_another(lock: Path) -> bool:
    """Whether a live process holds ``lock`` (a killed one's lock is released with its files)."""
    try:
        with open(lock) as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False
    except BlockingIOError:
        return True
    return False


class ScreeningFolder:
    """The screening folder while it is written, chunk by chunk, so memory does not grow with the file.

    Everything goes into a hidden sibling ``.<name>.tmp-<random>``; :meth:`publish` renames it to
    ``out_dir`` in one step, so a reader sees the whole folder or none of it. Leaving the ``with``
    block without publishing (an error) removes it; a killed process leaves it behind, and the next
    screening into ``out_dir`` removes it. A lock inside it, held while it is written, tells a
    killed screening's folder from one that another process is still writing.

    Scores are first written without flags (``p_value`` is final, flags of the batch strategies are
    not); :meth:`flag_scores` re-reads them once the batch's rule is known and writes ``scores.parquet``.
    """

    def __init__(self, out_dir: Path, id_column: str):
        self.out_dir, self.id_column = Path(out_dir), id_column
        self.tmp = self.out_dir.parent / f".{self.out_dir.name}.tmp-{uuid.uuid4().hex[:12]}"
        self.quarantine_head: pd.DataFrame | None = None  # the rows the report shows; quarantine.csv has all
        self._lock, self._scores, self._published, self._flagged_parts = None, None, False, 0

    def __enter__(self) -> "ScreeningFolder":
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.out_dir.parent.glob(f".{self.out_dir.name}.tmp-*"):
            if _locked_by_another(stale / _LOCK):
                raise FileExistsError(f"another screening is writing {str(self.out_dir)!r} right now ({stale.name})")
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed screening
        try:
            self.tmp.mkdir()
        except OSError as error:  # read-only or full: said of the folder asked for, not of the hidden one
            raise type(error)(error.errno, f"cannot write the screening folder {str(self.out_dir)!r}: "
                                           f"{error.strerror}; choose a folder this process can write to") from error
        self._lock = open(self.tmp / _LOCK, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self._scores is not None:
            self._scores.close()
        if not self._published:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self._lock.close()  # releases the lock

    def add_scores(self, ids: pd.Series, rows: np.ndarray, scores: np.ndarray, p_value: np.ndarray) -> None:
        """Append one chunk's scored rows (``rows``: their row numbers in the file)."""
        if not len(rows):  # an empty chunk's id column has no type to fix the file's on
            return
        table = pa.table({self.id_column: pa.array(ids.to_numpy(), from_pandas=True), ROW: rows,
                          "anomaly_score": scores, "p_value": p_value})
        if self._scores is None:
            self._scores = pq.ParquetWriter(self.tmp / _UNFLAGGED, table.schema)
        self._scores.write_table(table.cast(self._scores.schema))

    def add_quarantined(self, rows: pd.DataFrame) -> None:
        """Append one chunk's quarantined rows (as read, plus their reason) to ``quarantine.csv``."""
        first = self.quarantine_head is None
        for_csv(rows).to_csv(self.tmp / QUARANTINE, mode="w" if first else "a", header=first, index=False,
                             lineterminator=CSV_LINE_END)
        head = rows if first else pd.concat([self.quarantine_head, rows.head(QUARANTINE_ROWS)])
        self.quarantine_head = head.head(QUARANTINE_ROWS)

    def unflagged_scores(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """The scores written so far, chunk by chunk, in row order."""
        if self._scores is not None:
            self._scores.close()
            self._scores = None
        if not (self.tmp / _UNFLAGGED).exists():
            return
        with parquet_stream(self.tmp / _UNFLAGGED) as source:
            for batch in source.iter_batches(batch_size=SCORE_BATCH, columns=columns):
                yield batch.to_pandas()

    def flag_scores(self, flags: Callable[[np.ndarray], np.ndarray]) -> pd.DataFrame:
        """Write ``scores.parquet`` with ``flags(scores)`` applied chunk by chunk, in row order, and
        return the flagged rows (row number, id, score, p-value)."""
        writer, flagged = None, []
        try:
            for chunk in self.unflagged_scores():
                chunk["flagged"] = flags(chunk["anomaly_score"].to_numpy())
                flagged.append(chunk[chunk["flagged"]].drop(columns="flagged"))
                table = pa.Table.from_pandas(chunk.drop(columns=ROW), preserve_index=False)
                writer = writer or pq.ParquetWriter(self.tmp / SCORES, table.schema)
                writer.write_table(table.cast(writer.schema))
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # nothing was scored: an empty file with the columns
            pd.DataFrame({self.id_column: pd.Series(dtype=object), "anomaly_score": pd.Series(dtype=float),
                          "p_value": pd.Series(dtype=float), "flagged": pd.Series(dtype=bool)}
                         ).to_parquet(self.tmp / SCORES, index=False)
        (self.tmp / _UNFLAGGED).unlink(missing_ok=True)
        return pd.concat(flagged) if flagged else pd.DataFrame(columns=[self.id_column, ROW, "anomaly_score", "p_value"])

    def add_flagged(self, records: pd.DataFrame) -> None:
        """Keep one chunk's explained flagged records (with their ``_row`` number) until
        :meth:`write_flagged` orders them."""
        records.to_parquet(self.tmp / f"{_FLAGGED_PART}{self._flagged_parts:06d}.parquet", index=False)
        self._flagged_parts += 1

    def write_flagged(self, hits: pd.DataFrame, columns: list[str], head_rows: int) -> pd.DataFrame:
        """Write ``flagged.csv``: the kept records of ``hits`` (row number, score), most anomalous
        first (ties in file order), ``FLAGGED_BLOCK`` at a time so memory does not grow with the
        flags. Returns the first ``head_rows`` records."""
        ranked = hits[ROW].to_numpy()[np.argsort(-hits["anomaly_score"].to_numpy(), kind="stable")]
        order = pd.Series(np.arange(len(ranked)), index=ranked)  # row number -> rank
        parts = sorted(self.tmp.glob(f"{_FLAGGED_PART}*.parquet"))
        with open(self.tmp / FLAGGED, "w", encoding="utf-8", newline="") as out:
            pd.DataFrame(columns=columns).to_csv(out, index=False, lineterminator=CSV_LINE_END)
            for start in range(0, len(order), FLAGGED_BLOCK):
                block = order[(order >= start) & (order < start + FLAGGED_BLOCK)]
                rows = pd.concat([part[part[ROW].isin(block.index)] for part in map(pd.read_parquet, parts)])
                rows = rows.iloc[np.argsort(block.loc[rows[ROW]].to_numpy(), kind="stable")]
                for_csv(rows[columns], keep=("anomaly_score", "p_value")).to_csv(
                    out, index=False, header=False, lineterminator=CSV_LINE_END)
        for part in parts:
            part.unlink()
        return read_output_csv(self.tmp / FLAGGED, nrows=head_rows, dtype={self.id_column: str})

    def publish(self, *, summary: dict[str, Any], report: str) -> Path:
        """Write the last files and rename the folder into place. ``out_dir`` must not exist, or be
        empty; ``summary`` must be JSON-serialisable."""
        if self.quarantine_head is None:
            raise ValueError("no chunk was read: quarantine.csv has no columns")
        (self.tmp / REPORT).write_text(report, encoding="utf-8")
        (self.tmp / SUMMARY).write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
        try:
            os.replace(self.tmp, self.out_dir)  # atomic on one file system; refuses a non-empty out_dir
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            raise FileExistsError(f"{str(self.out_dir)!r} was filled by another screening while this one ran: "
                                  f"choose a new folder") from error
        self._published = True
        # The lock goes only now: without it, another screening into out_dir could take the folder
        # for a killed one's and remove it before the rename.
        (self.out_dir / _LOCK).unlink()
        return self.out_dir
