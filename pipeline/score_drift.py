"""Drift of a batch's anomaly scores against the model's calibration scores, read chunk by chunk.

The two-sample Kolmogorov–Smirnov statistic needs no more than how many batch scores fall between
consecutive calibration scores: between two of them the calibration CDF is flat, so the largest gap
between the two CDFs is found at the ends of those intervals. So the statistic is exact for a file of
any size in memory of ``n_cal`` counts; its p-value is the asymptotic one (``ks_2samp(method="asymp")``).
Quantiles come from a uniform random sample of the scores of fixed size (bottom-k random keys).

Example
-------
>>> import numpy as np
>>> drift = ScoreDrift(np.arange(100.0), seed=0)
>>> drift.add(np.arange(50.0, 150.0))
>>> round(drift.summary()["ks_statistic"], 2)
0.5
"""

from __future__ import annotations

import numpy as np
from scipy.stats import kstwo

QUANTILES = (0.5, 0.9, 0.99)
SAMPLE = 10_000  # scores kept for the quantiles: their error is ~1/sqrt(SAMPLE) in rank


class ScoreDrift:
    """Accumulates a batch's scores; :meth:`summary` compares them with ``calibration_scores``."""

    def __init__(self, calibration_scores: np.ndarray, seed: int = 0):
        self._cal = np.sort(np.asarray(calibration_scores, dtype=float))
        self._between = np.zeros(len(self._cal) + 1, dtype=np.int64)  # batch scores with i cal scores <= them
        self._sum, self._rows = 0.0, 0
        self._rng = np.random.default_rng(seed)
        self._keys, self._sample = np.empty(0), np.empty(0)

    def add(self, scores: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=float)
        self._between += np.bincount(np.searchsorted(self._cal, scores, side="right"), minlength=len(self._between))
        self._sum, self._rows = self._sum + float(scores.sum()), self._rows + len(scores)
        keys = np.concatenate([self._keys, self._rng.random(len(scores))])
        sample = np.concatenate([self._sample, scores])
        keep = np.argsort(keys, kind="stable")[:SAMPLE]
        self._keys, self._sample = keys[keep], sample[keep]

    def summary(self) -> dict[str, float | None]:
        """``ks_statistic``, ``ks_p_value``, ``score_mean``, ``calibration_score_mean`` and the
        ``score_q50`` / ``q90`` / ``q99`` quantiles (None for a batch without scores)."""
        n, m = len(self._cal), self._rows
        out: dict[str, float | None] = {"ks_statistic": None, "ks_p_value": None, "score_mean": None,
                                        "calibration_score_mean": float(self._cal.mean())}
        if not m:
            return out
        # Between the i-th and (i+1)-th calibration scores the calibration CDF is i/n; the batch's
        # CDF there runs from its value at the i-th (scores below it) to just below the (i+1)-th.
        cal_cdf = np.arange(n + 1) / n
        below_next = np.cumsum(self._between) / m
        at_start = np.r_[0.0, below_next[:-1]]
        statistic = float(max(np.abs(below_next - cal_cdf).max(), np.abs(at_start - cal_cdf).max()))
        out |= {"ks_statistic": statistic, "ks_p_value": float(kstwo.sf(statistic, round(n * m / (n + m)))),
                "score_mean": self._sum / m}
        return out | {f"score_q{q * 100:g}": float(np.quantile(self._sample, q)) for q in QUANTILES}
