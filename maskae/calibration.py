"""Calibrated thresholds: turn anomaly scores into p-values and flags with stated guarantees.

A *calibration set* holds the anomaly scores of normal records the detector never trained on
(``MaskedAutoencoderDetector(calibration_fraction=...)`` keeps them in ``calibration_scores_``).
If calibration and future normal records are exchangeable (e.g. drawn i.i.d.), a new normal record's
conformal p-value ``(1 + #{cal >= s}) / (n_cal + 1)`` is uniform on ``{1, ..., n_cal + 1} / (n_cal + 1)``,
so ``P(p <= a) <= a``. Four strategies build on it (higher score = more anomalous throughout):

* ``"fpr"`` — fixed threshold with false-positive rate at most ``alpha`` for each normal record;
* ``"fdr"`` — Benjamini–Hochberg over each batch: expected share of normal records among the
  flagged at most ``q`` (conformal p-values are PRDS, Bates et al. 2023);
* ``"budget"`` — the top ``k`` (or top fraction) of each batch, whatever their scores: no guarantee,
  a fixed review workload;
* ``"labels"`` — threshold chosen on a labelled *validation* split (max F1, or a precision or
  recall target); the guarantee is only as good as that split is representative.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> cal = Calibration.fit(rng.normal(size=999), strategy="fpr", level=0.01)
>>> result = cal.apply(np.array([0.0, 5.0]))
>>> result.flagged.tolist(), result.p_value.tolist()
([False, True], [0.467, 0.001])

References
----------
V. Vovk, A. Gammerman, G. Shafer. *Algorithmic Learning in a Random World*. Springer, 2005.
S. Bates, E. Candès, L. Lei, Y. Romano, M. Sesia. "Testing for outliers with conformal p-values".
The Annals of Statistics 51(1), 2023.
Y. Benjamini, Y. Hochberg. "Controlling the false discovery rate: a practical and powerful approach
to multiple testing". Journal of the Royal Statistical Society B 57(1), 1995.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
from sklearn.metrics import precision_recall_curve

STRATEGIES = ("fpr", "fdr", "budget", "labels")
OBJECTIVES = ("f1", "precision", "recall")
_EPS = 1e-9  # absorbs float error in (n + 1) * (1 - alpha) and fraction * m before ceil


class SmallBatchWarning(UserWarning):
    """A ``budget`` batch too small for its fraction: its one flagged record is more than the budget's share."""


def _scores(values, name: str, finite: bool = False) -> np.ndarray:
    """Validated 1-D float copy of ``values``: no NaN (and no infinity when ``finite``)."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if np.isnan(array).any() or (finite and not np.isfinite(array).all()):
        raise ValueError(f"{name} must be {'finite' if finite else 'free of NaN'}")
    return array


def conformal_p_values(calibration_scores, scores) -> np.ndarray:
    """Conformal p-values of ``scores`` against normal ``calibration_scores``.

    Parameters
    ----------
    calibration_scores : array-like of shape (n_cal,)
        Anomaly scores of held-out normal records (higher = more anomalous).
    scores : array-like of shape (m,)
        Anomaly scores to test.

    Returns
    -------
    ndarray of shape (m,)
        ``(1 + #{cal >= s}) / (n_cal + 1)`` in ``[1 / (n_cal + 1), 1]``; small = unlike the
        calibration records. For a normal record exchangeable with them, ``P(p <= a) <= a``.
    """
    cal = np.sort(_scores(calibration_scores, "calibration_scores", finite=True))
    at_least = len(cal) - np.searchsorted(cal, _scores(scores, "scores"), side="left")
    return (1.0 + at_least) / (len(cal) + 1.0)


class CalibratedScores(NamedTuple):
    """What :meth:`Calibration.apply` returns for a batch of ``m`` scores.

    Attributes
    ----------
    p_value : ndarray of shape (m,)
        Conformal p-values against the calibration scores.
    flagged : ndarray of bool, shape (m,)
        Records to report as anomalies (authoritative).
    threshold : float
        ``fpr``/``labels``: the fixed threshold, flagged exactly when ``score > threshold``.
        ``fdr``/``budget``: the batch's effective threshold, the smallest flagged score
        (``+inf`` when nothing is flagged).
    """

    p_value: np.ndarray
    flagged: np.ndarray
    threshold: float


@dataclass(frozen=True, eq=False)
class Calibration:
    """A fitted calibration rule: build with :meth:`fit` or :meth:`from_labels`, use with :meth:`apply`.

    Attributes
    ----------
    strategy : {"fpr", "fdr", "budget", "labels"}
    level : float or int or None
        ``fpr``: alpha, the false-positive rate per normal record. ``fdr``: q, the false discovery
        rate per batch. ``budget``: a fraction in (0, 1) of each batch (rounded up) or a whole
        count ``k >= 1``. ``labels``: the precision or recall target, ``None`` for max F1.
    calibration_scores : ndarray of shape (n_cal,)
        Sorted scores of normal records the p-values rest on (for ``labels``, the validation
        rows labelled normal).
    threshold : float or None
        The fixed threshold of ``fpr`` and ``labels`` (flag when ``score > threshold``); None otherwise.
    objective : {"f1", "precision", "recall"} or None
        What ``labels`` optimises; None for the other strategies.
    """

    strategy: str
    level: float | int | None
    calibration_scores: np.ndarray
    threshold: float | None = None
    objective: str | None = None

    @classmethod
    def fit(cls, calibration_scores, strategy: str = "fpr", level: float | int = 0.01) -> "Calibration":
        """Calibrate the ``fpr``, ``fdr`` or ``budget`` strategy.

        Parameters
        ----------
        calibration_scores : array-like of shape (n_cal,), n_cal >= 1
            Finite anomaly scores of held-out normal records (e.g. ``detector.calibration_scores_``).
        strategy : {"fpr", "fdr", "budget"}, default="fpr"
        level : float or int, default=0.01
            alpha in (0, 1), q in (0, 1), or the budget (fraction in (0, 1) or whole count >= 1).

        ``fpr`` takes the ``ceil((n_cal + 1)(1 - alpha))``-th smallest calibration score as the
        threshold, so a record is flagged exactly when its p-value is <= alpha, and a normal record
        exchangeable with the calibration set is flagged with probability at most alpha. With
        ``n_cal < 1 / alpha - 1`` no score qualifies: the threshold is ``+inf`` (nothing is
        flagged) and a warning says so.
        """
        if strategy not in STRATEGIES[:3]:
            hint = "; use Calibration.from_labels for 'labels'" if strategy == "labels" else ""
            raise ValueError(f"strategy must be one of {STRATEGIES[:3]}, got {strategy!r}{hint}")
        if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)):
            raise TypeError(f"level must be a number, got {level!r} ({type(level).__name__})")
        cal = np.sort(_scores(calibration_scores, "calibration_scores", finite=True))
        if len(cal) == 0:
            raise ValueError("calibration_scores is empty: hold out calibration rows (calibration_fraction > 0)")
        if strategy == "budget":
            if not (0 < level < 1 or (level >= 1 and float(level).is_integer())):
                raise ValueError(f"budget level must be a fraction in (0, 1) or a whole count >= 1, got {level}")
            return cls(strategy, int(level) if level >= 1 else float(level), cal)
        if not 0 < level < 1:
            raise ValueError(f"{strategy} level must be in (0, 1), got {level}")
        if strategy == "fdr":
            return cls(strategy, float(level), cal)
        rank = math.ceil((len(cal) + 1) * (1 - level) - _EPS)
        if rank > len(cal):
            calibration = cls(strategy, float(level), cal, threshold=math.inf)
            warnings.warn(f"{calibration.flags_nothing_because}; the threshold is +inf and nothing will be flagged",
                          stacklevel=2)
            return calibration
        return cls(strategy, float(level), cal, threshold=float(cal[rank - 1]))

    @property
    def flags_nothing_because(self) -> str | None:
        """Why an ``fpr`` calibration flags nothing (too few calibration scores for its alpha, so its
        threshold is +inf); None when it can flag."""
        if self.strategy != "fpr" or np.isfinite(self.threshold):
            return None
        return (f"calibration set too small for alpha={self.level:g}: n_cal={len(self.calibration_scores)} "
                f"< 1/alpha - 1 = {1 / self.level - 1:g}")

    @classmethod
    def from_labels(cls, scores, labels, objective: str = "f1", level: float | None = None) -> "Calibration":
        """Choose a fixed threshold on a labelled **validation** split (never the evaluation data).

        Parameters
        ----------
        scores : array-like of shape (n,)
            Validation anomaly scores.
        labels : array-like of shape (n,)
            1 (or True) for anomalies, 0 for normal records; both must occur.
        objective : {"f1", "precision", "recall"}, default="f1"
            ``"f1"``: the threshold maximising F1 (``level`` must be None). ``"precision"``: the
            lowest threshold whose precision reaches ``level`` (most recall at that precision).
            ``"recall"``: the highest threshold whose recall reaches ``level`` (fewest flags).
        level : float in (0, 1] or None
            The precision or recall target.

        The threshold is the highest validation score left unflagged (``-inf`` if all are
        flagged), so on the validation rows ``score > threshold`` reproduces the chosen cut.
        """
        s, y = _scores(scores, "scores", finite=True), np.asarray(labels)
        if y.shape != s.shape:
            raise ValueError(f"labels must have the same shape as scores {s.shape}, got {y.shape}")
        if not np.isin(y, (0, 1)).all():
            other = np.unique(y[~np.isin(y, (0, 1))])
            raise ValueError(f"labels must be 0/1 (1 = anomaly), got other values: {other[:5].tolist()}"
                             + (f" and {len(other) - 5:,} more" if len(other) > 5 else ""))
        if not (y == 1).any() or not (y == 0).any():
            raise ValueError(f"labels must hold at least one positive (anomaly) and one normal record, got "
                             f"{int((y == 1).sum())} positive(s) of {len(y)}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if (objective == "f1") != (level is None) or (level is not None and not 0 < level <= 1):
            raise ValueError(f"objective {objective!r} needs level {'None' if objective == 'f1' else 'in (0, 1]'}, got {level}")
        precision, recall, cuts = precision_recall_curve(y, s)  # flag when score >= cuts[i]
        precision, recall = precision[:-1], recall[:-1]
        if objective == "f1":
            f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                           where=precision + recall > 0)
            best = int(np.argmax(f1))
        else:
            reached = np.flatnonzero((precision if objective == "precision" else recall) >= level - _EPS)
            if len(reached) == 0:
                raise ValueError(f"no threshold reaches {objective} {level} on these validation scores "
                                 f"(best {objective}: {(precision if objective == 'precision' else recall).max():.3f})")
            best = int(reached[0] if objective == "precision" else reached[-1])
        below = s[s < cuts[best]]
        threshold = float(below.max()) if len(below) else -math.inf
        return cls("labels", level, np.sort(s[y == 0]), threshold=threshold, objective=objective)

    def apply(self, scores) -> CalibratedScores:
        """Flag one batch of records.

        Parameters
        ----------
        scores : array-like of shape (m,)
            Anomaly scores of the batch (no NaN).

        Returns
        -------
        CalibratedScores
            p-values, flags and threshold, each as described there. ``fdr`` and ``budget`` depend
            on the whole batch; ``fdr`` warns when the calibration set is too small for a record to
            be flagged on its own (``n_cal + 1 < m / q``).
        """
        s = _scores(scores, "scores")
        batch = ChunkedBatch(self)
        p = batch.add(s)
        rule = batch.finish(lambda: [s])
        flagged = rule.flags(s)
        return CalibratedScores(p, flagged, rule.threshold)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (infinite thresholds as the strings "inf" / "-inf")."""
        threshold = self.threshold
        if threshold is not None and not math.isfinite(threshold):
            threshold = "inf" if threshold > 0 else "-inf"
        return {"strategy": self.strategy, "level": self.level, "objective": self.objective,
                "threshold": threshold, "calibration_scores": [float(x) for x in self.calibration_scores]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        """Inverse of :meth:`to_dict`."""
        threshold = None if data.get("threshold") is None else float(data["threshold"])
        return cls(data["strategy"], data["level"], np.asarray(data["calibration_scores"], dtype=float),
                   threshold=threshold, objective=data.get("objective"))


class ChunkedBatch:
    """:meth:`Calibration.apply` for one batch that arrives in chunks, in memory that does not grow
    with the batch: the same p-values and flags as applying it to the whole batch at once.

    Call :meth:`add` on each chunk in row order (it returns the chunk's p-values), then
    :meth:`finish` once; the :class:`FlagRule` it returns flags the chunks, again in row order.
    ``fdr`` needs only how many records have each p-value (conformal p-values take ``n_cal + 1``
    values), so Benjamini–Hochberg is exact from counts. ``budget`` cannot know its top ``k``
    before the batch ends: :meth:`finish` re-reads the scores (``rescan``) keeping the ``k``
    largest, so it holds ``k`` scores, not the batch.

    Example
    -------
    >>> import numpy as np
    >>> batch = ChunkedBatch(Calibration.fit(np.arange(99.0), "budget", 2))
    >>> chunks = [np.array([5.0, 200.0]), np.array([300.0, 7.0])]
    >>> p = [batch.add(c) for c in chunks]
    >>> rule = batch.finish(lambda: chunks)
    >>> [rule.flags(c).tolist() for c in chunks], rule.threshold
    ([[False, True], [True, False]], 200.0)
    """

    def __init__(self, calibration: Calibration):
        self.calibration = calibration
        self.rows = 0
        self._at_least = np.zeros(len(calibration.calibration_scores) + 1, dtype=np.int64)  # records per p-value

    def add(self, scores) -> np.ndarray:
        """The conformal p-values of the next chunk's ``scores``."""
        cal = self.calibration.calibration_scores
        p = conformal_p_values(cal, scores)
        self._at_least += np.bincount(np.rint(p * (len(cal) + 1)).astype(np.int64) - 1, minlength=len(cal) + 1)
        self.rows += len(p)
        return p

    def finish(self, rescan: Callable[[], Iterable[np.ndarray]]) -> "FlagRule":
        """The rule that flags this batch; ``rescan()`` yields the scores again, chunk by chunk
        (read only for ``budget``)."""
        cal, m = self.calibration, self.rows
        if cal.strategy in ("fpr", "labels"):
            return FlagRule(float(cal.threshold), fixed=True)
        if cal.strategy == "fdr":
            return FlagRule(self._bh_cutoff(), fixed=False)
        k = min(cal.level if cal.level >= 1 else math.ceil(cal.level * m - _EPS), m)
        if 0 < cal.level * m < 1 - _EPS:
            warnings.warn(
                f"a budget of {cal.level:.4g} of a batch of {m} record(s) rounds up to 1 flagged: the budget takes the "
                f"top of each batch whatever its size, so a batch under {math.ceil(1 / cal.level - _EPS)} records has "
                f"more than its share flagged, and a record scored alone is always flagged; score whole batches, "
                f"or calibrate with strategy 'fpr' to score records one at a time", SmallBatchWarning, stacklevel=3)
        if k == 0:
            return FlagRule(math.inf, fixed=False)
        top = np.empty(0)
        for chunk in rescan():
            top = np.concatenate([top, np.asarray(chunk, dtype=float)])
            if len(top) > k:
                top = np.partition(top, len(top) - k)[-k:]
        cut = float(top.min())
        return FlagRule(cut, fixed=False, ties_at=cut, ties_left=k - int((top > cut).sum()))  # ties go to earlier rows

    def _bh_cutoff(self) -> float:
        """Benjamini–Hochberg's step-up rule as a score cut: it flags ``p <= p*``, the largest p-value
        with ``p * m / #{p' <= p} <= q``, and ``p <= (j + 1) / (n_cal + 1)`` means at most ``j``
        calibration scores are ``>= score``, i.e. ``score >`` the ``(j + 1)``-th largest of them."""
        q, m, n_cal = self.calibration.level, self.rows, len(self.calibration.calibration_scores)
        if m and n_cal + 1 < m / q:
            warnings.warn(
                f"calibration set too small for FDR q={q} on a batch of m={m}: with n_cal={n_cal} "
                f"the smallest p-value 1/(n_cal+1)={1 / (n_cal + 1):.4g} exceeds q/m={q / m:.4g}, so "
                f"no record can be flagged on its own, only groups of >= {math.ceil(m / (q * (n_cal + 1)))} "
                f"records above every calibration score (need n_cal >= m/q - 1 = {m / q - 1:g})",
                stacklevel=3)
        levels = np.arange(1, n_cal + 2) / (n_cal + 1.0)
        at_most = np.cumsum(self._at_least)
        passing = np.flatnonzero((self._at_least > 0) & (levels * (m / np.maximum(at_most, 1)) <= q))
        if not len(passing):
            return math.inf
        j = int(passing[-1])  # p* = (j + 1) / (n_cal + 1)
        return -math.inf if j == n_cal else float(self.calibration.calibration_scores[n_cal - j - 1])


class FlagRule:
    """Flags chunks of one batch in row order: ``score > above``, plus the first ``ties_left`` scores
    equal to ``ties_at`` (``budget``). ``threshold`` is the fixed threshold for ``fpr``/``labels``;
    for the batch strategies the smallest score flagged so far (``+inf`` when none), as
    :class:`CalibratedScores` states it."""

    def __init__(self, above: float, *, fixed: bool, ties_at: float | None = None, ties_left: int = 0):
        self.above, self.fixed, self.ties_at, self.ties_left = above, fixed, ties_at, ties_left
        self.threshold = above if fixed else math.inf

    def flags(self, scores) -> np.ndarray:
        s = np.asarray(scores, dtype=float)
        flagged = s > self.above
        if self.ties_left > 0:
            tied = np.flatnonzero(s == self.ties_at)[: self.ties_left]
            flagged[tied] = True
            self.ties_left -= len(tied)
        if not self.fixed and flagged.any():
            self.threshold = min(self.threshold, float(s[flagged].min()))
        return flagged
