"""The screening output folder of DESIGN.md, written atomically, and the reasons and report in it.

One folder per screening run::

    scores.parquet   id column (own name), anomaly_score, p_value, flagged — every scored row
    flagged.csv      flagged records, most anomalous first, with a ``reasons`` column
    quarantine.csv   rows that could not be scored, as read, plus ``quarantine_reason``
    report.html      a self-contained page: counts, model, calibration, drift, flagged records
    summary.json     counts (rows_in == rows_scored + rows_quarantined), model, calibration, ...

:func:`write_screening_folder` builds it under a hidden sibling name (``.<name>.tmp-<random>``) and
renames it into place with ``os.replace``, so a reader sees the whole folder or none of it.

Example
-------
>>> explanation = pd.DataFrame({"row": [0, 0], "feature": ["amount", "country"],
...     "observed": [4522.931, "IT"], "expected": [799.1634, "DE"], "contribution": [2.0, 0.7],
...     "share": [0.47, 0.17]})
>>> reasons_text(explanation, n_rows=1)
['amount=4522.93 (expected ~799.16, 47%); country=IT (expected ~DE, 17%)']
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SCORES, FLAGGED, QUARANTINE, REPORT, SUMMARY = (
    "scores.parquet", "flagged.csv", "quarantine.csv", "report.html", "summary.json")
REPORT_ROWS = 200  # flagged records shown in the report; flagged.csv holds them all


def _text(value: Any) -> str:
    """A cell for people: floats to 2 decimals (whole numbers without), missing as empty."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or float(value).is_integer():
            return str(int(value)) if math.isfinite(value) else str(value)
        return f"{value:.2f}" if abs(value) >= 0.01 else f"{value:.3g}"
    return str(value)


MIN_SHARE = 0.05


def reasons_text(explanation: pd.DataFrame, n_rows: int) -> list[str]:
    """One ``"feature=observed (expected ~value, share%)"`` list per row, ``"; "``-joined.

    ``explanation`` is ``MaskedAutoencoderDetector.explain(X, top_k=...)`` of ``n_rows`` records;
    the share is the feature's part of the row's reconstruction evidence. Features with under
    ``MIN_SHARE`` of it are left out, and so are cells whose value is the one expected (a category
    predicted right but without full confidence): an analyst reads what stood out.
    """
    parts: list[list[str]] = [[] for _ in range(n_rows)]
    for row in explanation.itertuples(index=False):
        if row.share >= MIN_SHARE and _text(row.observed) != _text(row.expected):
            parts[row.row].append(f"{row.feature}={_text(row.observed)} (expected ~{_text(row.expected)}, "
                                  f"{row.share:.0%})")
    return ["; ".join(p) for p in parts]


def read_summary(out_dir: Path) -> dict[str, Any] | None:
    """The ``summary.json`` of a finished screening folder, or None if there is none."""
    path = Path(out_dir) / SUMMARY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(summary: dict[str, Any], flagged: pd.DataFrame) -> str:
    """A self-contained HTML page; every value from the data or the summary is escaped."""
    model, calibration, drift = summary["model"], summary["calibration"], summary.get("drift") or {}
    facts = {
        "input": summary["input"]["path"], "sha256": summary["input"]["sha256"],
        "rows in": summary["rows_in"], "rows scored": summary["rows_scored"],
        "rows quarantined": summary["rows_quarantined"], "rows flagged": summary["rows_flagged"],
        "flag rate": f"{summary['flag_rate']:.2%}",
        "model": f"{model['name']} v{model['version']}" + (f" (@{model['alias']})" if model.get("alias") else ""),
        "calibration": (f"{calibration['strategy']} at level {calibration['level']}, "
                        f"threshold {_text(calibration['threshold']) or 'none (nothing flagged)'}"),
        "score drift (KS)": "" if drift.get("ks_statistic") is None else f"{drift['ks_statistic']:.3f}",
        "finished": summary["finished_at"],
    }
    facts_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_text(v))}</td></tr>"
                         for k, v in facts.items())
    shown = flagged.head(REPORT_ROWS)
    note = f"<p>Showing {len(shown)} of {len(flagged)}; all are in {FLAGGED}.</p>" if len(flagged) > len(shown) else ""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>maskae screening</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}</style></head><body>"
        f"<h1>Screening of {html.escape(Path(summary['input']['path']).name)}</h1>"
        f"<table>{facts_html}</table><h2>Flagged records</h2>{note}{_table(shown)}</body></html>"
    )


def write_screening_folder(out_dir: Path, *, scores: pd.DataFrame, flagged: pd.DataFrame,
                           quarantined: pd.DataFrame, summary: dict[str, Any]) -> Path:
    """Write the five files into a temporary sibling folder, then rename it to ``out_dir``.

    ``out_dir`` must not exist, or be an empty folder. On any error the temporary folder is
    removed and nothing appears at ``out_dir``. ``summary`` must be JSON-serialisable.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        scores.to_parquet(tmp / SCORES, index=False)
        flagged.to_csv(tmp / FLAGGED, index=False)
        quarantined.to_csv(tmp / QUARANTINE, index=False)
        (tmp / REPORT).write_text(render_report(summary, flagged), encoding="utf-8")
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
        os.replace(tmp, out_dir)  # atomic on one file system; refuses a non-empty out_dir
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
