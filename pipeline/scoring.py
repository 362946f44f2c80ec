"""A registered model ready to score tables, and the label handling that training and promotion share.

:func:`load_scoring_model` resolves a model reference (``NAME``, ``NAME@ALIAS``, ``NAME/VERSION``),
loads the pinned version as an MLflow pyfunc and unwraps the parts that travel inside it: the
detector (for ``explain``), the calibration and the training data's :class:`~pipeline.ingest.Schema`.
:func:`anomaly_labels` reads a label column (1/0, true/false, yes/no; empty = unknown) and
:func:`label_metrics` gives AUROC, AUPRC and precision / recall / false-positive rate of the flags.

Example
-------
>>> import numpy as np
>>> y, known = anomaly_labels(pd.Series(["1", "0", None, "true"], name="is_fraud"))
>>> y.tolist(), known.tolist()
([1, 0, 0, 1], [True, True, False, True])
>>> label_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, False, True]))
{'auroc': 0.75, 'auprc': 0.8333, 'precision': 1.0, 'recall': 0.5, 'fpr': 0.0}
>>> # model = load_scoring_model("fraud@champion"); model.score(feature_frame(clean, model.schema))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from maskae import MaskedAutoencoderDetector
from maskae.calibration import Calibration
from maskae.table_encoding import MISSING_TEXT
from pipeline import tracking
from pipeline.config import IMAGES
from pipeline.ingest import Schema, SchemaError
from pipeline.mlflow_model import OUTPUT_COLUMNS
from pipeline.report import IMAGE_OUTCOMES, TABLE_OUTCOMES

# The outcome words of ``maskae review`` (fraud / legitimate, defect / good) label too: a file of
# verdicts, or a case system's export in its words, is a label column as it stands.
_POSITIVE = {"1", "1.0", "true", "t", "yes", "y", TABLE_OUTCOMES[0], IMAGE_OUTCOMES[0]}
_NEGATIVE = {"0", "0.0", "false", "f", "no", "n", TABLE_OUTCOMES[1], IMAGE_OUTCOMES[1]}


@dataclass(frozen=True)
class ScoringModel:
    """One registered model version, loaded: the pyfunc and the parts inside it."""

    resolved: tracking.ResolvedModel
    pyfunc: Any  # mlflow.pyfunc.PyFuncModel
    detector: MaskedAutoencoderDetector
    calibration: Calibration
    schema: Schema | dict[str, Any]  # an image model's: pipeline.image_train.image_schema

    def score(self, features: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """``anomaly_score``, ``p_value``, ``flagged`` per row of ``features`` (same index), or per
        image of an image batch, through the pyfunc, so MLflow checks the input against the model's
        signature. For the ``fdr`` and ``budget`` strategies the flags are those of ``features``
        taken as one batch."""
        if not len(features):  # MLflow refuses an empty frame; nothing to score is not an error
            return pd.DataFrame({c: pd.Series(dtype=bool if c == "flagged" else float) for c in OUTPUT_COLUMNS},
                                index=getattr(features, "index", None))
        return self.pyfunc.predict(features)


def wrong_kind(which: str, trained_on_images: bool) -> SchemaError:
    """The error for data of the other kind than ``which`` (a model version) was trained on."""
    return SchemaError(f"{which} was trained on images: it reads folders of images, not a CSV or Parquet file"
                       if trained_on_images else
                       f"{which} was trained on a table: it reads CSV or Parquet files, not a folder of images")


def load_scoring_model(ref: str | tracking.ResolvedModel, images: bool = False) -> ScoringModel:
    """Load ``ref`` (``NAME`` means ``NAME@champion``) pinned to the version it points at now: a
    model trained on a table, or with ``images`` one trained on images (its schema a dict).

    Raises
    ------
    tracking.ModelNotFoundError
        No such model, alias or version.
    SchemaError
        The version carries no data schema (it was not logged by ``pipeline.train``), or it was
        trained on the other kind of data.
    """
    resolved = tracking.resolve_model(ref)
    pyfunc = tracking.load_model(resolved.uri)
    inner = pyfunc.unwrap_python_model()
    schema, which = getattr(inner, "schema", None), f"model {resolved.name!r} version {resolved.version}"
    if schema is None:
        raise SchemaError(f"{which} carries no data schema: retrain it with pipeline.train (or `maskae train`)")
    if (schema.get("kind") == IMAGES) != images:
        raise wrong_kind(which, trained_on_images=not images)
    return ScoringModel(resolved, pyfunc, inner.detector, inner.calibration,
                        schema if images else Schema.from_dict(schema))


def feature_frame(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The schema's feature columns of ``frame``, integer numeric columns cast to float64.

    MLflow's signature check refuses int64 where the model was logged with double, and a column of
    whole numbers in one batch can be floats in the next (a missing value), so numbers go as float.
    """
    features = frame[schema.feature_columns]
    ints = [c for c in schema.columns_of_kind("numeric") if pd.api.types.is_integer_dtype(features[c])]
    return features.astype({c: "float64" for c in ints}) if ints else features


def anomaly_labels(series: pd.Series, ids: pd.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a label column: ``(y, known)``, ``y`` 1 for anomalies, 0 otherwise (also where unknown).

    1 / true / yes / fraud / defect mark an anomaly, 0 / false / no / legitimate / good a normal
    record, an empty cell an unknown one. ``ids``, the records' ids beside ``series``, lets an
    error say which record to fix.

    Raises
    ------
    ValueError
        A value is none of these; the message names the column, the value, how many records hold
        one, and (with ``ids``) the first such record's id.
    """
    text = series.astype(str).str.strip().str.lower()
    missing = (series.isna() | text.isin(MISSING_TEXT)).to_numpy()
    positive, negative = text.isin(_POSITIVE).to_numpy(), text.isin(_NEGATIVE).to_numpy()
    bad = np.flatnonzero(~(missing | positive | negative))
    if len(bad):
        value = series.iloc[int(bad[0])]
        value = value.item() if isinstance(value, np.generic) else value  # 2, not np.int64(2)
        where = f"{len(bad):,} record{'s hold' if len(bad) > 1 else ' holds'} a value that is not one"
        if ids is not None:
            where += f"; the first: {ids.name} {ids.iloc[int(bad[0])]!s}"
        raise ValueError(f"label column {series.name!r}: {value!r} is not a label ({where}); use 1/0, true/false, "
                         f"yes/no, fraud/legitimate or defect/good (an empty cell means unknown)")
    return positive.astype(int), ~missing


def label_metrics(y: np.ndarray, scores: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """AUROC and AUPRC (average precision) of ``scores``; precision, recall and false-positive rate
    of ``flagged``. Values a sample cannot define (AUROC with one class, precision with no flag) are
    left out rather than reported as NaN. Rounded to 4 decimals."""
    y, scores, flagged = np.asarray(y).astype(int), np.asarray(scores, dtype=float), np.asarray(flagged, dtype=bool)
    metrics: dict[str, float] = {}
    if 0 < y.sum() < len(y):
        metrics["auroc"] = roc_auc_score(y, scores)
        metrics["auprc"] = average_precision_score(y, scores)
    if flagged.any():
        metrics["precision"] = y[flagged].mean()
    if y.any():
        metrics["recall"] = flagged[y == 1].mean()
    if (y == 0).any():
        metrics["fpr"] = flagged[y == 0].mean()
    return {key: round(float(value), 4) for key, value in metrics.items()}
