"""The analyst's HTML report of one screening run: one self-contained file that opens from disk.

Analysts read it every morning, so it says at a glance what was screened with which model, how the
flag rate compares with what the calibration promised, and for each flagged record what was odd
("amount 4,522.93 where ~799.16 was expected"). It is rendered with Jinja2 with autoescaping on,
so every value from the data shows as text (a merchant named ``<script>...`` runs nothing); plots
and images are embedded as ``data:`` URIs, and a Content-Security-Policy that allows no network
request and no script but the page's own (by its hash) guards against anything that slips through.

:func:`render_report` is a pure function of plain data. It never needs the batch's whole score
vector, which a streamed screening does not hold: it takes a histogram (see
:mod:`pipeline.report_plots`).

Example
-------
>>> parse_reasons("amount=4522.93 (expected ~799.16, 47% of the mismatch, as far out as 1 in 2,500 training "
...               "values); country=IT (expected ~DE, 17% of the mismatch)", ["amount", "country"])
... # doctest: +NORMALIZE_WHITESPACE
[{'feature': 'amount', 'observed': '4,522.93', 'expected': '799.16', 'doubted': False, 'share': '47%', 'width': 47,
  'tail': 'as far out as 1 in 2,500 training values'},
 {'feature': 'country', 'observed': 'IT', 'expected': 'DE', 'doubted': False, 'share': '17%', 'width': 17,
  'tail': None}]
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from pipeline.report_plots import count_scores, drift_plot, histogram_plot, png_data_uri

TEMPLATES = Path(__file__).with_name("templates")
REPORT_ROWS = 500  # flagged records rendered; flagged.csv holds them all
QUARANTINE_ROWS = 200
DRIFT_MIN_ROWS = 1000  # below this a batch's score distribution is too noisy to read as drift
DRIFT_CLEAR_P = 1e-6  # a smaller batch whose KS test says this is drifted all the same (an export in cents)
IMAGE_KINDS = ("original", "reconstruction", "overlay")
# An analyst's verdict, (a flag that was right, one that was not): on card transactions, and on images.
TABLE_OUTCOMES, IMAGE_OUTCOMES = ("fraud", "legitimate"), ("defect", "good")
# What a reason says of a category value outside those the model learnt (explain's ``unseen``).
UNSEEN_WORDS = {"unknown": "never seen in training", "other": "not among the column's kept training values"}
# "of the mismatch" is optional: runs screened before it was written are reviewed with this too
_REASON = re.compile(r"(?P<feature>.+?)=(?P<observed>.*) \(expected ~(?P<expected>.*?)(?P<doubted> but doubted)?, "
                     r"(?P<share>\d+)%(?: of the mismatch)?"
                     r"(?:, (?P<tail>as (?:far out|rare) as 1 in [\d,]+ training values|"
                     + "".join(f"{re.escape(words)}|" for words in UNSEEN_WORDS.values()) +
                     r"(?P<side>(?:above the largest|below "
                     r"the smallest) training value, |outside the training values, which end at )(?P<end>.*)))?\)",
                     re.DOTALL)


EXACT_INTEGERS = 2**53  # float64 holds every whole number up to here


def shown_number(value: Any, thousands: bool = True) -> str:
    """A value for people: thousands separators (unless ``thousands=False``, as the reasons in
    flagged.csv have it), 2 decimals (whole numbers without; a float beyond the whole numbers it
    holds exactly, 6 significant digits, not 309 digits for 1e308), missing as empty."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    sep = "," if thousands else ""
    if isinstance(value, (float, np.floating)) and abs(value) >= EXACT_INTEGERS:
        return f"{value:{sep}.6g}"
    if float(value).is_integer():
        return f"{int(value):{sep}}"
    return f"{value:{sep}.2f}" if abs(value) >= 0.01 else f"{value:.3g}"


def _as_written(value: Any) -> str:
    """A value as ``flagged.csv`` spells it: a whole float as an integer, a missing one empty."""
    if isinstance(value, float) and (math.isnan(value) or value.is_integer()):
        return "" if math.isnan(value) else str(int(value))
    return str(value)


def _number_text(text: str) -> str:
    """``shown_number`` of a number written as text (a reason's observed value), other text as it is."""
    try:
        return shown_number(float(text))
    except ValueError:
        return text


def parse_reasons(text: Any, features: Sequence[str]) -> list[dict[str, Any]]:
    """The ``reasons`` cell of ``flagged.csv`` as one dict per feature (``feature``, ``observed``,
    ``expected``, ``share``, ``width`` = share in percent, ``tail`` = how far out the value lies in
    its column, ``"as far out as 1 in 2,500 training values"`` (a category's ``"as rare as ..."``),
    ``"above the largest training value,
    3,573.32"``, ``"never seen in training"``, ``"not among the column's kept training values"``, or
    None), splitting only before a known feature
    name, so a value that contains ``"; "`` stays whole. A part that does not parse comes back as
    ``{"text": part}``: shown as written rather than lost."""
    if not isinstance(text, str) or not text.strip():
        return []
    names = "|".join(re.escape(f) for f in sorted(features, key=len, reverse=True))
    parts = re.split(f"; (?=(?:{names})=)", text) if names else [text]
    reasons = []
    for part in parts:
        match = _REASON.fullmatch(part)
        if match is None:
            reasons.append({"text": part})
            continue
        reasons.append({"feature": match["feature"], "observed": _number_text(match["observed"]),
                        "expected": _number_text(match["expected"]), "doubted": bool(match["doubted"]),
                        "share": f"{match['share']}%", "width": int(match["share"]),
                        "tail": match["side"] + _number_text(match["end"]) if match["side"] else match["tail"]})
    return reasons


def expected_flag_rate(calibration: Mapping[str, Any], rows_scored: int) -> str:
    """What the calibration strategy lets an analyst expect of the flag rate, in words."""
    strategy, level = calibration.get("strategy"), calibration.get("level")
    if strategy == "fpr":
        return (f"expected: at most {level:.2%} of normal records (the false-positive rate the threshold "
                f"guarantees), plus whatever share of the batch is truly anomalous")
    if strategy == "budget":
        if level is not None and level < 1:
            return f"expected: the budget, {level:.2%} of the batch (rounded up)"
        share = f" = {level / rows_scored:.2%} of this batch" if rows_scored else ""
        return f"expected: the budget, {shown_number(level)} records{share}"
    if strategy == "fdr":
        return (f"no fixed rate: the flags are chosen per batch so that at most {level:.0%} of the flagged "
                f"records are expected to be normal (false discovery rate)")
    target = f"{calibration.get('objective')} {level}" if level is not None else "the best F1"
    return f"no fixed rate: the threshold was chosen on labelled validation data for {target}"


def _facts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    model, cal = summary["model"], summary["calibration"]
    threshold = cal.get("threshold")
    return [
        ("batch", summary["input"]["path"]), ("sha256", summary["input"]["sha256"]),
        ("model", f"{model['name']} v{model['version']}" + (f" (@{model['alias']})" if model.get("alias") else "")
         + f" — {model.get('uri', '')}"),
        ("threshold strategy", f"{cal['strategy']} at level {cal['level']}"
         + (f" ({cal['objective']})" if cal.get("objective") else "")),
        ("threshold", f"{threshold:.4g} ({cal.get('threshold_kind', '')})" if threshold is not None
         else "none (nothing flagged)"),
        ("rows in", shown_number(summary["rows_in"])), ("rows scored", shown_number(summary["rows_scored"])),
        ("rows quarantined", shown_number(summary["rows_quarantined"])), ("rows flagged", shown_number(summary["rows_flagged"])),
        *_unseen_fact(summary.get("unseen_categories") or {}),
        *_outside_fact(summary.get("outside_training_range") or {}),
        *_missing_fact(summary.get("missing_values") or {}, summary["rows_scored"]),
        ("screened", f"{summary.get('started_at', '')} to {summary.get('finished_at', '')}"),
        ("MLflow run", summary.get("mlflow_run_id") or ""),
    ]


def _missing_fact(missing: Mapping[str, int], rows_scored: int) -> list[tuple[str, str]]:
    """Empty cells of scored rows (an amount left out): scored as hidden cells, which an analyst should know."""
    if not missing:
        return []
    return [("values missing", "; ".join(f"{name}: {shown_number(n)} ({n / rows_scored:.2%} of rows scored)"
                                         for name, n in missing.items()) + "; scored as hidden cells, from the others")]


def _outside_fact(outside: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Numbers beyond their column's training range (a negative amount where training had none)."""
    if not outside:
        return []
    return [("values outside the training range", "; ".join(
        f"{name}: " + ", ".join(f"{shown_number(o[side])} {side} the {bound} training value ({shown_number(o[bound])})"
                                for side, bound in (("below", "smallest"), ("above", "largest")) if o[side])
        for name, o in outside.items()))]


def _unseen_fact(unseen: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """New values in categorical columns (a new merchant, a new country): scored, but unlike training."""
    if not unseen:
        return []
    return [("values not seen in training", "; ".join(
        f"{name}: {shown_number(u['values'])} ({u['share']:.2%} of rows scored), read as {u['reads_as']}" + (
            ", most frequent " + ", ".join(f"{value} ({'' if u['counts_exact'] else 'at least '}{shown_number(n)})"
                                           for value, n in u["most_common"].items())
            if u.get("most_common") else "")  # runs screened before the values were counted have none
        for name, u in unseen.items()))]


def _drift_line(summary: Mapping[str, Any], shown: bool) -> str:
    drift, scored = summary.get("drift") or {}, summary["rows_scored"]
    if drift.get("ks_statistic") is None:
        return "No scored rows: no drift reading."
    numbers = (f"Kolmogorov–Smirnov statistic {drift['ks_statistic']:.3f} (p = {drift['ks_p_value']:.3g}); "
               f"mean score {drift['score_mean']:.3f} against {drift['calibration_score_mean']:.3f} on calibration.")
    if scored < DRIFT_MIN_ROWS and drift["ks_p_value"] < DRIFT_CLEAR_P:  # few rows, but no chance
        return (f"Only {scored:,} scored rows, too few to plot drift, but they differ from calibration beyond "
                f"chance: {numbers}")
    if scored < DRIFT_MIN_ROWS:
        return f"Only {scored:,} scored rows: too few to read drift (needs {DRIFT_MIN_ROWS:,}). {numbers}"
    return numbers if shown else numbers + " (the calibration scores were not given: no plot)"


def _verdict_index(verdicts: pd.DataFrame | None, id_column: str) -> dict[str, tuple[str, str]]:
    if verdicts is None or verdicts.empty:
        return {}
    notes = verdicts["note"] if "note" in verdicts else pd.Series("", index=verdicts.index)
    return {str(i): (o, "" if pd.isna(n) else str(n))
            for i, o, n in zip(verdicts[id_column], verdicts["outcome"], notes)}


class FlagReview(NamedTuple):
    """How a run's flags fared with the analysts so far."""

    flagged: int  # the run's flagged records
    reviewed: int  # of them, those with a verdict
    anomalous: int  # of those, the ones found to be fraud (on images: defective)
    not_flagged: int  # verdicts on records the run did not flag
    words: tuple[str, str] = TABLE_OUTCOMES  # the run's verdict words

    @property
    def precision(self) -> float | None:
        """Share of the reviewed flags that were right; None before any flag is reviewed."""
        return self.anomalous / self.reviewed if self.reviewed else None


def outcome_words(summary: Mapping[str, Any]) -> tuple[str, str]:
    """A screening run's verdict words: ``TABLE_OUTCOMES``, or ``IMAGE_OUTCOMES`` for a folder of images."""
    return IMAGE_OUTCOMES if "image_size" in summary["input"] else TABLE_OUTCOMES


def flag_review(flagged_ids: Sequence[str], outcomes: Mapping[str, str],
                words: tuple[str, str] = TABLE_OUTCOMES) -> FlagReview:
    """Count the verdicts (record id → one of ``words``) on the flagged records ``flagged_ids``."""
    found = [outcomes[i] for i in flagged_ids if i in outcomes]
    return FlagReview(len(flagged_ids), len(found), found.count(words[0]), len(outcomes) - len(found), words)


def review_line(review: FlagReview) -> str:
    """How a run's flags fared with the analysts, in a sentence (the report's, and the review command's)."""
    line = f"Reviewed {review.reviewed:,} of {review.flagged:,} flagged records"
    if review.reviewed:
        line += (f": {review.anomalous:,} {review.words[0]}, {review.reviewed - review.anomalous:,} {review.words[1]} — "
                 f"precision of the reviewed flags {review.precision:.1%}")
    if review.not_flagged:
        line += (f". {review.not_flagged:,} " + ("verdict is on a record" if review.not_flagged == 1 else
                                                  "verdicts are on records") + " that the run did not flag (kept, "
                 "but not counted here, nor used by promotion on verdicts: the run kept no values for them)")
    return line + "."


def _images(images: Mapping[str, Mapping[str, bytes | str | Path]] | None, record_id: str) -> list[tuple[str, str]]:
    found = (images or {}).get(record_id) or {}
    return [(kind, png_data_uri(found[kind] if isinstance(found[kind], bytes) else Path(found[kind]).read_bytes()))
            for kind in IMAGE_KINDS if kind in found]


def _records(flagged: pd.DataFrame, id_column: str, verdicts: dict[str, tuple[str, str]],
             images: Mapping[str, Mapping[str, bytes | str | Path]] | None,
             p_floor: float | None) -> list[dict[str, Any]]:
    """The flagged records as the page shows them; a p-value at ``p_floor``, the smallest the
    calibration scores can give (a score above them all), is shown as "≤ p"."""
    values = [c for c in flagged.columns if c not in ("anomaly_score", "p_value", "reasons")]
    features = [c for c in values if c != id_column]
    records = []
    for n, row in enumerate(flagged.to_dict("records")):
        record_id = str(row[id_column])
        verdict, note = verdicts.get(record_id, ("", ""))
        records.append({
            "anchor": f"record-{n + 1}", "id": record_id,
            "score": shown_number(row["anomaly_score"]), "score_raw": repr(float(row["anomaly_score"])),
            "p_value": ("≤ " if p_floor is not None and row["p_value"] <= p_floor * (1 + 1e-9) else "")
                       + f"{row['p_value']:.3g}", "p_raw": repr(float(row["p_value"])),
            "reasons": parse_reasons(row.get("reasons"), features), "verdict": verdict, "note": note,
            "cells": [(c, shown_number(row[c])) for c in values], "images": _images(images, record_id),
            # what the text filter searches, a name=value a line: each value as shown, and as
            # flagged.csv spells it, and the verdict
            "search": "\n".join([*(f"{c}={text}" for c in values for text in (shown_number(row[c]), _as_written(row[c]))),
                                  *([f"verdict={verdict}"] if verdict else [])]),
        })
    return records


def _unflagged(scores: pd.DataFrame | None, id_column: str, verdicts: dict[str, tuple[str, str]],
               words: tuple[str, str]) -> list[dict[str, str]]:
    """The reviewed records the run did not flag, as the page lists them: anomalies (a missed
    fraud) first, highest score first."""
    if scores is None or scores.empty:
        return []
    rows = scores.assign(_id=scores[id_column].astype(str)).sort_values("anomaly_score", ascending=False)
    found = [{"id": i, "verdict": verdicts[i][0], "note": verdicts[i][1], "score": shown_number(score),
              "p_value": f"{p:.3g}"} for i, score, p in zip(rows["_id"], rows["anomaly_score"], rows["p_value"])
             if i in verdicts]
    return sorted(found, key=lambda r: r["verdict"] != words[0])  # stable: scores stay in order


def _script() -> tuple[Markup, str]:
    """The page's one script and its CSP source expression (``'sha256-...'`` of its exact text)."""
    script = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return Markup(script), f"'sha256-{digest}'"  # our own file, not data: safe to insert unescaped


def render_report(summary: Mapping[str, Any], flagged: pd.DataFrame, quarantined: pd.DataFrame,
                  score_histogram: tuple[np.ndarray, np.ndarray], calibration_scores: np.ndarray | None = None,
                  *, verdicts: pd.DataFrame | None = None, unflagged: pd.DataFrame | None = None,
                  images: Mapping[str, Mapping[str, bytes | str | Path]] | None = None,
                  max_rows: int = REPORT_ROWS) -> str:
    """The report of one screening run as a self-contained HTML page.

    Parameters
    ----------
    summary : mapping
        The run's ``summary.json`` content (counts, ``model``, ``calibration``, ``drift``, ``input``,
        ``id_column``, times, ``mlflow_run_id``).
    flagged : DataFrame
        ``flagged.csv``, or its first rows (``summary["rows_flagged"]`` counts them all): the id
        column, ``anomaly_score``, ``p_value``, ``reasons`` and the record's values; shown most
        anomalous first, at most ``max_rows`` of them.
    quarantined : DataFrame
        ``quarantine.csv`` (its first ``QUARANTINE_ROWS`` rows will do): the rows as read plus
        ``quarantine_reason``.
    score_histogram : (counts, edges)
        The batch's scores per bin, ``counts`` of shape (bins,) and ``edges`` of shape (bins + 1,),
        e.g. from :func:`histogram_edges` and :func:`count_scores`.
    calibration_scores : ndarray or None, default=None
        The model's calibration scores: drawn beside the batch's and, for a batch of at least
        ``DRIFT_MIN_ROWS`` scored rows, compared with it in the drift plot.
    verdicts : DataFrame or None, default=None
        Analysts' verdicts so far: the id column, ``outcome`` (``fraud`` / ``legitimate``; on images
        ``defect`` / ``good``), ``note``.
        With them the page shows each record's verdict and the precision of the reviewed flags.
    unflagged : DataFrame or None, default=None
        The ``scores.parquet`` rows (id column, ``anomaly_score``, ``p_value``) of verdicts on records
        the run did not flag: listed with their verdicts, a missed fraud first.
    images : mapping or None, default=None
        Record id → {``"original"``, ``"reconstruction"``, ``"overlay"``} → PNG bytes or file path,
        shown side by side in the record's detail.
    max_rows : int, default=REPORT_ROWS
        Most flagged records rendered (the page says how many more ``flagged.csv`` holds).

    Returns
    -------
    str
        The page. Every value from the data or the summary is HTML-escaped.
    """
    id_column = summary["id_column"]
    counts, edges = (np.asarray(a) for a in score_histogram)
    threshold = summary["calibration"].get("threshold")
    calibration_counts = None if calibration_scores is None else count_scores(calibration_scores, edges)
    # conformal p-values stop at 1 / (n + 1) (maskae.calibration): a score above every calibration score
    p_floor = None if calibration_scores is None else 1 / (len(calibration_scores) + 1)
    show_drift = calibration_counts is not None and summary["rows_scored"] >= DRIFT_MIN_ROWS
    ordered = flagged.sort_values("anomaly_score", ascending=False, kind="stable")
    shown = ordered.head(max_rows)
    verdict_of = _verdict_index(verdicts, id_column)
    script, script_hash = _script()
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    return environment.get_template("report.html").render(
        title=Path(summary["input"]["path"]).name,
        csp=(f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src {script_hash}; "
             "base-uri 'none'; form-action 'none'"),
        script=script, facts=_facts(summary), id_column=id_column,
        warnings=summary.get("warnings") or [],  # runs screened before batch warnings have none
        flag_rate_line=(f"Flag rate {summary['flag_rate']:.2%} ({shown_number(summary['rows_flagged'])} of "
                        f"{shown_number(summary['rows_scored'])} scored); "
                        f"{expected_flag_rate(summary['calibration'], summary['rows_scored'])}."),
        review=review_line(flag_review([str(i) for i in ordered[id_column]], {i: o for i, (o, _) in verdict_of.items()},
                                        outcome_words(summary))) if verdict_of else None,
        histogram_png=histogram_plot(counts, edges, threshold, calibration_counts),
        drift_png=drift_plot(counts, edges, calibration_counts) if show_drift else None,
        drift_line=_drift_line(summary, show_drift),
        flagged_line=(f"Most anomalous first. Showing {len(shown):,} of {summary['rows_flagged']:,}; all are in "
                      f"flagged.csv." if summary["rows_flagged"] > len(shown)
                      else f"{len(shown):,} flagged, most anomalous first.")
                     + ("" if p_floor is None else f" A p-value of ≤ {p_floor:.3g} is the smallest the "
                        f"{len(calibration_scores):,} calibration records can give: the score is above them all."),
        records=_records(shown, id_column, verdict_of, images, p_floor),
        threshold_text=shown_number(threshold), unflagged=_unflagged(unflagged, id_column, verdict_of, outcome_words(summary)),
        quarantined_columns=list(quarantined.columns),
        quarantined_rows=[[shown_number(v) for v in row]
                          for row in quarantined.head(QUARANTINE_ROWS).itertuples(index=False)],
        quarantined_line=(f"{summary['rows_quarantined']:,} rows could not be scored"
                          + (f"; showing the first {QUARANTINE_ROWS:,}, all are in quarantine.csv."
                             if summary["rows_quarantined"] > QUARANTINE_ROWS else ".")),
    )
