"""Calibrated thresholds (maskae.calibration): the stated guarantees, checked statistically.

Scores are drawn directly (standard normal = normal records, higher = more anomalous): numpy only,
no detector is fitted. Every statistical test uses a fixed seed and a tolerance derived from the
sampling distribution it checks, so a correct implementation passes and an off-by-one fails.
"""

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from maskae.calibration import Calibration, ChunkedBatch, SmallBatchWarning, conformal_p_values


def no_warning(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


# ---------------------------------------------------------------- fpr
def test_fpr_threshold_controls_false_positive_rate_on_exchangeable_data():
    rng = np.random.default_rng(0)
    alpha, n_cal, m, reps = 0.05, 500, 1000, 1000
    realised = np.array([
        Calibration.fit(rng.normal(size=n_cal), "fpr", alpha).apply(rng.normal(size=m)).flagged.mean()
        for _ in range(reps)
    ])
    # Exact law: the threshold (k-th smallest calibration score) is exceeded by a fresh normal with
    # probability pi ~ Beta(n+1-k, k); the realised FPR is Binomial(m, pi) / m. Its variance is
    # Var(pi) + E[pi (1 - pi)] / m: the calibration draw dominates, the binomial part alone is too narrow.
    k = math.ceil((n_cal + 1) * (1 - alpha))
    a, b = n_cal + 1 - k, k
    mean_pi = a / (a + b)
    var_pi = a * b / ((a + b) ** 2 * (a + b + 1))
    se = math.sqrt((var_pi + (mean_pi * (1 - mean_pi) - var_pi) / m) / reps)
    assert abs(realised.mean() - mean_pi) <= 3.5 * se  # an off-by-one in k moves the mean by ~5 se
    # the guarantee: alpha - 1/(n+1) <= E[FPR] <= alpha
    assert alpha - 1 / (n_cal + 1) - 3 * se <= realised.mean() <= alpha + 3 * se


def test_fpr_threshold_is_the_conformal_quantile_and_matches_p_values():
    cal = np.random.default_rng(1).normal(size=19)
    assert Calibration.fit(cal, "fpr", 0.1).threshold == np.sort(cal)[17]  # ceil(20 * 0.9) = 18th smallest
    assert no_warning(Calibration.fit, cal, "fpr", 0.05).threshold == cal.max()  # ceil(20 * 0.95) = 19
    # 1000 * (1 - 0.059) is 941.0000000000001 in floating point; the rank is still 941
    assert Calibration.fit(np.arange(999.0), "fpr", 0.059).threshold == 940.0
    # with ties (integer scores) too: flagged exactly when the p-value is <= alpha
    rng = np.random.default_rng(2)
    cal, scores = rng.integers(0, 10, size=200), rng.integers(0, 12, size=500)
    for alpha in (0.01, 0.05, 0.1, 0.3):
        result = Calibration.fit(cal, "fpr", alpha).apply(scores)
        np.testing.assert_array_equal(result.flagged, result.p_value <= alpha)


def test_fpr_warns_when_calibration_set_is_too_small():
    with pytest.warns(UserWarning, match=r"too small for alpha=0.05.*n_cal=18"):
        cal = Calibration.fit(np.arange(18.0), "fpr", 0.05)  # needs n_cal >= 1/0.05 - 1 = 19
    assert cal.threshold == math.inf and not cal.apply(np.array([1e9])).flagged.any()
    no_warning(Calibration.fit, np.arange(19.0), "fpr", 0.05)


# ---------------------------------------------------------------- p-values
def test_p_values_of_normal_records_are_uniform():
    rng = np.random.default_rng(3)
    # Marginally (a fresh calibration set per record) p is exactly uniform on {1..n+1}/(n+1);
    # subtracting U/(n+1) makes it exactly Uniform(0, 1). A small n_cal keeps the test sharp.
    n_cal, reps = 19, 3000
    p = np.array([conformal_p_values(rng.normal(size=n_cal), rng.normal(size=1))[0] for _ in range(reps)])
    assert set(np.round(p * (n_cal + 1))) <= set(range(1, n_cal + 2))
    assert stats.kstest(p - rng.uniform(size=reps) / (n_cal + 1), "uniform").pvalue > 0.01
    # Given one large calibration set the p-values of a batch are nearly uniform (grid 1/5001).
    p = conformal_p_values(rng.normal(size=5000), rng.normal(size=2000))
    assert stats.kstest(p, "uniform").pvalue > 0.01
    # anomalies get small p-values, bounded below by 1/(n_cal+1)
    far = conformal_p_values(rng.normal(size=5000), np.full(10, 10.0))
    np.testing.assert_allclose(far, 1 / 5001)


# ---------------------------------------------------------------- fdr
def test_bh_on_pure_normal_batches_rarely_flags_anything():
    rng = np.random.default_rng(4)
    q, n_cal, m, reps = 0.1, 999, 100, 1000
    flags = np.array([
        Calibration.fit(rng.normal(size=n_cal), "fdr", q).apply(rng.normal(size=m)).flagged.sum()
        for _ in range(reps)
    ])
    # under the global null every flag is false, so FDR = P(any flag) <= q
    assert (flags > 0).mean() <= q + 3 * math.sqrt(q * (1 - q) / reps)
    assert flags.mean() < 1


def test_bh_finds_planted_anomalies_with_controlled_fdr():
    rng = np.random.default_rng(5)
    q, n_cal, m0, m1, reps = 0.1, 1999, 180, 20, 300
    truth = np.r_[np.zeros(m0, bool), np.ones(m1, bool)]
    fdp, recall = [], []
    for _ in range(reps):
        scores = np.r_[rng.normal(size=m0), rng.normal(4.0, 1.0, size=m1)]
        flagged = Calibration.fit(rng.normal(size=n_cal), "fdr", q).apply(scores).flagged
        fdp.append((flagged & ~truth).sum() / max(flagged.sum(), 1))
        recall.append(flagged[truth].mean())
    fdp = np.array(fdp)
    bound = q * m0 / (m0 + m1)  # BH with PRDS (conformal) p-values: FDR <= q m0 / m
    assert fdp.mean() <= bound + 3 * fdp.std() / math.sqrt(reps)
    assert fdp.mean() > bound / 2  # BH spends its error budget (a Bonferroni-like rule would not)
    assert np.mean(recall) >= 0.9


def test_bh_matches_the_step_up_rule():
    rng = np.random.default_rng(6)
    for _ in range(20):
        cal = rng.normal(size=2000)
        scores = np.r_[rng.normal(size=40), rng.normal(3.0, 1.0, size=10)]
        result = Calibration.fit(cal, "fdr", 0.2).apply(scores)
        p = np.sort(result.p_value)
        passing = np.flatnonzero(p <= np.arange(1, len(p) + 1) * 0.2 / len(p))
        expected = result.p_value <= p[passing[-1]] if len(passing) else np.zeros(len(p), bool)
        np.testing.assert_array_equal(result.flagged, expected)
        assert result.threshold == (scores[expected].min() if expected.any() else math.inf)


def test_fdr_warns_only_when_calibration_set_is_too_small_for_the_batch():
    batch = np.random.default_rng(7).normal(size=100)
    with pytest.warns(UserWarning, match=r"q=0.1 on a batch of m=100.*n_cal=998"):
        Calibration.fit(np.arange(998.0), "fdr", 0.1).apply(batch)  # needs n_cal + 1 >= m / q = 1000
    no_warning(Calibration.fit(np.arange(999.0), "fdr", 0.1).apply, batch)


# ---------------------------------------------------------------- budget
def test_a_budget_fraction_warns_on_a_batch_too_small_for_it():
    """A record scored alone (one-row pyfunc calls) is its batch's top 2 %: flagged, which the warning says."""
    budget = Calibration.fit(np.arange(99.0), "budget", 0.02)
    with pytest.warns(SmallBatchWarning, match="under 50 records"):
        assert budget.apply(np.array([0.0])).flagged.all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert budget.apply(np.arange(50.0)).flagged.sum() == 1
        Calibration.fit(np.arange(99.0), "budget", 3).apply(np.array([0.0]))  # a count, not a share


def test_budget_flags_exactly_the_top_k_or_top_fraction():
    rng = np.random.default_rng(8)
    cal = rng.normal(size=100)
    scores = rng.normal(size=50)
    result = Calibration.fit(cal, "budget", 5).apply(scores)
    assert result.flagged.sum() == 5
    assert set(np.flatnonzero(result.flagged)) == set(np.argsort(-scores)[:5])
    assert result.threshold == np.sort(scores)[-5]
    assert Calibration.fit(cal, "budget", 0.1).apply(rng.normal(size=31)).flagged.sum() == 4  # ceil(3.1)
    assert Calibration.fit(cal, "budget", 0.07).apply(rng.normal(size=100)).flagged.sum() == 7  # 0.07*100 = 7.000000000000001
    assert Calibration.fit(cal, "budget", 10).apply(scores[:3]).flagged.all()
    ties = Calibration.fit(cal, "budget", 2).apply(np.array([1.0, 2.0, 2.0, 2.0, 0.0]))
    assert ties.flagged.tolist() == [False, True, True, False, False]  # ties go to the earlier rows
    scores, k = rng.integers(0, 3, size=200).astype(float), 50  # many ties across the cut
    cut = np.sort(scores)[-k]
    expected = scores > cut
    expected[np.flatnonzero(scores == cut)[: k - expected.sum()]] = True
    np.testing.assert_array_equal(Calibration.fit(cal, "budget", k).apply(scores).flagged, expected)
    with pytest.raises(ValueError, match="whole count"):
        Calibration.fit(cal, "budget", 2.5)


# ---------------------------------------------------------------- labels
def labelled(seed: int, n: int = 1000):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.1).astype(int)
    return rng.normal(2.5 * y, 1.0), y


# plain-numpy metrics: sklearn's are ~1 ms a call, too slow for the brute-force checks below
def f1_score(y, flagged):
    return 2 * (flagged & (y == 1)).sum() / (flagged.sum() + (y == 1).sum())


def precision_score(y, flagged):
    return (flagged & (y == 1)).sum() / flagged.sum() if flagged.any() else 0.0


def recall_score(y, flagged):
    return (flagged & (y == 1)).sum() / (y == 1).sum()


def candidates(scores):
    return np.r_[-np.inf, np.unique(scores)]  # every distinct cut "score > t"


def test_labels_f1_threshold_is_the_best_on_the_validation_split():
    scores, y = labelled(9)
    val, test = slice(0, 500), slice(500, None)
    cal = Calibration.from_labels(scores[val], y[val])
    f1 = [f1_score(y[val], scores[val] > t) for t in candidates(scores[val])]
    assert f1_score(y[val], cal.apply(scores[val]).flagged) == pytest.approx(max(f1))
    assert f1_score(y[test], cal.apply(scores[test]).flagged) > 0.5  # and it carries over to unseen rows


def test_labels_threshold_depends_only_on_the_validation_rows_given():
    scores, y = labelled(10)
    val = np.arange(500)
    chosen = Calibration.from_labels(scores[val], y[val]).threshold
    y_changed = y.copy()
    y_changed[500:] = 1 - y_changed[500:]  # relabel every evaluation row
    assert Calibration.from_labels(scores[val], y_changed[val]).threshold == chosen
    y_changed[val[y[val] == 1][::2]] = 0  # relabelling validation rows does move it: the test can fail
    assert Calibration.from_labels(scores[val], y_changed[val]).threshold != chosen


def test_labels_precision_and_recall_targets():
    scores, y = labelled(11)
    s, t = scores[:500], y[:500]
    cal = Calibration.from_labels(s, t, objective="precision", level=0.9)
    assert precision_score(t, cal.apply(s).flagged) >= 0.9
    lower = [c for c in candidates(s) if c < cal.threshold]  # flagging more never keeps precision 0.9
    assert all(precision_score(t, s > c) < 0.9 for c in lower)
    cal = Calibration.from_labels(s, t, objective="recall", level=0.8)
    assert recall_score(t, cal.apply(s).flagged) >= 0.8
    assert all(recall_score(t, s > c) < 0.8 for c in candidates(s) if c > cal.threshold)


def test_labels_errors_are_clear():
    with pytest.raises(ValueError, match="positive"):
        Calibration.from_labels([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(ValueError, match="no threshold reaches precision 1.0"):
        Calibration.from_labels([0.1, 0.5, 0.9], [1, 1, 0], objective="precision", level=1.0)
    with pytest.raises(ValueError, match="level"):
        Calibration.from_labels([0.1, 0.9], [0, 1], objective="f1", level=0.5)
    with pytest.raises(ValueError, match="from_labels"):
        Calibration.fit([0.1, 0.9], strategy="labels")
    with pytest.raises(ValueError, match=r"labels must be 0/1 \(1 = anomaly\), got other values: \[2\]"):
        Calibration.from_labels([0.1, 0.5, 0.9], [0, 1, 2])  # not "the same shape", which it has
    with pytest.raises(ValueError, match=r"same shape as scores \(3,\), got \(2,\)"):
        Calibration.from_labels([0.1, 0.5, 0.9], [0, 1])
    with pytest.raises(TypeError, match=r"level must be a number, got '0.1' \(str\)"):
        Calibration.fit([0.1, 0.9], level="0.1")


# ---------------------------------------------------------------- persistence
def test_to_dict_round_trip_gives_identical_flags():
    rng = np.random.default_rng(12)
    cal_scores, batch = rng.normal(size=300), np.r_[rng.normal(size=200), rng.normal(3, 1, size=20)]
    scores, y = labelled(13, 400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fpr at alpha=0.001 on 300 scores: infinite threshold, on purpose
        calibrations = [Calibration.fit(cal_scores, "fpr", a) for a in (0.05, 0.001)] + [
            Calibration.fit(cal_scores, "fdr", 0.1), Calibration.fit(cal_scores, "budget", 0.05),
            Calibration.fit(cal_scores, "budget", 7), Calibration.from_labels(scores, y),
            Calibration.from_labels(scores, y, objective="recall", level=0.7)]
        for cal in calibrations:
            again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict(), allow_nan=False)))
            np.testing.assert_array_equal(again.calibration_scores, cal.calibration_scores)
            a, b = cal.apply(batch), again.apply(batch)
            np.testing.assert_array_equal(a.flagged, b.flagged)
            np.testing.assert_array_equal(a.p_value, b.p_value)
            assert (a.threshold, again.strategy, again.level, again.objective) == (
                b.threshold, cal.strategy, cal.level, cal.objective)


# ---------------------------------------------------------------- a batch in chunks
@pytest.mark.parametrize("strategy,level", [("fpr", 0.05), ("fdr", 0.1), ("budget", 7), ("budget", 0.05)])
def test_a_batch_in_chunks_is_flagged_as_the_whole_batch(strategy, level):
    rng = np.random.default_rng(11)
    cal = Calibration.fit(rng.normal(size=4000), strategy, level)
    scores = np.r_[rng.normal(size=300), rng.normal(3.0, 1.0, size=20), np.full(10, 2.0)]  # ties at 2.0
    rng.shuffle(scores)
    whole = cal.apply(scores)
    chunks = np.split(scores, np.sort(rng.choice(np.arange(1, len(scores)), size=6, replace=False)))
    batch = ChunkedBatch(cal)
    p = np.concatenate([batch.add(c) for c in chunks])
    rule = batch.finish(lambda: iter(chunks))
    flagged = np.concatenate([rule.flags(c) for c in chunks])
    np.testing.assert_array_equal(p, whole.p_value)
    np.testing.assert_array_equal(flagged, whole.flagged)
    assert flagged.any() and rule.threshold == whole.threshold
    if strategy == "fdr":  # and the whole batch agrees with scipy's Benjamini–Hochberg
        np.testing.assert_array_equal(whole.flagged, stats.false_discovery_control(whole.p_value) <= level)
