"""The report's plots, as PNG ``data:`` URIs: the batch's score histogram and its drift from calibration.

A streamed screening never holds the batch's whole score vector, so the plots take a histogram:
:func:`histogram_edges` fixes the bins before the batch is read (from the calibration scores) and
:func:`count_scores` counts each chunk into them; the counts of the chunks add up::

    edges = histogram_edges(calibration_scores, threshold)
    counts = sum(count_scores(chunk_scores, edges) for chunk_scores in chunks)

Drawn with matplotlib's Agg backend (no display needed).

Example
-------
>>> import numpy as np
>>> edges = histogram_edges(np.array([0.0, 1.0, 2.0]), threshold=2.5, bins=4)
>>> count_scores(np.array([-9.0, 0.1, 0.9, 99.0]), edges).tolist()  # outer bins are open-ended
[2, 1, 0, 1]
>>> histogram_plot(np.array([2, 1, 0, 1]), edges, threshold=2.5, calibration_counts=None)[:22]
'data:image/png;base64,'
"""

from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")  # files only: never look for a display on a batch machine

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_PNG = b"\x89PNG\r\n\x1a\n"


def histogram_edges(reference: np.ndarray, threshold: float | None = None, bins: int = 40) -> np.ndarray:
    """Fixed bin edges for a batch's score histogram, chosen before the batch is read.

    They span ``reference`` (the calibration scores; the batch's own scores will do) and the
    threshold, with a quarter of that span added above, so a stream of chunks can share them;
    :func:`count_scores` puts scores outside into the outer bins.
    """
    values = np.asarray(reference, dtype=float)
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    if threshold is not None and math.isfinite(threshold):
        low, high = min(low, threshold), max(high, threshold)
    span = high - low or 1.0
    return np.linspace(low, high + span / 4, bins + 1)


def count_scores(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Records per bin of ``edges`` (shape ``(len(edges) - 1,)``); the first and last bins are
    open-ended, so the counts of a file's chunks add up to the file's."""
    clipped = np.clip(np.asarray(scores, dtype=float), edges[0], edges[-1])
    return np.histogram(clipped, bins=edges)[0]


def png_data_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes; anything else is refused (ValueError), since the
    page declares it a PNG and its policy loads images from such URIs only."""
    if not data.startswith(_PNG):
        raise ValueError("report images must be PNG files")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_uri(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return png_data_uri(buffer.getvalue())


def histogram_plot(counts: np.ndarray, edges: np.ndarray, threshold: float | None,
                   calibration_counts: np.ndarray | None) -> str:
    """The batch's score histogram with the threshold, and the calibration scores' histogram scaled to
    the batch's size when given: what the batch would look like if it were all normal records.

    Parameters
    ----------
    counts, calibration_counts : ndarray of shape (bins,)
        Records per bin of the batch and of the calibration set (or None).
    edges : ndarray of shape (bins + 1,)
        The bins; the last one is open-ended (:func:`count_scores`).
    threshold : float or None
        Drawn as a dashed line when finite.
    """
    figure, axis = plt.subplots(figsize=(7, 3.2))
    axis.stairs(counts, edges, fill=True, alpha=0.6, label=f"this batch, n={int(counts.sum()):,}")
    if calibration_counts is not None and calibration_counts.sum() and counts.sum():
        expected = calibration_counts / calibration_counts.sum() * counts.sum()
        axis.stairs(expected, edges, color="black", linewidth=1, label="calibration, scaled to the batch")
    if threshold is not None and math.isfinite(threshold):
        axis.axvline(threshold, color="#c0392b", linestyle="--", label=f"threshold {threshold:.3g}")
    axis.set_yscale("symlog", linthresh=1)  # the flagged tail is a handful of records
    axis.set_xlabel(f"anomaly score (last bar: {edges[-2]:.3g} and above)")
    axis.set_ylabel("records")
    axis.legend(fontsize=8)
    return _figure_uri(figure)


def drift_plot(counts: np.ndarray, edges: np.ndarray, calibration_counts: np.ndarray) -> str:
    """Cumulative share of records per score bin, the batch against the calibration set: the gap
    between the curves is what the Kolmogorov–Smirnov statistic of ``summary.json`` measures."""
    figure, axis = plt.subplots(figsize=(7, 3.2))
    axis.stairs(np.cumsum(counts) / counts.sum(), edges, baseline=None, label="this batch")
    axis.stairs(np.cumsum(calibration_counts) / calibration_counts.sum(), edges, baseline=None,
                color="black", label="calibration (normal records)")
    axis.set_xlabel("anomaly score")
    axis.set_ylabel("share of records at or below")
    axis.legend(fontsize=8)
    return _figure_uri(figure)


class ScoreHistogram:
    """A batch's score histogram counted chunk by chunk on edges fixed before the batch is read;
    kept in ``summary.json`` so the report can be drawn again without the scores."""

    def __init__(self, edges: np.ndarray, counts: np.ndarray | None = None):
        self.edges = np.asarray(edges, dtype=float)
        self.counts = np.zeros(len(self.edges) - 1, dtype=np.int64) if counts is None else np.asarray(counts)

    def add(self, scores: np.ndarray) -> None:
        self.counts += count_scores(scores, self.edges)

    def counts_and_edges(self) -> tuple[np.ndarray, np.ndarray]:
        return self.counts, self.edges

    def to_dict(self) -> dict[str, list]:
        return {"edges": self.edges.tolist(), "counts": self.counts.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> "ScoreHistogram":
        return cls(np.asarray(data["edges"]), np.asarray(data["counts"], dtype=np.int64))
