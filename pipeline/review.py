"""The review step: attach an analyst's verdicts to a screening run, and let the run's report show them.

``review`` checks the verdict file against the run (every id must be one of its records), merges it
into the run folder's ``verdicts.csv`` (a record reviewed again keeps its latest verdict, so
re-submitting a file adds no duplicates), logs the verdicts and the precision of the run's flags to
the screening's MLflow run, and renders ``report.html`` again so it shows each record's verdict and
that precision. Both files are replaced atomically. The report is rebuilt from the folder (the
score histogram is kept in ``summary.json``) and the model's calibration scores.

Example
-------
>>> # result = review("maskae-runs/2026-01-07", "verdicts-2026-01-07.csv")
>>> # result.stored, result.flags.precision
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline import tracking
from pipeline.ingest import parquet_stream
from pipeline.report import IMAGE_OUTCOMES, QUARANTINE_ROWS, FlagReview, flag_review, outcome_words, render_report
from pipeline.report_plots import ScoreHistogram, histogram_edges
from pipeline.scoring import load_scoring_model
from pipeline.screening_output import (CSV_LINE_END, FLAGGED, QUARANTINE, REPORT, SCORES, for_csv, read_output_csv,
                                       read_summary)
from pipeline.verdicts import VERDICTS, read_verdicts, stored_verdicts


@dataclass(frozen=True)
class ReviewResult:
    """What a review left in the run folder."""

    run_dir: Path
    submitted: int  # verdicts in the file (a repeated id counted once)
    undecided: int  # rows of the file with an id and no outcome yet: left out
    stored: int  # verdicts the run holds now, earlier reviews included
    flags: FlagReview  # the run's flags against all its verdicts
    overturned: tuple[str, ...] = ()  # records whose earlier outcome this review changed
    unchanged: int = 0  # verdicts sent again as they stood: nothing changed
    conflicting: tuple[str, ...] = ()  # records the file gave both outcomes: its last line for each kept


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _score_histogram(run_dir: Path, summary: dict, calibration_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The histogram screening kept in ``summary.json``; for a run screened before it did, counted
    again from ``scores.parquet`` one row group at a time."""
    if "score_histogram" in summary:
        return ScoreHistogram.from_dict(summary["score_histogram"]).counts_and_edges()
    histogram = ScoreHistogram(histogram_edges(calibration_scores, summary["calibration"]["threshold"]))
    with parquet_stream(run_dir / SCORES) as scores:
        for batch in scores.iter_batches(columns=["anomaly_score"]):
            histogram.add(batch.column(0).to_numpy(zero_copy_only=False))
    return histogram.counts_and_edges()


def _unflagged_scores(run_dir: Path, id_column: str, known: pd.Series, ids: set[str]) -> pd.DataFrame | None:
    """The ``scores.parquet`` rows of the records ``ids`` (reviewed, not flagged), found among the
    run's ids as text, ``known`` (in the file's order); None if none."""
    if not ids:
        return None
    rows = known.isin(ids).to_numpy()
    scores = pq.read_table(run_dir / SCORES, columns=["anomaly_score", "p_value"]).to_pandas()[rows]
    return scores.assign(**{id_column: known[rows].to_numpy()})


def _quarantined_head(run_dir: Path) -> pd.DataFrame:
    try:
        return read_output_csv(run_dir / QUARANTINE, nrows=QUARANTINE_ROWS)
    except pd.errors.EmptyDataError:  # nothing was quarantined
        return pd.DataFrame()


def review(run_dir: str | Path, verdicts_path: str | Path) -> ReviewResult:
    """Attach the verdicts of ``verdicts_path`` to the screening run in ``run_dir``.

    Parameters
    ----------
    run_dir : str or Path
        A finished screening folder (it has ``summary.json``).
    verdicts_path : str or Path
        CSV of the record id, ``outcome`` (fraud / legitimate; on images defect / good) and optionally ``note``
        (:func:`pipeline.verdicts.read_verdicts`).

    Returns
    -------
    ReviewResult

    Raises
    ------
    FileNotFoundError
        ``run_dir`` is not a finished screening folder.
    VerdictError
        A bad verdict file, or an id that is not a record of this run; nothing is written.
    ModelNotFoundError
        The run's model version is gone from the registry (its calibration redraws the report).
    """
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary is None:
        raise FileNotFoundError(f"no such folder {str(run_dir)!r}; give the output folder a screening wrote "
                                f"(screen's --out)" if not run_dir.is_dir() else
                                f"{str(run_dir)!r} is not a finished screening folder (it has no summary.json)")
    id_column = summary["id_column"]
    known = pq.read_table(run_dir / SCORES, columns=[id_column]).column(0).to_pandas().astype(str)
    words = outcome_words(summary)  # ("fraud", "legitimate"), or ("defect", "good") on images
    quarantine = run_dir / QUARANTINE
    quarantined = (read_output_csv(quarantine, dtype=str, usecols=lambda c: c == id_column).fillna("")
                   .get(id_column, pd.Series(dtype=str)) if quarantine.is_file() else pd.Series(dtype=str))
    flagged = read_output_csv(run_dir / FLAGGED, dtype={id_column: str})
    submitted = read_verdicts(verdicts_path, id_column, known_ids=pd.Index(known), outcomes=words,
                              quarantined_ids=pd.Index(quarantined), record_columns=list(flagged.columns))
    calibration = load_scoring_model(summary["model"]["uri"], images=words == IMAGE_OUTCOMES).calibration
    pictures = {record: {view: run_dir / file for view, file in views.items()}
                for record, views in summary.get("record_images", {}).items()}
    missing = [str(file) for views in pictures.values() for file in views.values() if not file.is_file()]
    if missing:  # all of this fails before anything is written
        raise FileNotFoundError(f"{str(run_dir)!r} lacks {len(missing)} of its report's images, e.g. {missing[0]!r}")

    verdicts, overturned, unchanged = _merged(stored_verdicts(run_dir), submitted, id_column)
    _replace(run_dir / VERDICTS, for_csv(verdicts).to_csv(index=False, lineterminator=CSV_LINE_END))

    unflagged = _unflagged_scores(run_dir, id_column, known, set(verdicts[id_column]) - set(flagged[id_column]))
    page = render_report(summary, flagged, _quarantined_head(run_dir),
                         _score_histogram(run_dir, summary, calibration.calibration_scores),
                         calibration.calibration_scores, verdicts=verdicts, unflagged=unflagged, images=pictures)
    _replace(run_dir / REPORT, page)

    flags = flag_review(flagged[id_column].tolist(), dict(zip(verdicts[id_column], verdicts["outcome"])), words)
    if summary.get("mlflow_run_id"):
        metrics = {"verdicts": len(verdicts), "verdicts_fraud": int((verdicts["outcome"] == words[0]).sum()),
                   "flags_reviewed": flags.reviewed, "verdicts_not_flagged": flags.not_flagged}
        if flags.precision is not None:
            metrics["flag_precision"] = flags.precision
        tracking.add_to_run(summary["mlflow_run_id"], metrics=metrics, artifact=run_dir / VERDICTS,
                            artifact_path="review")
    return ReviewResult(run_dir, len(submitted), submitted.attrs["undecided"], len(verdicts), flags, overturned,
                        unchanged, submitted.attrs["conflicting"])


def _merged(stored: pd.DataFrame | None, submitted: pd.DataFrame,
            id_column: str) -> tuple[pd.DataFrame, tuple[str, ...], int]:
    """The run's verdicts with ``submitted`` added, the records whose earlier outcome these
    overturned, and how many of them were sent again as they stood. A record's latest verdict
    wins, stamped with when (``reviewed_at``, UTC) and, where it overturned an earlier outcome, that
    outcome (``previous_outcome``; a verdict that repeats the earlier outcome keeps the earlier
    one's). A verdict submitted again as it stands (outcome and note, or the outcome without a
    note) changes nothing, its first time and note kept."""
    stored = pd.DataFrame(columns=[id_column, "outcome", "note"]) if stored is None else stored
    earlier = stored.set_index(id_column).reindex(submitted[id_column])
    outcome, given = earlier["outcome"].to_numpy(), submitted["outcome"].to_numpy()
    previous = earlier.get("previous_outcome", pd.Series("", index=earlier.index, dtype=object)).fillna("")
    overturned = pd.notna(outcome) & (outcome != given)
    # The same outcome sent again without a note (a file with no note column) keeps the note it had.
    kept_note = (outcome == given) & (submitted["note"].fillna("").to_numpy() == "")
    submitted = submitted.assign(note=np.where(kept_note, earlier["note"].to_numpy(), submitted["note"].to_numpy()))
    repeated = (outcome == given) & (earlier["note"].to_numpy() == submitted["note"].to_numpy())
    added = submitted.assign(reviewed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             previous_outcome=np.where(overturned, outcome, previous.to_numpy()))[~repeated]
    merged = pd.concat([stored, added], ignore_index=True).fillna("")  # reviews before the stamps: empty
    return (merged.drop_duplicates(id_column, keep="last").reset_index(drop=True),
            tuple(submitted[id_column][overturned]), int(repeated.sum()))
