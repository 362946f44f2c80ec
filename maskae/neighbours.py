"""Neighbourhood evidence: distance from a record to random small samples of the training records.

Reconstruction error sees broken relationships between features, but anomalies that are
internally consistent yet unlike any training record — including dense clusters of them — are
better seen by distance. Plain k-nearest-neighbour distance to *all* training records fails when
the training data hold unlabelled anomalies: they become each other's neighbours. Distance to the
nearest member of a *small random sample* does not (a small sample rarely holds an anomaly), which
is why iForest subsamples 256 rows; averaging over many samples makes it stable, and samples of
several sizes trade robustness (small) against resolution (large). See Sugiyama & Borgwardt,
"Rapid distance-based outlier detection via sampling" (NeurIPS 2013) and Pang et al., "LeSiNN"
(ICDM 2015).

A training row is never its own neighbour, and neither is a record identical to one: scoring the
training table again gives its training scores (``fit(X)`` then ``anomaly_score(X)``, as one
screens a batch that is also the training data), where a record would otherwise find itself in
the samples that hold it, at distance 0. Identical training rows count as one to this rule: a
record, training row or not, puts the lowest-numbered of the pool's training rows identical to it
out of reach (the other copies stay, at distance 0), so duplicated training rows get their
training scores too. The pool holds the nearest term's reference rows as well as the samples' (a
copy among the reference rows can be the first), so the detector measures its training rows once
more after adding them.

The samples overlap, so the training rows they hold are kept once (the *pool*) and each sample is
a set of positions in it: distances to the pool are computed once per record, and a saved model
holds each row once (an image model would otherwise store every image dozens of times).

Example
-------
>>> import numpy as np
>>> train = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
>>> samples = NeighbourSamples.draw(train, np.arange(500), sizes=(16,), n_samples=20, rng=np.random.default_rng(0))
>>> far, near = samples.distances(np.array([[8.0, 8.0], [0.0, 0.0]], np.float32))["neighbours@16"]
>>> bool(far > 5 * near)
True
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

COPIED_BYTES = 64 * 2**20  # up to this, each sample's rows are copied out of the pool to score
# One chunk of points and its distance blocks take up to about this much: large chunks spread each
# chunk's fixed costs (with torch's threads sleeping between jobs, a wake-up per product) thin.
BLOCK_BYTES = 64 * 2**20


def draw_samples(n_rows: int, size: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_samples, size) row indices, each sample drawn without replacement."""
    # Leave a row outside, so that samples differ; but keep two, so that a row a sample holds has
    # a neighbour in it other than itself (a sample of one row would put it out of reach: inf).
    size = min(size, max(n_rows - 1, 2))
    return np.stack([rng.choice(n_rows, size, replace=False) for _ in range(n_samples)])


@dataclass
class NeighbourSamples:
    """Random samples of training rows at several sizes, for :meth:`distances`; and, once
    :meth:`with_reference` has added it, a larger reference sample for :meth:`nearest`."""

    sizes: tuple[int, ...]  # the requested sizes: the names of the evidence terms
    pool: np.ndarray  # (n_pool, dim) float32, every training row some sample holds, once
    pool_ids: np.ndarray  # (n_pool,) int64, the training row number of each pool row
    samples: list[np.ndarray]  # per size, (n_samples, size) int64 positions in ``pool``
    reference: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # positions in ``pool``
    # Per reference row, the distance its suspicion is worth (see ``nearest`` in maskae.detector):
    # a record among the ``k`` nearest of a suspect row is taken to be at least that far from normal.
    suspect: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    k: int = 0

    @classmethod
    def draw(cls, space: np.ndarray, candidates: np.ndarray, sizes: tuple[int, ...], n_samples: int,
             rng: np.random.Generator) -> "NeighbourSamples":
        """Draw ``n_samples`` samples of each size from the training rows ``candidates`` of ``space``."""
        drawn = [candidates[draw_samples(len(candidates), size, n_samples, rng)] for size in sizes]
        ids, positions = np.unique(np.concatenate([d.ravel() for d in drawn]), return_inverse=True)
        bounds = np.cumsum([d.size for d in drawn])[:-1]
        samples = [p.reshape(d.shape) for p, d in zip(np.split(positions, bounds), drawn)]
        return cls(tuple(sizes), np.ascontiguousarray(space[ids], dtype=np.float32), ids.astype(np.int64), samples)

    def with_reference(self, space: np.ndarray, rows: np.ndarray) -> "NeighbourSamples":
        """These samples plus the training rows ``rows`` of ``space`` as the reference sample
        (no suspects yet); the pool takes the rows the samples do not hold already."""
        ids = np.union1d(self.pool_ids, rows).astype(np.int64)  # sorted: pool rows stay in row-number order
        remap = np.searchsorted(ids, self.pool_ids)
        return NeighbourSamples(self.sizes, np.ascontiguousarray(space[ids], dtype=np.float32), ids,
                                [remap[s] for s in self.samples], np.searchsorted(ids, rows))

    def distances(self, points: np.ndarray, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """``{"neighbours@<size>": (n,)}``: per size, the mean over its samples of the distance from
        each point to the sample's nearest row, that row not being the point itself (a point
        identical to pool rows is taken to be the first of them). With suspects fitted, also
        ``"nearest"``: the distance to the nearest reference row, or, if more, the largest suspect
        distance of the ``k`` nearest. ``batch_size``: points per chunk (default: as
        :data:`BLOCK_BYTES` allows)."""
        if not self.samples:  # a model without neighbour evidence (format 1 CNN models)
            return {}
        out: list[list[torch.Tensor]] = [[] for _ in self.samples]
        first, worst = [], []  # the nearest term's parts: nearest-row distance, largest suspect distance
        suspect = torch.from_numpy(self.suspect)
        picks = [*self.samples, self.reference] if len(self.suspect) else self.samples  # one pass for both
        for chunk_sq, blocks in self._blocks(points, picks, batch_size):
            for i, (block, sample) in enumerate(zip(blocks, self.samples)):
                nearest = block.view(len(chunk_sq), *sample.shape).amin(dim=2).add_(chunk_sq)
                out[i].append(nearest.clamp_min_(0).sqrt().mean(dim=1))  # clamp: rounding can dip below 0
            if len(self.suspect):
                values, at = torch.topk(blocks[-1], self.k, dim=1, largest=False)
                first.append(values[:, :1].add_(chunk_sq).clamp_min_(0).sqrt().squeeze(1))
                worst.append(suspect[at].amax(dim=1))
        result = {f"neighbours@{size}": torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.float32)
                  for size, parts in zip(self.sizes, out)}
        if len(self.suspect):
            result["nearest"] = (np.maximum(torch.cat(first).numpy(), torch.cat(worst).numpy()) if first
                                 else np.zeros(0))
        return result

    def nearest(self, points: np.ndarray, k: int, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, positions)``, each (n, k): each point's ``k`` nearest reference rows,
        nearest first (positions in ``reference``), a point's own row never among them."""
        distances, positions = [], []
        for chunk_sq, (block,) in self._blocks(points, [self.reference], batch_size):
            values, at = torch.topk(block, k, dim=1, largest=False)
            distances.append(values.add_(chunk_sq).clamp_min_(0).sqrt())
            positions.append(at)
        if not distances:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return torch.cat(distances).numpy(), torch.cat(positions).numpy()

    def _blocks(self, points: np.ndarray, picks: list[np.ndarray], batch_size: int | None
                ) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        """Per chunk of ``points``: (|x|^2 as a column, per pick of pool positions a block of
        squared distances less |x|^2), each point's own row out of reach (inf)."""
        point_ids = self._identical_pool_ids(points)
        pool = torch.from_numpy(self.pool)
        picks = [torch.from_numpy(p).reshape(-1) for p in picks]
        # Fastest: one matrix product per pick with its rows copied out of the pool. Wide rows
        # (images) would make those copies large: there, one product with the pool per chunk,
        # and each pick takes its columns from it.
        copied = sum(len(p) for p in picks) * pool.shape[1] * 4 <= COPIED_BYTES
        references = ([_Reference(pool[p], self.pool_ids[p.numpy()]) for p in picks] if copied
                      else [_Reference(pool, self.pool_ids)])
        own = [ref.own_cells(point_ids) for ref in references] if point_ids is not None else []
        if batch_size is None:
            n_distances = sum(len(ref.ids) for ref in references) + (0 if copied else sum(len(p) for p in picks))
            per_point = pool.shape[1] + 1 + n_distances  # floats: the point as [x, 1], its distance blocks
            batch_size = max(1, BLOCK_BYTES // (4 * per_point))
        # The blocks are written into buffers allocated once: a fresh block this large per chunk is
        # fresh memory from the system each time, and its page faults cost more than the product.
        rows = min(batch_size, len(points))
        buffers = [torch.empty(rows, len(ref.ids), dtype=torch.float32) for ref in references]
        picked = [] if copied else [torch.empty(rows, len(p), dtype=torch.float32) for p in picks]
        for start in range(0, len(points), batch_size):
            chunk = torch.as_tensor(points[start : start + batch_size], dtype=torch.float32)
            with_one = torch.cat([chunk, torch.ones(len(chunk), 1, dtype=torch.float32)], dim=1)
            partial = [ref.partial_distances(with_one, buffer[: len(chunk)])
                       for ref, buffer in zip(references, buffers)]
            for block, (point, column) in zip(partial, own):  # put each point's own row out of reach
                lo, hi = np.searchsorted(point, (start, start + len(chunk)))
                block[torch.from_numpy(point[lo:hi] - start), torch.from_numpy(column[lo:hi])] = torch.inf
            blocks = partial if copied else [torch.index_select(partial[0], 1, pick, out=buffer[: len(chunk)])
                                             for pick, buffer in zip(picks, picked)]
            yield (chunk * chunk).sum(dim=1, keepdim=True), blocks

    def _identical_pool_ids(self, points: np.ndarray) -> np.ndarray | None:
        """(n,) the training row number of the pool row each point equals bit for bit (of identical
        pool rows, the first), -1 for none; None when no point equals one (nothing to put out of reach)."""
        as_bytes = np.dtype((np.void, self.pool.shape[1] * 4))  # one comparable item per row
        keys = np.ascontiguousarray(self.pool).view(as_bytes).ravel()
        order = np.argsort(keys, kind="stable")  # pool rows are in row-number order: the first copy leads
        sorted_keys = keys[order]
        wanted = np.ascontiguousarray(points, dtype=np.float32).view(as_bytes).ravel()
        at = np.searchsorted(sorted_keys, wanted).clip(max=len(keys) - 1)
        found = sorted_keys[at] == wanted
        return np.where(found, self.pool_ids[order][at], -1) if found.any() else None


class _Reference:
    """Rows to measure distances to, kept as [-2 r, |r|^2] so that one matrix product with
    [x, 1] gives |r|^2 - 2 x.r: the squared distance less |x|^2, which is the same for every row
    and so is added after the minimum (as is the square root), once per sample instead of for
    every pair: the distance matrix is written once and read once."""

    def __init__(self, rows: torch.Tensor, ids: np.ndarray):
        self.augmented = torch.cat([-2 * rows, (rows * rows).sum(dim=1, keepdim=True)], dim=1)
        self.ids = ids

    def partial_distances(self, with_one: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """(len(chunk), len(rows)) from the chunk's rows [x, 1], written into ``out``."""
        return torch.mm(with_one, self.augmented.T, out=out)

    def own_cells(self, point_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point, column): where each point meets its own training row, ordered by point. Found
        once for all points, so that putting them out of reach costs one assignment per chunk (a
        dense point-by-row comparison in every chunk took a quarter of the neighbour search)."""
        by_id = np.argsort(self.ids, kind="stable")
        sorted_ids = self.ids[by_id]
        first = np.searchsorted(sorted_ids, point_ids)
        count = np.searchsorted(sorted_ids, point_ids, side="right") - first
        point = np.repeat(np.arange(len(point_ids)), count)
        run_start = np.repeat(first - (np.cumsum(count) - count), count)  # each point's first column in id order
        return point, by_id[run_start + np.arange(len(point))]
