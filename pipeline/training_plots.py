"""The plots a training run logs: score histogram with the threshold, PR curve, training loss.

Drawn with matplotlib's Agg backend (no display needed) into PNG files that
``pipeline.train`` logs as run artifacts.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> score_histogram(folder / "scores.png", np.random.default_rng(0).normal(size=200), threshold=2.0).name
'scores.png'
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never look for a display on a batch machine

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def score_histogram(path: Path, calibration_scores: np.ndarray, threshold: float | None,
                    anomaly_scores: np.ndarray | None = None) -> Path:
    """Histogram of the calibration scores (held-out normal records), the known anomalies' scores
    beside them when given, and the threshold as a vertical line (fixed thresholds only: ``fdr``
    and ``budget`` set theirs per batch)."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    values = [np.asarray(calibration_scores, dtype=float)]
    if anomaly_scores is not None and len(anomaly_scores):
        values.append(np.asarray(anomaly_scores, dtype=float))
    bins = np.histogram_bin_edges(np.concatenate(values), bins=40)
    axis.hist(values[0], bins=bins, alpha=0.7, label=f"calibration (normal), n={len(values[0])}")
    if len(values) > 1:
        axis.hist(values[1], bins=bins, alpha=0.7, label=f"known anomalies, n={len(values[1])}")
    if threshold is not None and np.isfinite(threshold):
        axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    else:
        axis.set_title("threshold set per batch" if threshold is None else "threshold +inf (nothing flagged)")
    axis.set_xlabel("anomaly score")
    axis.set_ylabel("records")
    axis.legend(fontsize=8)
    return _save(figure, path)


def pr_curve(path: Path, y: np.ndarray, scores: np.ndarray) -> Path:
    """Precision-recall curve of ``scores`` against labels ``y`` (1 = anomaly), AUPRC in the legend."""
    precision, recall, _ = precision_recall_curve(y, scores)
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.plot(recall, precision, drawstyle="steps-post", label=f"AUPRC {average_precision_score(y, scores):.3f}")
    axis.axhline(np.mean(y), color="grey", linestyle=":", label="no skill")
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    axis.legend(fontsize=8)
    return _save(figure, path)


def loss_curve(path: Path, history: dict[str, list[float]]) -> Path:
    """Training loss per step (and validation loss per check, if the detector monitored one); a
    dotted line marks the step from which the MLP's trimmed training left rows out."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(history.get("train_loss", []), label="training loss", linewidth=0.8)
    for step in history.get("trimmed_from_step", []):
        axis.axvline(step, color="grey", linestyle=":", label="from here, without the contamination share")
    validation = history.get("validation_loss", [])
    if validation:
        steps = np.linspace(0, len(history.get("train_loss", [])), len(validation) + 1)[1:]
        axis.plot(steps, validation, marker="o", label="validation loss")
    axis.set(xlabel="step", ylabel="masked reconstruction loss")
    axis.legend(fontsize=8)
    return _save(figure, path)
