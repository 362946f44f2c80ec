"""Tail evidence: each cell's two-sided empirical tail probability in its own column."""

import numpy as np

from maskae.tails import ColumnTails


def exact_evidence(train: np.ndarray, points: np.ndarray) -> np.ndarray:
    n = len(train)
    left = (train[None, :, :] <= points[:, None, :]).mean(axis=1)
    right = (train[None, :, :] >= points[:, None, :]).mean(axis=1)
    p = np.maximum(np.minimum(left, right), 1 / (n + 1))
    return np.exp(-np.log(p).mean(axis=1))


def test_tail_evidence_follows_the_empirical_distribution():
    rng = np.random.default_rng(0)
    train = rng.standard_t(3, size=(400, 3))
    points = rng.standard_t(3, size=(60, 3)) * 1.5
    tails = ColumnTails.fit(train)
    np.testing.assert_allclose(tails.evidence(points), exact_evidence(train, points), rtol=0.1)


def test_a_value_beyond_the_training_range_is_rarest_whatever_the_column_tail():
    rng = np.random.default_rng(1)
    train = np.column_stack([rng.normal(size=500), rng.lognormal(0, 3, size=500)])  # light and very heavy tails
    tails = ColumnTails.fit(train)
    median = np.median(train, axis=0)
    beyond_light = tails.evidence(np.array([[train[:, 0].max() + 1, median[1]]]))
    heavy_but_seen = tails.evidence(np.array([[median[0], np.quantile(train[:, 1], 0.99)]]))
    assert beyond_light > 2 * heavy_but_seen  # a squared z-score would rank these the other way round


def test_missing_cells_neither_train_nor_count():
    train = np.column_stack([np.arange(100.0), np.arange(100.0)])
    missing = np.zeros_like(train, dtype=bool)
    missing[:50, 1] = True  # half of column 1 unobserved: its distribution is that of 50..99
    tails = ColumnTails.fit(train, missing)
    point = np.array([[49.5, 0.0]])
    np.testing.assert_allclose(tails.evidence(point, np.array([[False, True]])), 2.0, rtol=0.05)  # the median of column 0
    assert tails.evidence(point) > 10  # observed, 0 lies below every training value of column 1


def test_each_cell_reads_the_share_of_training_values_at_least_as_far_out_on_its_side():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(1000, 2))
    tails = ColumnTails.fit(train)
    points = np.array([[0.0, 1.0], [-1.5, train[:, 1].max() + 1], [2.0, np.nan]])
    missing = np.isnan(points)
    shares = tails.tail_shares(points, missing)
    exact = np.minimum((train[None] <= points[:, None]).mean(axis=1), (train[None] >= points[:, None]).mean(axis=1))
    np.testing.assert_allclose(shares[[0, 0, 1, 2], [0, 1, 0, 0]], exact[[0, 0, 1, 2], [0, 1, 0, 0]], rtol=0.12)
    assert abs(shares[1, 1] - 1 / 1001) < 1e-12  # beyond the training range: as rare as 1 / (n + 1)
    assert np.isnan(shares[2, 1])  # missing
    # The row's evidence is the inverse geometric mean of its observed cells' shares.
    np.testing.assert_allclose(tails.evidence(points, missing), np.exp(np.nanmean(-np.log(shares), axis=1)))


def test_a_sparsely_observed_column_is_as_sure_of_its_tails_as_its_own_values_allow():
    train = np.column_stack([np.arange(1000.0), np.arange(1000.0)])
    missing = np.zeros_like(train, dtype=bool)
    missing[10:, 1] = True  # column 1 observed in 10 rows
    tails = ColumnTails.fit(train, missing)
    beyond = tails.tail_shares(np.array([[-1.0, -1.0]]))[0]
    np.testing.assert_allclose(beyond, [1 / 1001, 1 / 11])  # beyond 1,000 values, and beyond 10
    assert tails.tail_shares(np.array([[0.0, 5.0]]), np.array([[True, False]]))[0, 1] > 0.3  # mid-range
