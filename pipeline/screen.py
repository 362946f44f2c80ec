"""Screening step: score one batch file with a registered model, write the screening output folder.

``screen`` needs nothing but the data and a model reference: the model carries its detector,
calibration and the training data's schema. The batch's columns are checked against that schema
before anything is scored (:class:`~pipeline.ingest.SchemaError` names what is missing); the file is
then streamed in chunks of ``batch_rows``: each chunk is validated (ids repeated across chunks are
caught), its clean rows scored through the MLflow pyfunc, the other rows quarantined with a reason.
The calibration is applied to the whole file's scores at the end, so for the batch strategies
(``fdr``, ``budget``) the flags do not depend on the chunk size. A second pass over the file
explains the flagged rows only (``detector.explain``), so memory holds scores and ids, not rows.

The output folder (see :mod:`pipeline.screening_output`) appears atomically. If it already holds a
screening of the same input bytes by the same model version, that screening is returned unchanged.
Each screening is also an MLflow run in the model's experiment.

Example
-------
>>> # result = screen("incoming/2026-01-08.csv", "fraud@champion", Path("runs/2026-01-08"))
>>> # result.summary["rows_flagged"], result.out_dir / "flagged.csv", result.reused
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from tqdm.auto import tqdm

from pipeline import tracking
from pipeline.ingest import IngestError, Schema, iter_batches, validate
from pipeline.scoring import ScoringModel, feature_frame, load_scoring_model
from pipeline.screening_output import read_summary, reasons_text, write_screening_folder
from pipeline.sources import fingerprint

QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class ScreenResult:
    """The screening folder, its ``summary.json`` content, and whether an earlier run was reused."""

    out_dir: Path
    summary: dict[str, Any]
    reused: bool


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None  # JSON has no infinity: None = nothing flagged


def _drift(scores: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
    """Two-sample Kolmogorov–Smirnov test of the batch's scores against the calibration scores."""
    if len(scores) == 0:
        return {"ks_statistic": None, "ks_p_value": None, "score_mean": None,
                "calibration_score_mean": float(reference.mean())}
    test = ks_2samp(scores, reference)
    return {"ks_statistic": float(test.statistic), "ks_p_value": float(test.pvalue),
            "score_mean": float(scores.mean()), "calibration_score_mean": float(reference.mean()),
            **{f"score_q{q * 100:g}": float(np.quantile(scores, q)) for q in QUANTILES}}


def _flagged_records(path: Path, model: ScoringModel, schema: Schema, scores: pd.DataFrame, batch_rows: int,
                     top_reasons: int) -> pd.DataFrame:
    """Second pass: the flagged rows (``scores`` indexed by row number), with reasons, most anomalous first."""
    wanted, parts, seen = scores.index[scores["flagged"]], [], set()
    first = [schema.id_column, "anomaly_score", "p_value", "reasons", *schema.feature_columns]
    if len(wanted):
        with warnings.catch_warnings():  # the first pass has said it all
            warnings.simplefilter("ignore")
            for chunk in iter_batches(path, batch_rows=batch_rows, id_column=schema.id_column):
                clean = validate(chunk, schema, seen_ids=seen).clean
                hits = clean[clean.index.isin(wanted)]
                if len(hits):
                    why = model.detector.explain(feature_frame(hits, schema), top_k=top_reasons)
                    parts.append(hits.assign(reasons=reasons_text(why, len(hits)),
                                             **scores.loc[hits.index, ["anomaly_score", "p_value"]]))
    if not parts:
        return pd.DataFrame(columns=first)
    flagged = pd.concat(parts).sort_values("anomaly_score", ascending=False, kind="stable")
    return flagged[first + [c for c in flagged.columns if c not in first]]


def _same_screening(summary: dict[str, Any], sha256: str, model: tracking.ResolvedModel) -> bool:
    return (summary.get("input", {}).get("sha256") == sha256 and summary.get("model", {}).get("name") == model.name
            and str(summary.get("model", {}).get("version")) == model.version)


def screen(data_path: str | Path, model_ref: str, out_dir: Path, *, id_column: str | None = None,
           batch_rows: int = 100_000, top_reasons: int = 3) -> ScreenResult:
    """Screen one CSV or Parquet file and write the screening folder ``out_dir``.

    Parameters
    ----------
    data_path : str or Path
        The batch file.
    model_ref : str
        ``NAME`` (= ``NAME@champion``), ``NAME@ALIAS`` or ``NAME/VERSION``, optionally ``models:/``-prefixed.
    out_dir : Path
        The screening folder; must not exist yet (or be empty), unless it holds this very screening.
    id_column : str or None, default=None
        The batch's id column, when it is not named as in training.
    batch_rows : int, default=100_000
        Rows read, validated and scored at a time.
    top_reasons : int, default=3
        Features named in each flagged record's ``reasons``.

    Raises
    ------
    IngestError
        The file cannot be read, or changed while it was screened.
    SchemaError
        The file lacks a column the model needs; raised before scoring, no folder is written.
    ModelNotFoundError, FileExistsError
        Unknown model or alias; ``out_dir`` holds something else.
    """
    started, data_path, out_dir = _now(), Path(data_path), Path(out_dir)
    iter_batches(data_path, batch_rows=batch_rows)  # fails now on a missing, empty or unnamed-format file
    resolved, source = tracking.resolve_model(model_ref), fingerprint([data_path])
    previous = read_summary(out_dir)
    if previous is not None and _same_screening(previous, source["sha256"], resolved):
        return ScreenResult(out_dir, previous, reused=True)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{str(out_dir)!r} already holds something other than this screening of "
                              f"{data_path.name} by {resolved.name} v{resolved.version}: choose a new folder")
    model = load_scoring_model(resolved)
    schema = model.schema if id_column is None else Schema(id_column, model.schema.features, model.schema.label_column)
    seen, columns, quarantined, parts = set(), None, [], []
    bar = tqdm(desc=f"screening {data_path.name}", unit="rows", disable=not sys.stderr.isatty(), leave=False)
    for chunk in iter_batches(data_path, batch_rows=batch_rows, id_column=schema.id_column):
        bar.update(len(chunk))
        checked = validate(chunk, schema, seen_ids=seen)  # SchemaError here, before the first score
        columns = list(chunk.columns) if columns is None else columns
        quarantined.append(checked.quarantined)
        scored = model.score(feature_frame(checked.clean, schema))["anomaly_score"]
        parts.append(pd.DataFrame({schema.id_column: checked.clean[schema.id_column], "anomaly_score": scored}))
    bar.close()
    scores = pd.concat(parts)
    applied = model.calibration.apply(scores["anomaly_score"].to_numpy())  # the whole file is one batch
    scores["p_value"], scores["flagged"] = applied.p_value, applied.flagged
    flagged = _flagged_records(data_path, model, schema, scores, batch_rows, top_reasons)
    if fingerprint([data_path])["sha256"] != source["sha256"]:
        raise IngestError(f"{str(data_path)!r} changed while it was screened; screen it again once it is complete")
    quarantine = pd.concat(quarantined)
    cal = model.calibration
    summary = {
        "rows_in": len(scores) + len(quarantine), "rows_scored": len(scores), "rows_quarantined": len(quarantine),
        "rows_flagged": int(applied.flagged.sum()),
        "flag_rate": float(applied.flagged.mean()) if len(scores) else 0.0,
        "id_column": schema.id_column,
        "model": {"name": resolved.name, "version": resolved.version, "alias": resolved.alias, "uri": resolved.uri},
        "calibration": {"strategy": cal.strategy, "level": cal.level, "objective": cal.objective,
                        "threshold": _finite(applied.threshold),
                        "threshold_kind": "fixed" if cal.strategy in ("fpr", "labels") else "whole file"},
        "drift": _drift(scores["anomaly_score"].to_numpy(), cal.calibration_scores),
        "input": {"path": str(data_path.resolve()), **{k: source[k] for k in ("sha256", "bytes")}, "columns": columns},
        "started_at": started,
    }
    metrics = {k: summary[k] for k in ("rows_in", "rows_scored", "rows_quarantined", "rows_flagged", "flag_rate")}
    metrics |= {f"drift_{k}": v for k, v in summary["drift"].items() if v is not None}
    summary["mlflow_run_id"] = tracking.log_run(
        resolved, "screening", metrics=metrics,
        params={"input.path": summary["input"]["path"], "out_dir": str(out_dir.resolve()), "top_reasons": top_reasons},
        tags={"input.sha256": source["sha256"], "calibration.strategy": cal.strategy})
    summary["finished_at"] = _now()
    write_screening_folder(out_dir, scores=scores.reset_index(drop=True), flagged=flagged,
                           quarantined=quarantine, summary=summary)
    return ScreenResult(out_dir, read_summary(out_dir), reused=False)
