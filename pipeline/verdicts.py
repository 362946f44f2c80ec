"""Analysts' verdicts on screened records: read and check a verdict file, collect labels across runs.

An analyst's verdict file is a CSV of the record id (headed like the run's id column, or ``id``),
``outcome`` (``fraud`` or ``legitimate``; on a screening of images ``defect`` or ``good``) and an
optional ``note``. :func:`read_verdicts` refuses a
bad file with an error naming the line and column; :mod:`pipeline.review` keeps the verdicts in the
run folder's ``verdicts.csv``. :func:`labelled_records` joins every run's verdicts with the run's
``flagged.csv`` (which holds the flagged records' values), giving labelled rows that promotion can
evaluate models on — with a bias to keep in mind: only flagged records get verdicts.

Example
-------
>>> import io
>>> read_verdicts(io.StringIO("id,outcome\\ntx1, Fraud\\ntx2,legitimate\\n"), "transaction_id").to_dict("list")
{'transaction_id': ['tx1', 'tx2'], 'outcome': ['fraud', 'legitimate'], 'note': ['', '']}
>>> try:
...     read_verdicts(io.StringIO("id,outcome\\ntx1,maybe\\n"), "transaction_id")
... except VerdictError as error:
...     print(error)
<verdicts>: line 2, column 'outcome': 'maybe' is not one of fraud, legitimate
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import pandas as pd

from pipeline.ingest import file_signature, first_line_not_utf8
from pipeline.report import TABLE_OUTCOMES
from pipeline.screening_output import FLAGGED, read_output_csv, read_summary, without_formula_quote

VERDICTS = "verdicts.csv"
VERDICT_LABEL = "verdict_is_fraud"  # the label column of labelled_records: 1 = fraud
MAX_LISTED = 5  # bad lines named in one error message


class VerdictError(ValueError):
    """A verdict file that cannot be used; the message names the file, line and column."""


def _header(name: str) -> str:
    return re.sub(r"[\s_]+", "_", name.strip().lower())


def _not_utf8(source: str | Path | IO[str], error: UnicodeDecodeError) -> str:
    """Where a file that is not UTF-8 first stops being it, what it likely is instead, and the fix."""
    if isinstance(source, (str, Path)) and (kind := file_signature(Path(source))):
        return f"the file is {kind[0]}; save it as 'CSV UTF-8'"  # a verdict file is a CSV
    line = first_line_not_utf8(Path(source)) if isinstance(source, (str, Path)) else None
    where = f"line {line:,}" if line else "it"
    return (f"{where} is not UTF-8 text (byte 0x{error.object[error.start]:02x}: likely Windows-1252, which "
            f"Excel's plain 'CSV' saves); save it as 'CSV UTF-8'")


def read_verdicts(source: str | Path | IO[str], id_column: str, known_ids: pd.Index | None = None,
                  outcomes: tuple[str, str] = TABLE_OUTCOMES, quarantined_ids: pd.Index | None = None,
                  record_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read and check an analyst's verdict file.

    Parameters
    ----------
    source : str, Path or text file
        CSV with the id column (named ``id_column`` or ``id``), ``outcome`` and optionally ``note``.
    id_column : str
        The screening run's id column; the result names its id column so.
    known_ids : Index or None, default=None
        The run's record ids (as text): a verdict on any other id is refused.
    outcomes : (str, str), default=("fraud", "legitimate")
        The run's verdict words (:func:`pipeline.report.outcome_words`; ``("defect", "good")`` on images).
    quarantined_ids : Index or None, default=None
        The run's quarantined record ids: a verdict on one is refused as such (it was never scored).
    record_columns : sequence of str, default=()
        The columns of the run's ``flagged.csv``: its copy with an ``outcome`` column added is a
        verdict file too, those columns ignored (any other column is refused, as a misspelt one).

    Returns
    -------
    DataFrame
        ``id_column``, ``outcome`` (lower case), ``note`` (empty when none), as text, in file order;
        a repeated id keeps its last verdict (the ids given both outcomes in ``attrs["conflicting"]``). A row with an id and no outcome (not decided yet) is
        left out, and counted in ``attrs["undecided"]``. Column names are read in any case, spaces
        for underscores. Surrounding spaces do not count: an id is spelt as the run spells it (a CHAR column's export pads its ids with spaces), and a spreadsheet's
        empty rows and empty unnamed columns are left out. An id copied from ``flagged.csv`` with the
        "'" that kept a spreadsheet from running it as a formula (``'=HYPERLINK(...)``) is read as
        the run's id without it.

    Raises
    ------
    VerdictError
        Missing or unexpected columns, no rows, an empty id, an unknown outcome or id.
    """
    name = str(source) if isinstance(source, (str, Path)) else "<verdicts>"
    try:
        # blank lines kept (then left out below), so that line numbers count them; index_col=False, as
        # a first row longer than the header would make its ids the index
        frame = pd.read_csv(source, dtype=str, keep_default_na=False, skip_blank_lines=False, index_col=False)
    except UnicodeDecodeError as error:
        raise VerdictError(f"{name}: cannot read the verdicts: {_not_utf8(source, error)}") from None
    except pd.errors.EmptyDataError:
        raise VerdictError(f"{name}: holds no verdicts (the file is empty)") from None
    except (OSError, pd.errors.ParserError) as error:
        raise VerdictError(f"{name}: cannot read the verdicts: {error}") from None
    # Any case, spaces for underscores: a spreadsheet user writes "ID", "Outcome", "Transaction ID"
    names = {_header(name): name for name in (id_column, "id", "outcome", "note")}
    frame.columns = [names.get(_header(str(c)), str(c).strip()) for c in frame.columns]
    blank = frame.apply(lambda column: column.str.strip() == "")
    frame = frame.loc[~blank.all(axis=1), ~(blank.all() & frame.columns.str.startswith("Unnamed: "))]
    ids = id_column if id_column in frame.columns else "id"
    if known_ids is not None and ids in frame.columns:
        # an id copied from flagged.csv in a spreadsheet keeps the "'" that defused a formula there
        given = frame[ids].str.strip()
        unquoted = without_formula_quote(given)
        frame[ids] = frame[ids].where((unquoted == given) | frame[ids].isin(known_ids) | ~unquoted.isin(known_ids),
                                      unquoted)
    wanted = {ids, "outcome"}
    if not wanted <= set(frame.columns):
        one = str(frame.columns[0]) if len(frame.columns) == 1 else ""
        hint = next((f" (its one column holds {sep!r}: save the file comma-separated)" for sep in (";", "\t")
                     if sep in one), "")
        raise VerdictError(f"{name}: needs columns {id_column!r} (or 'id') and 'outcome' (and optionally 'note'); "
                           f"it has {list(frame.columns)}{hint}")
    extra = [c for c in frame.columns if c not in wanted | {"note"} | set(record_columns)]
    if extra:
        raise VerdictError(f"{name}: unexpected column(s) {extra}: a verdict file holds {id_column!r} (or 'id'), "
                           f"'outcome' and 'note' only" + (", or is the run's flagged.csv with an 'outcome' column "
                                                           "added" if record_columns else ""))
    undecided = (frame["outcome"].str.strip() == "") & (frame[ids].str.strip() != "")
    frame = frame[~undecided]
    if frame.empty:
        raise VerdictError(f"{name}: holds no verdicts" + (f" ({undecided.sum():,} row(s) with an id have no outcome "
                                                           f"yet)" if undecided.any() else ""))
    verdicts = pd.DataFrame({id_column: frame[ids].str.strip(), "outcome": frame["outcome"].str.strip().str.lower(),
                             "note": frame["note"].str.strip() if "note" in frame else ""})
    ambiguous = pd.Series(False, index=verdicts.index)
    if known_ids is not None:  # spelt as the run spells it: the id itself, else the one it is with spaces
        as_run = pd.Series(known_ids, index=known_ids.str.strip())
        exact = frame[ids].isin(known_ids)
        ambiguous = ~exact & verdicts[id_column].isin(as_run.index[as_run.index.duplicated()])
        as_run = as_run[~as_run.index.duplicated(keep=False)]
        verdicts[id_column] = frame[ids].where(exact, verdicts[id_column].map(as_run)).fillna(verdicts[id_column])
    problems = [(line, ids, "the id is empty") for line in verdicts.index[verdicts[id_column] == ""] + 2]
    problems += [(i + 2, "outcome", f"{frame['outcome'][i]!r} is not one of {', '.join(outcomes)}")
                 for i in verdicts.index[~verdicts["outcome"].isin(outcomes)]]
    problems += [(i + 2, ids, f"{frame[ids][i]!r} is more than one record of this screening run once spaces are "
                               f"left out: spell it as the run does") for i in verdicts.index[ambiguous]]
    if known_ids is not None:
        unknown = verdicts.index[(verdicts[id_column] != "") & ~verdicts[id_column].isin(known_ids) & ~ambiguous]
        # A spreadsheet reads an id of digits as a number, and drops its leading zeros.
        unpadded = pd.Series(known_ids, index=known_ids.str.lstrip("0"))
        unpadded = unpadded[~unpadded.index.duplicated(keep=False)]
        quarantined = pd.Index([]) if quarantined_ids is None else quarantined_ids.str.strip()
        problems += [(i + 2, ids, f"{verdicts[id_column][i]!r} " + (
            "was quarantined, not scored (quarantine.csv says why): it has no flag to review"
            if verdicts[id_column][i] in quarantined else "is not a record of this screening run" + (
                f" (the run has {unpadded[verdicts[id_column][i]]!r}: a spreadsheet drops an id's leading zeros; "
                f"format the id column as text)" if verdicts[id_column][i] in unpadded.index else "")))
            for i in unknown]
    if problems:
        problems.sort()
        listed = "; ".join(f"line {line}, column {column!r}: {what}" for line, column, what in problems[:MAX_LISTED])
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise VerdictError(f"{name}: {listed}{more}")
    given = verdicts.groupby(id_column, sort=False)["outcome"].nunique()
    verdicts = verdicts.drop_duplicates(id_column, keep="last").reset_index(drop=True)
    verdicts.attrs["undecided"] = int(undecided.sum())
    verdicts.attrs["conflicting"] = tuple(given.index[given > 1])
    return verdicts


def stored_verdicts(run_dir: Path) -> pd.DataFrame | None:
    """The run folder's ``verdicts.csv`` (all as text, a note that would run as a formula without the
    "'" it was written with), or None before any review."""
    path = Path(run_dir) / VERDICTS
    return read_output_csv(path, dtype=str).fillna("") if path.is_file() else None


def reviewed_runs(runs_root: str | Path) -> list[tuple[str, Path, str]]:
    """(finished at, folder, id column) of each reviewed screening run under ``runs_root``, at any
    depth; VerdictError when there is none."""
    runs = []
    for path in Path(runs_root).rglob(VERDICTS):
        summary = read_summary(path.parent)
        if summary is not None and (path.parent / FLAGGED).is_file():
            runs.append((summary.get("finished_at", ""), path.parent, summary["id_column"]))
    if not runs:
        raise VerdictError(f"no reviewed screening run under {str(runs_root)!r}: attach verdicts to a run with "
                           f"`maskae review --run DIR --verdicts FILE` first")
    return runs


def labelled_records(runs_root: str | Path) -> pd.DataFrame:
    """Every reviewed flagged record under ``runs_root``: its values from ``flagged.csv`` and
    ``VERDICT_LABEL`` (1 = fraud, 0 = legitimate).

    Run folders are found at any depth by their ``verdicts.csv``; a record reviewed in more than one
    run (its id and values alike) keeps the verdict of the run that finished last. One id with other
    values is another record (ids that restart with every file), and is kept. Verdicts on records
    that were not flagged are left out: the run kept no values for them.

    Raises
    ------
    VerdictError
        No reviewed screening run under ``runs_root``.
    """
    runs = reviewed_runs(runs_root)
    id_columns = {id_column for _, _, id_column in runs}
    if len(id_columns) > 1:
        raise VerdictError(f"the reviewed runs under {str(runs_root)!r} name their ids differently "
                           f"({sorted(id_columns)}): collect runs of one use case")
    parts, (id_column,) = [], id_columns
    for _, run_dir, _ in sorted(runs):
        flagged = read_output_csv(run_dir / FLAGGED, dtype=str)  # as a batch is read: validation parses the numbers
        labelled = flagged.merge(stored_verdicts(run_dir)[[id_column, "outcome"]], on=id_column, how="inner")
        labelled[VERDICT_LABEL] = (labelled.pop("outcome") == TABLE_OUTCOMES[0]).astype(int)
        parts.append(labelled.drop(columns=["anomaly_score", "p_value", "reasons"], errors="ignore"))
    records = pd.concat(parts, ignore_index=True)
    # A record is its id (as text: 007 is not 7) and values: the columns every run kept (a retrained
    # model may read more), numbers compared as numbers (one run writes an amount 500, another 500.0).
    values = [c for c in records.columns if c not in (VERDICT_LABEL, id_column) and all(c in p for p in parts)]
    repeated = records[values].apply(_as_number_where_one).assign(**{id_column: records[id_column]}).duplicated(
        keep="last")
    return records[~repeated].reset_index(drop=True)


def _as_number_where_one(column: pd.Series) -> pd.Series:
    parsed = pd.to_numeric(column, errors="coerce")
    return column.astype(object).where(parsed.isna(), parsed)
