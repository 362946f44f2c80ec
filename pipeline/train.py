"""Training step: read -> learn the schema -> validate -> split -> fit -> calibrate -> evaluate -> register.

With a label column, records labelled anomalous (confirmed fraud) never train the detector nor
calibrate its threshold as if they were normal: they go, with a random 20 % of the records
labelled normal, to a *validation* split that gives the label metrics (AUROC, AUPRC, precision /
recall / false-positive rate at the calibrated flags), and the run states how many were set aside.
Records with an empty label are unknown and are used like unlabelled data. Without a label column
the data are taken as they are (possibly contaminated). The detector holds out
``calibration_fraction`` of its rows itself; their scores calibrate the threshold and always give
the score distribution. Data with more than ``data.max_rows`` rows are sampled uniformly while they
stream past (:mod:`pipeline.sampling`), and the run says so. With ``calibration.strategy =
"labels"`` the threshold is chosen on one half of the validation split and the label metrics come from the other half (stratified), so a
threshold is never evaluated on the rows it was chosen on.

Everything is logged as one MLflow run (params, metrics, config, data fingerprint, plots, schema)
and the model registered as a new version with alias ``challenger`` (``champion`` if none yet).

Example
-------
>>> # from pipeline.config import load_config
>>> # result = train(load_config("fraud.toml"))
>>> # result.version, result.aliases, result.known_anomalies_set_aside, result.metrics["validation_auprc"]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from maskae import MaskedAutoencoderDetector
from maskae.calibration import Calibration
from maskae.table_encoding import ColumnWarning, identifier_warning, is_numeric_column, near_names_hint
from pipeline import tracking, training_plots
from pipeline.config import CalibrationConfig, DataConfig, PipelineConfig
from pipeline.ingest import (MALFORMED_LINES, NUMBER_MISSING, SHORT_LINES, MalformedLines, Schema, SchemaError,
                             ShortRows, iter_batches, validate)
from pipeline.sampling import reservoir_sample
from pipeline.scoring import anomaly_labels, feature_frame, label_metrics
from pipeline.screening_output import CSV_LINE_END, WRITTEN_COLUMNS, for_csv
from pipeline.sources import fingerprint, source_files

VALIDATION_SHARE = 0.2  # of the records labelled normal, kept out for the label metrics
QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)
SAMPLE_CHUNK = 200_000  # rows read at a time while sampling the training data


@dataclass(frozen=True)
class TrainResult:
    """What a training run registered, and how the data were used (counts are rows)."""

    model_name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    rows_read: int
    rows_quarantined: int
    rows_fit: int  # trained on: the rows given to the detector less its calibration hold-out
    rows_calibration: int
    rows_validation: int  # the label metrics' rows (strategy "labels": the half that did not set the threshold)
    known_anomalies_set_aside: int  # labelled anomalous: validation only, never fit nor calibrate
    metrics: dict[str, float] = field(default_factory=dict)


def _split(clean: pd.DataFrame, label_column: str | None, id_column: str, rng: np.random.Generator):
    """``(fit rows, validation rows, validation labels)``; no validation without labels."""
    if label_column is None:
        return clean, clean.iloc[:0], np.zeros(0, dtype=int)
    y, known = anomaly_labels(clean[label_column], clean[id_column])
    normal = np.flatnonzero(known & (y == 0))
    to_validation = np.zeros(len(clean), dtype=bool)
    to_validation[y == 1] = True
    to_validation[rng.choice(normal, size=int(round(VALIDATION_SHARE * len(normal))), replace=False)] = True
    return clean[~to_validation], clean[to_validation], y[to_validation]


def _calibrate(settings: CalibrationConfig, detector: MaskedAutoencoderDetector, scores: np.ndarray,
               y: np.ndarray, seed: int) -> tuple[Calibration, np.ndarray]:
    """The calibration and the validation positions the label metrics may use."""
    if settings.strategy != "labels":
        return Calibration.fit(detector.calibration_scores_, settings.strategy, settings.level), np.arange(len(y))
    if min(int(y.sum()), int((y == 0).sum())) < 2:
        raise ValueError(f"calibration strategy 'labels' needs at least 2 anomalous and 2 normal labelled records "
                         f"in the validation split, got {int(y.sum())} and {int((y == 0).sum())}: use strategy 'fpr'")
    choose, evaluate = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y, random_state=seed)
    calibration = Calibration.from_labels(scores[choose], y[choose], settings.objective, settings.level)
    return calibration, np.sort(evaluate)


_SHORT = "__maskae_short_line"  # a sampled row's short-line reason, as a column: row numbers change in the sample
# A column of numbers but for this share of text cells (a corrupt export's "abc") is read as numbers,
# its text cells quarantined, as screening reads it: read as categories, one bad amount had turned
# the column into its 256 most frequent values, the rest one "other".
STRAY_TEXT_SHARE = 0.01
_NUMBER_MISSING = {text.lower() for text in NUMBER_MISSING}


@dataclass
class StrayText:
    """Per column read as text, over every chunk of the training files: its values (pandas' spellings
    of a missing number left out, as screening reads a numeric column), those that do not parse as
    numbers, one of them, and whether a number is written with a leading zero (a code, "02134")."""

    given: Counter = field(default_factory=Counter)
    text: Counter = field(default_factory=Counter)
    example: dict[str, str] = field(default_factory=dict)
    coded: set[str] = field(default_factory=set)

    def add(self, chunk: pd.DataFrame, columns: list[str]) -> None:
        for name in columns:
            values = chunk[name].dropna().astype(str).str.strip()
            values = values[~values.str.lower().isin(_NUMBER_MISSING)]
            unparsed = pd.to_numeric(values, errors="coerce").isna().to_numpy()
            self.given[name] += len(values)
            self.text[name] += int(unparsed.sum())
            if unparsed.any():
                self.example.setdefault(name, values[unparsed].iloc[0])
            if values[~unparsed].str.match(r"[-+]?0\d").any():
                self.coded.add(name)

    def numeric(self) -> list[str]:
        """The columns of numbers with at most ``STRAY_TEXT_SHARE`` text cells, each warned of."""
        found = [name for name, n in self.given.items()
                 if 0 < self.text[name] <= STRAY_TEXT_SHARE * n and name not in self.coded]
        for name in found:
            warnings.warn(f"column {name!r} is numeric though {self.text[name]:,} of its {self.given[name]:,} values do "
                          f"not parse as numbers (e.g. {self.example[name]!r}): the rows with text in it are "
                          f"quarantined; if its values are codes, set column_types = {{{name!r} = 'categorical'}}",
                          ColumnWarning, stacklevel=4)
        return found


def _training_rows(files: list[Path], data: DataConfig, seed: int | None) -> tuple[pd.DataFrame, int, list[str]]:
    """All rows of ``files``, or a uniform random sample of ``data.max_rows`` of them when there are
    more (read as a stream, so the files never have to fit in memory); how many rows there were;
    and the columns read as text that are numbers with stray text cells (:class:`StrayText`).

    CSV ids and categories, and the columns the first chunk reads as text, are read as text (an
    empty cell is their only missing value, as in screening). A column that some chunks read as
    numbers and others as text (a chunk of digit-only codes reads "01234" as 1234) is read again as
    text, as screening will. A column of numbers with at most ``STRAY_TEXT_SHARE`` of its cells
    text, counted over every file, is read again as numbers (its text cells are for the schema to
    quarantine), unless a number in it has a leading zero.
    Files of one glob must have the same columns: a column missing from some of them would
    otherwise train as a column missing in those rows. The CSV lines that could not be read, all of
    them, are in the sample's ``attrs[MALFORMED_LINES]`` (named by file when there are several),
    for :func:`validate` to quarantine, and count as rows."""
    malformed: list[str] = []
    # the id and the columns the user called categories are text whatever they hold
    user_text = [data.id_column, *(name for name, kind in data.column_types.items() if kind == "categorical")]

    def chunks(text_columns: list[str], stray: StrayText | None) -> Iterator[pd.DataFrame]:
        first: tuple[Path, set[str]] | None = None
        malformed.clear()
        for file in files:
            for chunk in iter_batches(file, data.format, SAMPLE_CHUNK, text_columns=text_columns):
                if stray is not None:
                    stray.add(chunk, [c for c in text_columns if c not in user_text and c != data.label_column])
                malformed.extend(f"{file.name}: {reason}" if len(files) > 1 else reason
                                 for reason in chunk.attrs.get(MALFORMED_LINES, ()))
                first = first or (file, set(chunk.columns))
                if set(chunk.columns) != first[1]:
                    raise SchemaError(f"{file} has other columns than {first[0]}: it lacks "
                                      f"{sorted(first[1] - set(chunk.columns))} and adds "
                                      f"{sorted(set(chunk.columns) - first[1])}; train on files of one layout")
                if short := chunk.attrs.get(SHORT_LINES):  # carried by the rows through the sample
                    chunk = chunk.assign(**{_SHORT: pd.Series(short, dtype=object).map(
                        lambda reason, name=file.name: f"{name}: {reason}" if len(files) > 1 else reason)})
                yield chunk

    def sample(text_columns: list[str], stray: StrayText | None = None) -> tuple[pd.DataFrame, int]:
        """The sample, reading ``text_columns`` as text; ``stray`` counts their text cells as it goes."""
        return reservoir_sample(chunks(text_columns, stray), data.max_rows, seed)

    text = list(user_text)
    # The columns the first chunk holds as text are read as text, as screening reads the schema's
    # categories: there only an empty cell is missing ("NA" is a country code, not pandas' NaN).
    head = iter_batches(files[0], data.format, SAMPLE_CHUNK, text_columns=text, short_lines=False)
    with closing(head), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the sample's read says it all
        first = next(head)
    text += [c for c in first.columns if c not in text and c != data.label_column
             and data.column_types.get(c) != "numeric" and not is_numeric_column(first[c])]
    frame, rows = sample(text, stray := StrayText())
    mixed = [c for c in frame.columns
             if c not in text and pd.api.types.infer_dtype(frame[c], skipna=True).startswith("mixed")]
    if mixed:
        text += mixed
        frame, rows = sample(text, stray := StrayText())
    if numbers := stray.numeric():  # read as screening will: pandas' spellings of a missing number are missing
        text = [c for c in text if c not in numbers]
        frame, rows = sample(text)
    frame.attrs[MALFORMED_LINES] = MalformedLines(malformed)
    short = frame.pop(_SHORT).dropna() if _SHORT in frame.columns else pd.Series(dtype=object)
    frame.attrs[SHORT_LINES] = ShortRows(short.to_dict())  # by the sample's own row numbers
    rows += len(malformed)
    if rows > len(frame) + len(malformed):
        warnings.warn(f"{data.path}: {rows:,} rows; training on a uniform random sample of {len(frame):,} of them "
                      f"(data.max_rows)", stacklevel=3)
    return frame, rows, numbers


def check_named_columns(data: DataConfig) -> None:
    """Refuse training files whose header lacks a column the configuration names (id, label,
    columns, exclusions, column types), from the headers alone: the command line says so at once,
    where the flow would say it after Prefect's start and the files' read.

    Raises
    ------
    SchemaError
        Naming the file, the columns it lacks, and the near spellings it has.
    """
    named = [data.id_column, data.label_column, *(data.columns or []), *data.exclude_columns, *data.column_types]
    for file in source_files(data.path):
        header = next(iter_batches(file, data.format, batch_rows=1, short_lines=False)).columns
        if missing := list(dict.fromkeys(c for c in named if c is not None and c not in header)):
            raise SchemaError(f"{file.name}: column(s) {missing} are not in the training data"
                              f"{near_names_hint(missing, header)}; it has {list(header)}")
        not_features = {data.id_column, data.label_column, *data.exclude_columns}
        check_written_names(data.id_column, data.label_column,
                            data.columns or [c for c in header if c not in not_features])


def check_written_names(id_column: str, label_column: str | None, features: list[str]) -> None:
    """Refuse an id, label or feature column named as a column that screening writes beside each
    record (``anomaly_score``, ``reasons``, ...): flagged.csv would hold two of that name."""
    if clash := [c for c in (id_column, label_column, *features) if c in WRITTEN_COLUMNS]:
        leave_out = [c for c in clash if c in features]
        raise SchemaError(f"column(s) {clash} are named as columns maskae writes beside each screened record "
                          f"({', '.join(WRITTEN_COLUMNS)}): rename them in the data"
                          + (f", or leave them out (--exclude-columns {','.join(leave_out)})" if leave_out else ""))


def registered_earlier(config: PipelineConfig, request_id: str | None) -> TrainResult | None:
    """What an earlier try of request ``request_id`` registered (its naming finished now, its
    counts and metrics as its run logged them), or None: a retried training that got as far as
    registering returns that version rather than training and registering a second one."""
    info = None if request_id is None else tracking.registered_for(config.mlflow.model_name, request_id)
    if info is None:
        return None
    logged = mlflow.MlflowClient().get_run(info.run_id).data.metrics
    counts = {f.name: int(logged[f.name]) for f in fields(TrainResult) if f.type == "int"}
    return TrainResult(info.name, info.version, info.aliases, info.run_id, **counts, metrics=dict(logged))


def train(config: PipelineConfig, workdir: Path | None = None, request_id: str | None = None) -> TrainResult:
    """Train, calibrate, evaluate, log and register one model version (see the module docstring).

    Parameters
    ----------
    config : PipelineConfig
        ``data`` (path or glob, id / label / feature columns), ``model``, ``calibration`` and
        ``mlflow`` (registered model name, experiment) settings.
    workdir : Path or None, default=None
        Set MLflow's tracking URI to :func:`pipeline.tracking.tracking_uri` of this folder (the
        embedded SQLite store, unless ``MLFLOW_TRACKING_URI`` is set). None leaves MLflow's own
        setting alone.
    request_id : str or None, default=None
        Names this request, so that a retry of it returns the version it registered, if it got
        that far (:func:`registered_earlier`), instead of registering another.

    Returns
    -------
    TrainResult

    Raises
    ------
    IngestError, SchemaError
        The data cannot be read, or lack the configured columns.
    ValueError
        Bad labels, or too few of them for strategy ``"labels"``.
    """
    if workdir is not None:
        mlflow.set_tracking_uri(tracking.tracking_uri(workdir))
    if (earlier := registered_earlier(config, request_id)) is not None:
        return earlier
    started, data = time.perf_counter(), config.data
    files = source_files(data.path)
    frame, rows_read, stray_text = _training_rows(files, data, config.model.random_state)
    if data.label_column is not None and data.label_column not in frame.columns:
        raise SchemaError(f"label column {data.label_column!r} is not in the training data"
                          f"{near_names_hint([data.label_column], frame.columns)}; it has {list(frame.columns)}")
    schema = Schema.infer(frame, data.id_column, label_column=data.label_column, columns=data.columns,
                          exclude_columns=data.exclude_columns,
                          column_types={**dict.fromkeys(stray_text, "numeric"), **data.column_types})
    check_written_names(schema.id_column, schema.label_column, schema.feature_columns)
    checked = validate(frame, schema, warn_extra=False)  # the columns left out were the user's choice
    seed, model_params = config.model.random_state, config.model.detector_params(images=False)
    fit_rows, validation, y = _split(checked.clean, data.label_column, data.id_column, np.random.default_rng(seed))
    if empty := [c for c in schema.feature_columns if len(fit_rows) and fit_rows[c].isna().all()]:
        leave_out = ("drop them from --columns (data.columns)" if data.columns else
                     f"--exclude-columns {','.join(empty)}, or data.exclude_columns")
        raise SchemaError(f"column(s) {empty} have no value in any row trained on (known anomalies set aside): leave "
                          f"them out ({leave_out}), or train on rows where they are filled")
    fraction = config.calibration.calibration_fraction  # the detector holds out at least 1 row for it
    if len(fit_rows) - (max(1, round(fraction * len(fit_rows))) if fraction > 0 else 0) < 3:
        # the detector's own message could not say where the rows went
        labelled = f", {int(y.sum()):,} set aside as known anomalies by {data.label_column!r}" if data.label_column else ""
        raise ValueError(f"{len(fit_rows)} of the {rows_read:,} rows read from {data.path!r} are left to train and "
                         f"calibrate on ({len(checked.quarantined):,} quarantined{labelled}, {int((y == 0).sum()):,} "
                         f"held out to validate); a model needs at least 3 besides its {fraction:.0%} held out to "
                         f"calibrate: check the files and the label column")
    with warnings.catch_warnings():
        for name in [c for c, kind in data.column_types.items() if kind == "numeric"]:  # the user said what it is
            warnings.filterwarnings("ignore", identifier_warning(name), ColumnWarning)
        detector = MaskedAutoencoderDetector(
            **model_params, calibration_fraction=config.calibration.calibration_fraction,
            progress=sys.stderr.isatty(),  # a bar for people at a terminal, not in batch logs
        ).fit(feature_frame(fit_rows, schema))
    scores = detector.anomaly_score(feature_frame(validation, schema)) if len(validation) else np.zeros(0)
    calibration, evaluate = _calibrate(config.calibration, detector, scores, y, seed)
    flags = calibration.apply(scores[evaluate]).flagged  # fdr / budget: the evaluation rows as one batch
    metrics = {f"validation_{k}": v for k, v in label_metrics(y[evaluate], scores[evaluate], flags).items()}
    counts = {"rows_read": rows_read, "rows_quarantined": len(checked.quarantined),
              "rows_fit": len(fit_rows) - len(detector.calibration_scores_),
              "rows_calibration": len(detector.calibration_scores_), "rows_validation": len(evaluate),
              "known_anomalies_set_aside": int(y.sum())}
    source = fingerprint(files)
    data_tags = {"data.rows": rows_read, "data.rows_sampled": len(frame), "data.file_columns": len(frame.columns),
                 "data.sha256": source["sha256"],
                 "data.bytes": source["bytes"], "data.path": os.path.abspath(data.path)}  # a glob stays one
    params = {"data.id_column": data.id_column, "data.label_column": data.label_column,
              "data.features": ",".join(schema.feature_columns), **data_tags}

    def draw_labelled(plots: Path) -> None:
        if "validation_auprc" in metrics:
            training_plots.pr_curve(plots / "pr_curve.png", y[evaluate], scores[evaluate])

    return log_training(
        config, detector, calibration, model_params, started, counts, metrics=metrics, params=params,
        tags={**data_tags, "known_anomalies_set_aside": counts["known_anomalies_set_aside"]},
        quarantined=checked.quarantined, input_example=feature_frame(fit_rows.head(5), schema),
        schema=schema.to_dict(), anomaly_scores=scores[y == 1], draw=draw_labelled, request_id=request_id)


def log_training(config: PipelineConfig, detector: MaskedAutoencoderDetector, calibration: Calibration,
                 model_params: dict[str, Any], started: float, counts: dict[str, int], *,
                 metrics: dict[str, float], params: dict[str, Any], tags: dict[str, Any],
                 quarantined: pd.DataFrame, input_example: pd.DataFrame | np.ndarray, schema: dict[str, Any],
                 anomaly_scores: np.ndarray | None = None, draw: Callable[[Path], None] | None = None,
                 request_id: str | None = None) -> TrainResult:
    """Log a training run and register its model, for tables and images alike: the settings
    (``model_params`` and the calibration's, with ``params``), the calibration scores' quantiles,
    the threshold, ``counts`` and the seconds since ``started`` (with ``metrics``), the config, the
    quarantined rows or files, and the plots: score histogram (``anomaly_scores`` beside the
    calibration scores), loss curve, and whatever ``draw(plots folder)`` adds; the version is tagged
    with ``request_id``. Returns the run's :class:`TrainResult`, ``counts`` as given."""
    cal_scores = detector.calibration_scores_
    metrics = dict(metrics)
    metrics |= {f"calibration_score_q{q * 100:g}": float(np.quantile(cal_scores, q)) for q in QUANTILES}
    metrics |= {"calibration_score_mean": float(cal_scores.mean()), "calibration_score_std": float(cal_scores.std())}
    if calibration.threshold is not None and np.isfinite(calibration.threshold):
        metrics["threshold"] = calibration.threshold
    metrics |= {**counts, "train_seconds": round(time.perf_counter() - started, 2)}
    # Only the settings that took part: patch_size is the CNN's, objective the labels strategy's.
    unused = {"model.patch_size"} if model_params.get("backend") == "mlp" else set()
    unused |= {"calibration.objective"} if config.calibration.strategy != "labels" else set()
    params = {**{f"model.{k}": v for k, v in model_params.items()},
              **{f"calibration.{k}": v for k, v in config.calibration.model_dump().items()}, **params}
    params = {k: v for k, v in params.items() if k not in unused}
    with tempfile.TemporaryDirectory() as tmp:
        plots = Path(tmp) / "plots"
        plots.mkdir()
        training_plots.score_histogram(plots / "score_histogram.png", cal_scores, calibration.threshold,
                                       anomaly_scores)
        training_plots.loss_curve(plots / "training_loss.png", detector.history_)
        if draw is not None:
            draw(plots)
        config_file = Path(tmp) / "config.json"
        config_file.write_text(json.dumps(config.model_dump(mode="json"), indent=2), encoding="utf-8")
        artifacts = {"plots": plots, "config": config_file}
        if len(quarantined):
            for_csv(quarantined).to_csv(Path(tmp) / "quarantine.csv", index=False, lineterminator=CSV_LINE_END)
            artifacts["quarantine"] = Path(tmp) / "quarantine.csv"
        info = tracking.log_trained_model(
            detector, calibration, model_name=config.mlflow.model_name, experiment=config.mlflow.experiment,
            params=params, metrics=metrics, input_example=input_example, artifacts=artifacts, schema=schema, tags=tags,
            request_id=request_id)
    return TrainResult(info.name, info.version, info.aliases, info.run_id, **counts, metrics=metrics)
