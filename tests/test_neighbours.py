"""Neighbour evidence: samples kept as one pool of rows, distances equal to the direct definition."""

import numpy as np
import pytest

from maskae import neighbours
from maskae.neighbours import NeighbourSamples


@pytest.mark.parametrize("sizes", [(4, 16), (16,)])
@pytest.mark.parametrize("copied", [True, False], ids=["rows-copied", "picked-from-pool"])
@pytest.mark.parametrize("batch_size, block_bytes", [(3, None), (None, 1), (None, None)],
                         ids=["3-per-chunk", "by-memory-1-per-chunk", "by-memory-all-in-one"])
def test_distances_match_the_nearest_row_of_each_sample_and_skip_a_rows_own_copy(sizes, copied, batch_size,
                                                                                 block_bytes, monkeypatch):
    monkeypatch.setattr(neighbours, "COPIED_BYTES", 2**30 if copied else 0)
    if block_bytes is not None:
        monkeypatch.setattr(neighbours, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(0)
    train = rng.normal(size=(60, 3)).astype(np.float32)
    samples = NeighbourSamples.draw(train, np.arange(60), sizes=sizes, n_samples=5, rng=rng)
    assert len(np.unique(samples.pool_ids)) == len(samples.pool)  # each training row held once
    points, ids = train[:7], np.arange(7)  # training rows: each is found in the pool by its values
    got = samples.distances(points, batch_size=batch_size)
    for size, positions in zip(sizes, samples.samples):
        assert positions.shape == (5, size)
        expected = []
        for point, own in zip(points, ids):
            per_sample = []
            for sample in positions:
                rows = samples.pool_ids[sample]
                d = np.linalg.norm(train[rows] - point, axis=1)
                per_sample.append(d[rows != own].min())
            expected.append(np.mean(per_sample))
        np.testing.assert_allclose(got[f"neighbours@{size}"], expected, rtol=1e-4, atol=1e-5)


def test_samples_are_drawn_only_from_the_candidates():
    rng = np.random.default_rng(1)
    space = rng.normal(size=(50, 2)).astype(np.float32)
    candidates = np.arange(0, 50, 2)
    samples = NeighbourSamples.draw(space, candidates, sizes=(8,), n_samples=10, rng=rng)
    assert set(samples.pool_ids) <= set(candidates)
    np.testing.assert_array_equal(samples.pool, space[samples.pool_ids])


def test_of_identical_training_rows_the_first_is_out_of_reach_and_the_copies_stay():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(40, 3)).astype(np.float32)
    train[30] = train[5]  # a duplicated row
    samples = NeighbourSamples.draw(train, np.arange(40), sizes=(39,), n_samples=4, rng=rng)
    got = samples.distances(np.stack([train[5], train[30], train[5] + 10]))["neighbours@39"]
    expected = []
    for sample in samples.samples[0]:
        rows = samples.pool_ids[sample]
        expected.append(np.linalg.norm(train[rows[rows != 5]] - train[5], axis=1).min())  # row 30 at 0 if held
    np.testing.assert_allclose(got[:2], np.mean(expected), atol=1e-3)  # both copies: the same score
    assert got[2] > 10


def test_no_points_give_empty_distances():
    rng = np.random.default_rng(3)
    samples = NeighbourSamples.draw(rng.normal(size=(30, 2)).astype(np.float32), np.arange(30), sizes=(4, 8),
                                    n_samples=3, rng=rng)
    got = samples.distances(np.zeros((0, 2), np.float32))
    assert {k: v.shape for k, v in got.items()} == {"neighbours@4": (0,), "neighbours@8": (0,)}


def test_distances_are_float32_whatever_torch_s_default_dtype():
    import torch

    rng = np.random.default_rng(4)
    train = rng.normal(size=(30, 2)).astype(np.float32)
    samples = NeighbourSamples.draw(train, np.arange(30), sizes=(4,), n_samples=3, rng=rng)
    expected = samples.distances(train[:5])["neighbours@4"]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # a user's session may have set it: buffers must not follow it
    try:
        np.testing.assert_array_equal(samples.distances(train[:5])["neighbours@4"], expected)
    finally:
        torch.set_default_dtype(default)


@pytest.mark.parametrize("copied", [True, False], ids=["rows-copied", "picked-from-pool"])
def test_nearest_gives_the_k_nearest_reference_rows_never_a_points_own(copied, monkeypatch):
    monkeypatch.setattr(neighbours, "COPIED_BYTES", 2**30 if copied else 0)
    rng = np.random.default_rng(5)
    train = rng.normal(size=(80, 3)).astype(np.float32)
    reference = np.sort(rng.choice(80, 30, replace=False))
    samples = NeighbourSamples.draw(train, np.arange(80), sizes=(8,), n_samples=3, rng=rng).with_reference(train, reference)
    np.testing.assert_array_equal(samples.pool[samples.reference], train[reference])
    before = NeighbourSamples.draw(train, np.arange(80), sizes=(8,), n_samples=3, rng=np.random.default_rng(6))
    np.testing.assert_allclose(before.with_reference(train, reference).distances(train)["neighbours@8"],
                               before.distances(train)["neighbours@8"], rtol=1e-5)  # the samples are kept
    distance, position = samples.nearest(train, 4, batch_size=7)
    for row in range(80):
        d = np.linalg.norm(train[reference] - train[row], axis=1)
        d[reference == row] = np.inf  # a training row is not its own neighbour
        order = np.argsort(d)[:4]
        np.testing.assert_array_equal(position[row], order)
        np.testing.assert_allclose(distance[row], d[order], rtol=1e-4, atol=1e-5)
