"""Masks: which cells the network must rebuild from the others.

Training hides a random share of cells (``random_cell_mask``). Scoring uses complementary masks
(``complementary_masks``): the features are split into disjoint groups, one pass per group, so every
cell is hidden exactly ``n_repeats`` times and predicted from the rest of its row, the same way for
every record — scores are deterministic and comparable across records.

Example
-------
>>> masks = complementary_masks(n_features=5, n_groups=2, n_repeats=3, seed=0)
>>> masks.shape, masks.sum(axis=0).tolist()
((6, 5), [3, 3, 3, 3, 3])

The masked-modelling idea follows He et al., "Masked Autoencoders Are Scalable Vision Learners"
(CVPR 2022), applied to table cells as in Majmundar et al., "MET: Masked Encoding for Tabular Data".
"""

from __future__ import annotations

import numpy as np
import torch


def random_cell_mask(n_rows: int, n_features: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Bool (n_rows, n_features): each cell hidden with probability ``ratio``, at least one per row."""
    mask = torch.rand(n_rows, n_features, generator=generator) < ratio
    # A row with nothing hidden teaches nothing: hide one random cell there.
    empty = ~mask.any(dim=1)
    if empty.any():
        pick = torch.randint(n_features, (int(empty.sum()),), generator=generator)
        mask[empty.nonzero(as_tuple=True)[0], pick] = True
    return mask


def complementary_masks(n_features: int, n_groups: int, n_repeats: int, seed: int) -> np.ndarray:
    """Bool (n_groups * n_repeats, n_features): ``n_repeats`` random partitions of the features
    into ``n_groups`` near-equal groups; each row of the result hides one group."""
    n_groups = max(1, min(n_groups, n_features))
    rng = np.random.default_rng(seed)
    passes = []
    for _ in range(n_repeats):
        group_of = np.arange(n_features) % n_groups
        rng.shuffle(group_of)
        passes.extend(group_of == g for g in range(n_groups))
    return np.stack(passes)
