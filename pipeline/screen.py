"""Screening step: score one batch file with a registered model, write the screening output folder.

``screen`` needs nothing but the data and a model reference: the model carries its detector,
calibration and the training data's schema. The batch's columns are checked against that schema
before anything is scored (:class:`~pipeline.ingest.SchemaError` names what is missing); the file is
then streamed in chunks of ``batch_rows``: each chunk is validated (ids repeated across chunks are
caught), its clean rows scored through the MLflow pyfunc, the other rows quarantined with a reason,
and both written to the output folder at once. Memory depends on the chunk size, not the file: the
first pass keeps running counts (p-value counts for the batch strategies, the drift statistic, a
histogram) and 8 bytes per id for the duplicate check. The calibration is then applied to the whole
file (:class:`~maskae.calibration.ChunkedBatch`), so for ``fdr`` and ``budget`` the flags do not
depend on the chunk size; a second pass over the file explains the flagged rows only.

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
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import betabinom, binom
from tqdm.auto import tqdm

from maskae.calibration import Calibration, ChunkedBatch
from maskae.table_encoding import UnknownCategoryWarning
from pipeline import tracking
from pipeline.config import IMAGES
from pipeline.ingest import FileChangedError, Schema, SchemaError, SeenIds, iter_batches, validate
from pipeline.report import REPORT_ROWS, render_report
from pipeline.report_plots import ScoreHistogram, histogram_edges
from pipeline.score_drift import ScoreDrift
from pipeline.scoring import ScoringModel, feature_frame, load_scoring_model, wrong_kind
from pipeline.screening_output import (INPUT_PREFIX, ROW, WRITTEN_COLUMNS, ScreeningFolder, evidence_summary,
                                       read_summary, reasons_text)
from pipeline.sources import fingerprint, source_files

UNSEEN_KEPT = 10_000  # distinct unseen values counted per column (a column of new ids has millions)
UNSEEN_NAMED = 10  # the most frequent unseen values a summary names per column
BATCH_ROWS = 50_000  # rows read and scored at a time: peak memory follows this, not the file size
FDR_WARNING = "calibration set too small for FDR"  # said once for the whole file, not per chunk
ChunkScorer = Callable[[Iterable[pd.DataFrame]], Iterator[np.ndarray]]


@dataclass(frozen=True)
class ScreenResult:
    """The screening folder, its ``summary.json`` content, and whether an earlier run was reused."""

    out_dir: Path
    summary: dict[str, Any]
    reused: bool


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None  # JSON has no infinity: None = nothing flagged


def in_process_scorer(model: ScoringModel) -> ChunkScorer:
    """Score each feature chunk in this process (the default; see :mod:`flows.screening` for Dask)."""
    def scores(frames: Iterable[pd.DataFrame]) -> Iterator[np.ndarray]:
        for frame in frames:
            with warnings.catch_warnings():  # the pyfunc flags each chunk alone: only its scores are used
                warnings.filterwarnings("ignore", message=FDR_WARNING)
                warnings.simplefilter("ignore", UnknownCategoryWarning)  # counted for the whole file instead
                yield model.score(frame)["anomaly_score"].to_numpy()
    return scores


def _explain_flagged(path: Path, model: ScoringModel, schema: Schema, hits: pd.DataFrame, batch_rows: int,
                     top_reasons: int, folder: ScreeningFolder) -> list[str]:
    """Second pass: explain the rows of ``hits`` (row number, score, p-value) chunk by chunk into the
    folder; returns the columns of ``flagged.csv``. Rows are found by row number: they were clean in
    the first pass, so no duplicate check is needed."""
    columns = [schema.id_column, "anomaly_score", "p_value", "reasons", *schema.feature_columns]
    wanted = hits.set_index(ROW)[["anomaly_score", "p_value"]]
    categories = [c.name for c in model.detector.encoder_.categorical_]
    routine_new = [c.name for c in model.detector.encoder_.categorical_ if c.identifier_like]
    if len(wanted):
        with warnings.catch_warnings():  # the first pass has said it all
            warnings.simplefilter("ignore")
            # short_lines=False: the rows explained were scored in the first pass, so none is a short line
            for chunk in _chunks(path, schema, batch_rows, short_lines=False):
                rows = chunk[chunk.index.isin(wanted.index)]
                if len(rows):
                    clean = validate(rows, schema).clean
                    features, detector = feature_frame(clean, schema), model.detector
                    why = detector.explain(features)
                    lead = evidence_summary(detector.evidence_scores(features), detector.evidence)
                    reasons = reasons_text(why, len(clean), lead, top_k=top_reasons,
                                           far_out_values="tails" in detector.evidence, routine_new=routine_new,
                                           categories=categories)
                    explained = clean.assign(reasons=reasons, **wanted.loc[clean.index])
                    columns += [c for c in explained.columns if c not in columns]
                    folder.add_flagged(explained[columns].assign(**{ROW: clean.index}))
    return columns


def _chunks(path: Path, schema: Schema, batch_rows: int, short_lines: bool = True) -> Iterator[pd.DataFrame]:
    """The batch's chunks, a column named as one the outputs write (``WRITTEN_COLUMNS``) renamed
    with ``INPUT_PREFIX``, so that the outputs keep both (a frame's ``attrs`` go with it)."""
    chunks = iter_batches(path, batch_rows=batch_rows, text_columns=schema.text_columns, short_lines=short_lines)
    for i, chunk in enumerate(chunks):
        renamed = {c: INPUT_PREFIX + c for c in chunk.columns if c in WRITTEN_COLUMNS}
        if renamed and i == 0:
            warnings.warn(f"{path.name}: column(s) {list(renamed)} are named as columns maskae writes beside each "
                          f"record: kept as {list(renamed.values())} in flagged.csv and quarantine.csv", stacklevel=2)
        yield chunk.rename(columns=renamed)


def _same_screening(summary: dict[str, Any], sha256: str, model: tracking.ResolvedModel) -> bool:
    return (summary.get("input", {}).get("sha256") == sha256 and summary.get("model", {}).get("name") == model.name
            and str(summary.get("model", {}).get("version")) == model.version)


def screen(data_path: str | Path, model_ref: str | tracking.ResolvedModel, out_dir: Path, *, id_column: str | None = None,
           batch_rows: int = BATCH_ROWS, top_reasons: int = 3, scorer: Callable[[ScoringModel], ChunkScorer] | None = None
           ) -> ScreenResult:
    """Screen one CSV or Parquet file and write the screening folder ``out_dir``.

    Parameters
    ----------
    data_path : str or Path
        The batch file.
    model_ref : str
        ``NAME`` (= ``NAME@champion``), ``NAME@ALIAS`` or ``NAME/VERSION``, optionally ``models:/``-prefixed;
        or a version resolved already.
    out_dir : Path
        The screening folder; must not exist yet (or be empty), unless it holds this very screening.
    id_column : str or None, default=None
        The batch's id column, when it is not named as in training.
    batch_rows : int, default=BATCH_ROWS (50,000)
        Rows read, validated and scored at a time.
    top_reasons : int, default=3
        Features named in each flagged record's ``reasons``: this many by share of the mismatch,
        and this many values far out in their own columns, besides category values never seen in
        training (:func:`reasons_text`).
    scorer : callable or None, default=None
        ``scorer(model)`` gives the function that turns feature chunks into their anomaly scores, in
        order: :func:`in_process_scorer` when None; :mod:`flows.screening` passes one that fans the
        chunks out over Dask workers.

    Raises
    ------
    IngestError
        The file cannot be read, or changed while it was screened (``FileChangedError``).
    SchemaError
        The file lacks a column the model needs; raised before scoring, no folder is written.
    ModelNotFoundError, FileExistsError
        Unknown model or alias; ``out_dir`` holds something else.
    """
    started, data_path, out_dir = now_utc(), Path(data_path), Path(out_dir)
    iter_batches(data_path, batch_rows=batch_rows)  # fails now on a missing, empty or unnamed-format file
    resolved, source = tracking.resolve_model(model_ref), fingerprint([data_path])
    previous = earlier_screening(out_dir, source["sha256"], resolved, data_path.name)
    if previous is not None:
        return ScreenResult(out_dir, previous, reused=True)
    model = load_scoring_model(resolved)
    if id_column in model.schema.features:  # its values would be read as ids: repeats quarantined as duplicates
        raise SchemaError(f"id column {id_column!r} is a feature of {resolved.name} version {resolved.version}; "
                          f"name the batch's record id column (the model was trained with {model.schema.id_column!r})")
    schema = model.schema if id_column is None else replace(model.schema, id_column=id_column)
    with ScreeningFolder(out_dir, schema.id_column) as folder:
        try:
            tally = _score_file(data_path, model, schema, batch_rows, folder, (scorer or in_process_scorer)(model))
        except SchemaError as error:  # said of the file, which a sweep's log needs
            raise SchemaError(f"{data_path.name}: {error}") from error
        rule = tally.batch.finish(
            lambda: (c["anomaly_score"].to_numpy() for c in folder.unflagged_scores(["anomaly_score"])))
        hits = folder.flag_scores(rule.flags)
        columns = _explain_flagged(data_path, model, schema, hits, batch_rows, top_reasons, folder)
        top = folder.write_flagged(hits, columns, REPORT_ROWS)
        if fingerprint([data_path])["sha256"] != source["sha256"]:
            raise FileChangedError(f"{str(data_path)!r} changed while it was screened; screen it again once it is complete")
        unseen = tally.unseen.summary(model, tally.batch.rows, data_path.name)
        publish_screening(folder, tally, resolved, model.calibration, rule.threshold, hits, top, started=started,
                          source={"path": str(data_path.resolve()), **{k: source[k] for k in ("sha256", "bytes")},
                                  "columns": tally.columns},
                          unseen=unseen, params={"top_reasons": top_reasons},
                          outside=tally.outside.summary(model, tally.observed))
    return ScreenResult(out_dir, read_summary(out_dir), reused=False)


def check_columns(data: str | Path, model_ref: str, id_column: str | None = None) -> None:
    """Refuse data of the other kind than the model reads (a folder of images is read as images),
    and a table that lacks a column the model reads, from the files' headers and the schema logged
    beside the model, without loading it: the command line says so at once, where the flow would
    say it after Prefect's start (about 25 s). Versions logged without a schema pass; so does
    anything else that ``screen`` checks itself.

    Raises
    ------
    SchemaError
        Naming the model's kind of data, or the file and the columns it lacks.
    """
    resolved = tracking.resolve_model(model_ref)
    images = Path(data).is_dir()
    if (tracking.data_kind(resolved) == IMAGES) != images:
        raise wrong_kind(f"model {resolved.name!r} version {resolved.version}", trained_on_images=not images)
    logged = None if images else tracking.logged_schema(resolved)
    if logged is None:
        return
    schema = trained = Schema.from_dict(logged)
    if id_column is not None:
        schema = replace(schema, id_column=id_column)
    for file in source_files(data):
        head = next(iter_batches(file, batch_rows=1, short_lines=False)).head(0)
        try:
            validate(head, schema, warn_extra=False)
        except SchemaError as error:
            told = (f" (--id-col {id_column!r} was given; the model's id column is {trained.id_column!r})"
                    if id_column not in (None, trained.id_column) and id_column not in head.columns else "")
            raise SchemaError(f"{Path(file).name}: {error}{told}") from error


def check_out_free(out_dir: Path) -> None:
    """Refuse an output path no screening can be written to, a file or a folder of files that are
    not a screening's, from the path alone (the command line does so before Prefect starts)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{str(out_dir)!r} is a file, not a folder: choose a new output folder")
    if out_dir.is_dir() and read_summary(out_dir) is None and any(out_dir.iterdir()):
        raise FileExistsError(f"{str(out_dir)!r} already holds files that are not a screening's: choose a new folder")


def earlier_screening(out_dir: Path, sha256: str, model: tracking.ResolvedModel, name: str) -> dict[str, Any] | None:
    """The summary of ``out_dir`` if it already holds this screening (same input bytes, same model
    version), to be returned as it is; None if it is free. FileExistsError if it holds anything else."""
    check_out_free(out_dir)
    previous = read_summary(out_dir)
    if previous is None:
        return None
    if _same_screening(previous, sha256, model):
        return previous
    raise FileExistsError(f"{str(out_dir)!r} already holds {_held(previous, name, model)}: choose a new folder")


def _held(previous: dict[str, Any], name: str, model: tracking.ResolvedModel) -> str:
    """What a taken screening folder holds, against this screening of ``name`` by ``model``."""
    this = f"this screening of {name} by {model.name} v{model.version}"
    held = (Path(previous.get("input", {}).get("path", "?")).name, previous.get("model", {}).get("name"),
            str(previous.get("model", {}).get("version")))
    if held == (name, model.name, model.version):
        return f"a screening of {name} by {model.name} v{model.version} from before its input changed"
    return f"the screening of {held[0]} by {held[1]} v{held[2]}, not {this}"


def publish_screening(folder: ScreeningFolder, tally: Tally, model: tracking.ResolvedModel, cal: Calibration,
                      threshold: float, hits: pd.DataFrame, top: pd.DataFrame, *, started: str,
                      source: dict[str, Any], unseen: dict[str, dict], params: dict[str, Any],
                      images: dict[str, dict[str, Path]] | None = None, outside: dict[str, dict] | None = None) -> None:
    """The last step of a screening, of a table or of images: ``summary.json``, the MLflow run,
    ``report.html`` (``top``: its first flagged records; ``images``: their PNG files inside the
    folder, by id, listed in the summary's ``record_images``), and the folder
    renamed into place. ``source``: the summary's ``input`` (path, sha256, bytes, ...); ``params``:
    the step's own settings, logged to the MLflow run."""
    if cal.flags_nothing_because is not None:  # training warned once; each screening says it again
        warnings.warn(f"{model.name} v{model.version} flags nothing: {cal.flags_nothing_because}; retrain with a "
                      f"larger calibration.level or more training data", UserWarning, stacklevel=3)
    rows = tally.batch.rows
    summary = {
        "rows_in": rows + tally.rows_quarantined, "rows_scored": rows, "rows_quarantined": tally.rows_quarantined,
        "rows_flagged": len(hits), "flag_rate": len(hits) / rows if rows else 0.0,
        "id_column": folder.id_column,
        "model": {"name": model.name, "version": model.version, "alias": model.alias, "uri": model.uri},
        "calibration": {"strategy": cal.strategy, "level": cal.level, "objective": cal.objective,
                        "threshold": _finite(threshold),
                        "threshold_kind": "fixed" if cal.strategy in ("fpr", "labels") else "whole file"},
        "drift": tally.drift.summary(),
        "unseen_categories": unseen,
        "outside_training_range": outside or {},
        # empty cells of scored rows, per feature column: scored as hidden cells, as in training
        "missing_values": {c: rows - n for c, n in sorted(tally.observed.items()) if n < rows},
        "score_histogram": tally.histogram.to_dict(),
        "input": source,
        "started_at": started,
    }
    summary["warnings"] = _batch_warnings(summary, tally, Path(source["path"]).name)
    if images is not None:
        summary["record_images"] = {record: {view: file.relative_to(folder.tmp).as_posix() for view, file in views.items()}
                                    for record, views in images.items()}
    metrics = {k: summary[k] for k in ("rows_in", "rows_scored", "rows_quarantined", "rows_flagged", "flag_rate")}
    metrics["unseen_category_values"] = sum(u["values"] for u in unseen.values())
    metrics["missing_values"] = sum(summary["missing_values"].values())
    metrics |= {f"drift_{k}": v for k, v in summary["drift"].items() if v is not None}
    summary["mlflow_run_id"] = tracking.log_run(
        model, "screening", metrics=metrics,
        params={"input.path": source["path"], "out_dir": str(folder.out_dir.resolve()), **params},
        tags={"input.sha256": source["sha256"], "calibration.strategy": cal.strategy})
    summary["finished_at"] = now_utc()
    try:
        report = render_report(summary, top, folder.quarantine_head, tally.histogram.counts_and_edges(),
                               cal.calibration_scores, images=images)
        folder.publish(summary=summary, report=report)
    except BaseException as error:  # the run was logged as finished: no folder means no screening
        try:
            tracking.mark_failed(summary["mlflow_run_id"], error)
        except Exception as marking:  # noqa: BLE001 (the publishing error is the one to raise)
            warnings.warn(f"could not mark MLflow run {summary['mlflow_run_id']} failed: {marking}", stacklevel=3)
        raise


class ScreeningWarning(UserWarning):
    """A batch that screened, but not as a night's batch should: no row at all, most rows
    quarantined, a feature column empty throughout, or far more flags than the calibration allows for."""


class NothingScoredError(ValueError):
    """Every row of a batch was quarantined: the screening folder is written (its quarantine.csv
    says why), but the run fails, as nothing was screened."""


FLAG_RATE_ALARM = 10  # flags above this many times an fpr level's rate: the batch as a whole differs
NOT_CHANCE_P = 1e-6  # a count this unlikely by chance: the batch as a whole differs, said as a warning


def _batch_warnings(summary: dict[str, Any], tally: Tally, name: str) -> list[str]:
    """What an operator must hear of a batch that screened without error, each said as a
    :class:`ScreeningWarning` too: they would otherwise pass as an ordinary night."""
    said, rows_in, rows = [], summary["rows_in"], summary["rows_scored"]
    images = "image_size" in summary["input"]  # a folder: its records are files, those scored images
    (files, records), check = (("files", "images"), "how its images were taken (camera, lighting, framing)") \
        if images else (("rows", "rows"), "its columns and units")
    if not rows_in:  # a night's export with no record is an upstream failure far more often than a quiet day
        said.append(f"it holds no {files[:-1]}: nothing was screened; check the export")
    if rows_in and summary["rows_quarantined"] * 2 > rows_in:
        said.append(f"{summary['rows_quarantined']:,} of its {rows_in:,} {files} "
                    f"({summary['rows_quarantined'] / rows_in:.0%}) were quarantined: see quarantine.csv for why")
    if empty := sorted(c for c, n in tally.observed.items() if n == 0) if rows else []:
        said.append(f"feature column(s) {empty} are empty in every one of its {rows:,} scored rows, so the model "
                    f"scored without them; check the export")
    for column, o in summary["outside_training_range"].items():
        for side, bound, words in (("below", "smallest", "below the smallest"), ("above", "largest", "above the largest")):
            if o[f"{side}_beyond_chance"]:
                said.append(f"{o[side]:,} of its {column!r} values lie {words} value in training ({o[bound]:,.6g}),"
                            f" more than chance allows ({o['training_values']:,} training values): a sign or a unit the "
                            f"model never saw (refunds? an export in other units?); check the export")
    cal = summary["calibration"]
    if (rows and cal["strategy"] == "fpr" and summary["flag_rate"] > FLAG_RATE_ALARM * cal["level"]
            and binom.sf(summary["rows_flagged"] - 1, rows, cal["level"]) < NOT_CHANCE_P):  # not a few flags by chance
        said.append(f"{summary['rows_flagged']:,} of its {rows:,} scored {records} ({summary['flag_rate']:.1%}) were "
                    f"flagged, where about {cal['level']:.1%} of {records} like the training data's would be (fpr "
                    f"{cal['level']}): the batch as a whole differs from the training data"
                    f"{_drift_text(summary['drift'])}; check {check} before reviewing the flags")
    for text in said:
        warnings.warn(f"{name}: {text}", ScreeningWarning, stacklevel=4)
    return said


def _drift_text(drift: dict[str, Any]) -> str:
    ks = drift.get("ks_statistic")
    return "" if ks is None else f" (score drift: KS statistic {ks:.2f})"


@dataclass
class UnseenValues:
    """Per categorical column, the values a file holds that the model never learnt: their exact
    number, and how often each came. Memory stays bounded on a column of new ids: past
    ``UNSEEN_KEPT`` distinct values, only the most frequent tenth is kept, and the column's counts
    become lower bounds (``counts_exact`` false)."""

    totals: Counter = field(default_factory=Counter)
    values: dict[str, Counter] = field(default_factory=dict)
    pruned: set[str] = field(default_factory=set)

    def add(self, found: dict[str, Counter]) -> None:
        for name, counts in found.items():
            self.totals[name] += sum(counts.values())
            kept = self.values.setdefault(name, Counter())
            kept.update(counts)
            if len(kept) > UNSEEN_KEPT:
                self.values[name] = Counter(dict(kept.most_common(UNSEEN_KEPT // 10)))
                self.pruned.add(name)

    def summary(self, model: ScoringModel, rows_scored: int, file_name: str) -> dict[str, dict]:
        """Per column with unseen values (new merchants, a new country): how many, their share of the
        scored rows, whether they read as "unknown" or as "other" (rarer than the column's
        ``max_categories`` kept values), and the ``UNSEEN_NAMED`` most frequent. Warns once per
        column for the whole file, where the scorer kept quiet chunk by chunk."""
        columns, found = {c.name: c for c in model.detector.encoder_.categorical_}, {}
        for name, n in sorted(self.totals.items()):
            common = dict(self.values[name].most_common(UNSEEN_NAMED))
            at_least = "at least " if name in self.pruned else ""
            examples = ", ".join(f"{value!r} ({at_least}{count:,})" for value, count in list(common.items())[:3])
            warnings.warn(f"{file_name}: {columns[name].unknown_message(n)} (most frequent: {examples})",
                          UnknownCategoryWarning, stacklevel=3)
            found[name] = {"values": n, "share": n / rows_scored, "reads_as": columns[name].reads_as,
                           "most_common": common, "counts_exact": name not in self.pruned}
        return found


@dataclass
class OutsideRange:
    """Per numeric feature column, the scored values below the smallest value it had in training
    and above the largest: a sign never seen (refunds, a sign flipped by an export) or other units
    show here, where a few such values would hide among the flags."""

    below: Counter = field(default_factory=Counter)
    above: Counter = field(default_factory=Counter)

    def add(self, sides: pd.DataFrame) -> None:
        self.below.update((sides == -1).sum().to_dict())
        self.above.update((sides == 1).sum().to_dict())

    def summary(self, model: ScoringModel, observed: Counter) -> dict[str, dict]:
        """Per column with such values: how many on each side, the training range, and whether
        more lie beyond it than chance allows. The share of a column's values below the smallest of
        ``n`` training values is itself random, Beta(1, n), and the same for every value of the
        batch: the count of ``N`` values below it is beta-binomial (1, n), not binomial, whose
        thinner tail would warn on ordinary nights of a large batch (likewise above the largest)."""
        found = {}
        for name, (smallest, largest, n) in model.detector.training_range().items():
            below, above = self.below[name], self.above[name]
            if below or above:
                beyond = [betabinom.sf(k - 1, observed[name], 1, n) < NOT_CHANCE_P for k in (below, above)]
                found[name] = {"below": below, "above": above, "smallest": smallest, "largest": largest,
                               "training_values": n, "below_beyond_chance": bool(below and beyond[0]),
                               "above_beyond_chance": bool(above and beyond[1])}
        return found


@dataclass
class Tally:
    """What the first pass keeps of the file: running counts, never rows."""

    batch: ChunkedBatch
    drift: ScoreDrift
    histogram: ScoreHistogram
    rows_quarantined: int = 0
    columns: list[str] | None = None
    unseen: UnseenValues = field(default_factory=UnseenValues)  # values read as "unknown" or "other"
    observed: Counter = field(default_factory=Counter)  # feature column -> cells with a value, in scored rows
    outside: OutsideRange = field(default_factory=OutsideRange)  # numbers beyond their training range

    def add(self, folder: ScreeningFolder, ids: pd.Series, rows: np.ndarray, scores: np.ndarray) -> None:
        """Count one chunk's scores and write them (``rows``: their row numbers) to ``folder``."""
        p_value = self.batch.add(scores)
        self.drift.add(scores)
        self.histogram.add(scores)
        folder.add_scores(ids, rows, scores, p_value)


def new_tally(cal: Calibration) -> Tally:
    """Empty running counts for a batch scored against ``cal``."""
    return Tally(ChunkedBatch(cal), ScoreDrift(cal.calibration_scores),
                  ScoreHistogram(histogram_edges(cal.calibration_scores, cal.threshold)))


def _score_file(path: Path, model: ScoringModel, schema: Schema, batch_rows: int, folder: ScreeningFolder,
                scorer: ChunkScorer) -> Tally:
    """First pass: validate each chunk (repeated ids across chunks caught), quarantine what cannot be
    scored, score the rest through ``scorer`` (in order) and write the scores."""
    tally, seen = new_tally(model.calibration), SeenIds()
    pending: deque[pd.DataFrame] = deque()  # clean chunks whose scores are still being computed
    bar = tqdm(desc=f"screening {path.name}", unit="rows", disable=not sys.stderr.isatty(), leave=False)

    def features() -> Iterator[pd.DataFrame]:
        for chunk in _chunks(path, schema, batch_rows):
            checked = validate(chunk, schema, seen_ids=seen)  # SchemaError here, before the first score
            tally.columns = tally.columns or list(chunk.columns)
            folder.add_quarantined(checked.quarantined)
            tally.rows_quarantined += len(checked.quarantined)
            pending.append(checked.clean)
            features = feature_frame(checked.clean, schema)
            tally.unseen.add(model.detector.encoder_.unseen_values(features))
            tally.observed.update(features.notna().sum().to_dict())
            tally.outside.add(model.detector.training_range_sides(features))
            yield features

    for scores in scorer(features()):
        clean = pending.popleft()
        tally.add(folder, clean[schema.id_column], clean.index.to_numpy(), scores)
        bar.update(len(clean))
    bar.close()
    return tally
