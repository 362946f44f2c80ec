"""Tail evidence: how far each numeric cell lies from its column's bulk, in robust units.

Reconstruction error judges a cell by what the rest of its row predicts; a value far out in its
column's tail (an amount 50 times the usual) is also evidence on its own, the signal ECOD and
IsolationForest live on. Location and scale are the median and the MAD (scaled to a standard
deviation under normality), so unlabelled anomalies in the training data barely move them.

Example
-------
>>> import numpy as np
>>> center, scale = robust_location_scale(np.array([[1.0], [2.0], [3.0], [4.0], [100.0]]))
>>> center.tolist(), tail_extremity(np.array([[3.0], [30.0]]), center, scale).round(1).tolist()
([3.0], [0.0, 331.6])
"""

from __future__ import annotations

import numpy as np

MAD_TO_STD = 1.4826  # MAD of a normal distribution times this is its standard deviation


def robust_location_scale(values: np.ndarray, missing: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per column median and MAD-based scale, ignoring missing cells.

    A column whose MAD is zero (mostly one value, e.g. a rare flag) falls back to its standard
    deviation, and a constant column to 1, so no division blows up.
    """
    masked = values.astype(float).copy()
    if missing is not None:
        masked[missing] = np.nan
    center = np.nan_to_num(np.nanmedian(masked, axis=0)) if masked.size else np.zeros(values.shape[1])
    mad = np.nan_to_num(np.nanmedian(np.abs(masked - center), axis=0)) * MAD_TO_STD
    std = np.nan_to_num(np.nanstd(masked, axis=0))
    scale = np.where(mad > 1e-6, mad, np.where(std > 1e-6, std, 1.0))
    return center.astype(np.float32), scale.astype(np.float32)


def tail_extremity(values: np.ndarray, center: np.ndarray, scale: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """(n,) mean squared robust z-score over each row's observed cells (0 when none is observed)."""
    z2 = ((values - center) / scale) ** 2
    observed = np.ones_like(z2, dtype=bool) if missing is None else ~missing
    return (z2 * observed).sum(axis=1) / np.maximum(observed.sum(axis=1), 1)
