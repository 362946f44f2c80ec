"""The MLflow pyfunc of a fitted maskae detector, logged as *code* (models-from-code), never pickled.

MLflow copies this file into the logged model and runs it when the model loads; the file ends with
``mlflow.models.set_model(MaskaeModel())``. The model's two artifacts are plain files, so loading a
model never unpickles anything:

* ``detector`` — the folder written by ``MaskedAutoencoderDetector.save`` (JSON + safetensors);
* ``calibration`` — a JSON file written from ``Calibration.to_dict()`` (strategy, level, threshold,
  calibration scores);
* ``schema`` (optional) — the training data's ``pipeline.ingest.Schema.to_dict()`` as JSON, exposed
  as the loaded model's ``schema`` attribute (None without it), so screening needs nothing but the
  model: ``mlflow.pyfunc.load_model(uri).unwrap_python_model().schema``.

``predict`` takes a DataFrame of feature columns (or, for an image model, an N x H x W x C
``uint8`` array of images) and returns, row for row (same index; 0..N-1 for images),
``anomaly_score``, ``p_value`` and ``flagged``. For the ``fdr`` and ``budget`` strategies the flags
depend on the whole batch passed to one ``predict`` call.

Example
-------
>>> # import mlflow
>>> # model = mlflow.pyfunc.load_model("models:/maskae-screening@champion")
>>> # model.predict(batch[feature_columns])  # -> anomaly_score, p_value, flagged
>>> # Logging goes through pipeline.tracking.log_trained_model.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # nothing may try to reach the internet

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from maskae import MaskedAutoencoderDetector  # noqa: E402
from maskae.calibration import Calibration  # noqa: E402

DETECTOR_ARTIFACT = "detector"
CALIBRATION_ARTIFACT = "calibration"
SCHEMA_ARTIFACT = "schema"
OUTPUT_COLUMNS = ("anomaly_score", "p_value", "flagged")


def read_calibration(path: str | os.PathLike) -> Calibration:
    """Read a calibration JSON file written from :meth:`Calibration.to_dict`."""
    with open(path, encoding="utf-8") as file:
        return Calibration.from_dict(json.load(file))


def calibrated_scores(detector: MaskedAutoencoderDetector, calibration: Calibration,
                      frame: pd.DataFrame | np.ndarray) -> pd.DataFrame:
    """Score one batch and flag it: what the pyfunc's ``predict`` returns.

    Parameters
    ----------
    detector : MaskedAutoencoderDetector
        Fitted detector.
    calibration : Calibration
        Fitted calibration rule applied to the batch's anomaly scores.
    frame : DataFrame of shape (m, n_features), or ndarray of m images
        The records, with the columns the detector was trained on; or an image batch.

    Returns
    -------
    DataFrame of shape (m, 3), indexed like ``frame``
        ``anomaly_score`` (float, higher = more anomalous), ``p_value`` (float in (0, 1]) and
        ``flagged`` (bool).
    """
    scores = detector.anomaly_score(frame)
    result = calibration.apply(scores)
    return pd.DataFrame(
        {"anomaly_score": scores.astype(float), "p_value": result.p_value, "flagged": result.flagged},
        index=getattr(frame, "index", None),  # callers join the output back to their id column by index
        columns=list(OUTPUT_COLUMNS),
    )


class MaskaeModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper: a fitted detector plus its calibration (and the data schema, a plain dict),
    all read from plain-file artifacts."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the detector folder and the calibration (and schema) JSON named in ``context.artifacts``."""
        self.detector = MaskedAutoencoderDetector.load(context.artifacts[DETECTOR_ARTIFACT])
        self.calibration = read_calibration(context.artifacts[CALIBRATION_ARTIFACT])
        self.schema = None
        if SCHEMA_ARTIFACT in context.artifacts:
            with open(context.artifacts[SCHEMA_ARTIFACT], encoding="utf-8") as file:
                self.schema = json.load(file)

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: dict | None = None) -> pd.DataFrame:
        """Score and flag ``model_input``; see :func:`calibrated_scores`."""
        if not isinstance(model_input, pd.DataFrame) and not (
                isinstance(model_input, np.ndarray) and model_input.ndim >= 3):  # images stay an array
            # Without a signature MLflow may hand over a list of dicts or a table as an array.
            model_input = pd.DataFrame(model_input)
        return calibrated_scores(self.detector, self.calibration, model_input)


mlflow.models.set_model(MaskaeModel())
