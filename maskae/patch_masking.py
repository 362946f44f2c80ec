"""Patch masks for images: which square patches of a grid the CNN must inpaint from the rest.

An image of ``height`` x ``width`` pixels is cut into a grid of ``patch_size`` squares (the last
row and column may be narrower). Training hides a random share of the patches
(``random_patch_mask``). Scoring uses complementary patch masks (``complementary_patch_masks``):
the patches are split into disjoint groups, one pass per group, so every pixel is hidden exactly
``n_repeats`` times per patch scale and rebuilt from its context, the same way for every image.
Both reuse the cell masks of ``maskae.masking`` with one "cell" per patch.

Example
-------
>>> masks = complementary_patch_masks(6, 6, patch_sizes=(2, 3), n_groups=2, n_repeats=1, seed=0)
>>> masks.shape, masks.sum(axis=0).tolist()[0]
((4, 6, 6), [2, 2, 2, 2, 2, 2])

The idea of scoring by inpainting disjoint patch sets at several scales follows Zavrtanik et al.,
"Reconstruction by inpainting for visual anomaly detection" (Pattern Recognition 2021).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from maskae.masking import complementary_masks, random_cell_mask


def patch_grid(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Patches per column and per row (the last ones cover the remainder)."""
    return math.ceil(height / patch_size), math.ceil(width / patch_size)


def _to_pixels(grid_mask: np.ndarray | torch.Tensor, patch_size: int, height: int, width: int):
    """(..., grid_h, grid_w) -> (..., height, width): each patch flag repeated over its pixels."""
    pixels = grid_mask.repeat_interleave(patch_size, -2).repeat_interleave(patch_size, -1) \
        if isinstance(grid_mask, torch.Tensor) else grid_mask.repeat(patch_size, -2).repeat(patch_size, -1)
    return pixels[..., :height, :width]


def random_patch_mask(n_images: int, height: int, width: int, patch_size: int, ratio: float,
                      generator: torch.Generator) -> torch.Tensor:
    """Bool (n_images, 1, height, width): each patch hidden with probability ``ratio``, at least
    one per image."""
    grid_h, grid_w = patch_grid(height, width, patch_size)
    hidden = random_cell_mask(n_images, grid_h * grid_w, ratio, generator).view(n_images, 1, grid_h, grid_w)
    return _to_pixels(hidden, patch_size, height, width)


def complementary_patch_masks(height: int, width: int, patch_sizes: tuple[int, ...], n_groups: int,
                              n_repeats: int, seed: int) -> np.ndarray:
    """Bool (len(patch_sizes) * n_groups * n_repeats, height, width), one row per scoring pass:
    at each patch size, ``n_repeats`` random partitions of the patches into ``n_groups`` groups,
    each pass hiding one group. Every pixel is hidden ``n_repeats`` times per patch size."""
    passes = []
    for offset, size in enumerate(patch_sizes):
        grid_h, grid_w = patch_grid(height, width, size)
        groups = complementary_masks(grid_h * grid_w, n_groups, n_repeats, seed + offset)
        passes.append(_to_pixels(groups.reshape(-1, grid_h, grid_w), size, height, width))
    return np.concatenate(passes)
