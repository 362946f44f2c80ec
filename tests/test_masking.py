import pytest
import torch

from maskae.masking import complementary_masks, random_cell_mask


@pytest.mark.parametrize("n_features,n_groups,n_repeats", [(1, 3, 2), (5, 2, 3), (30, 3, 2), (7, 7, 1)])
def test_scoring_masks_hide_every_cell_equally_often(n_features, n_groups, n_repeats):
    masks = complementary_masks(n_features, n_groups, n_repeats, seed=1)
    assert (masks.sum(axis=0) == n_repeats).all()
    # Within one repeat the groups are disjoint and cover every feature once.
    for r in range(n_repeats):
        block = masks[r * len(masks) // n_repeats : (r + 1) * len(masks) // n_repeats]
        assert (block.sum(axis=0) == 1).all()


def test_scoring_masks_are_repeatable_and_seeded():
    assert (complementary_masks(10, 3, 2, seed=4) == complementary_masks(10, 3, 2, seed=4)).all()
    assert not (complementary_masks(10, 3, 2, seed=4) == complementary_masks(10, 3, 2, seed=5)).all()


def test_random_mask_ratio_and_no_empty_rows():
    mask = random_cell_mask(20_000, 10, 0.3, torch.Generator().manual_seed(0))
    assert abs(mask.float().mean().item() - 0.3) < 0.01
    assert mask.any(dim=1).all()
    sparse = random_cell_mask(1000, 3, 0.01, torch.Generator().manual_seed(0))
    assert sparse.any(dim=1).all()
