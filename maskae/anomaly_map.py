"""From per-pixel inpainting errors to anomaly maps and image scores.

The raw error map (every pixel's squared error while it was hidden) is smoothed with a Gaussian,
since a defect is a region, not a pixel, and lone noisy pixels should not decide, and divided by
each pixel's typical smoothed error on the training images: on aligned objects some places (edges,
highlights) are always rebuilt badly, and only an error unusual *for that place* is evidence. The
image score is the mean of the map's top 1 % — a small defect decides, a single pixel does not.

Example
-------
>>> import numpy as np
>>> errors = np.ones((2, 32, 32)); errors[1, 10:14, 10:14] = 50.0
>>> maps = anomaly_maps(errors, typical=np.ones((32, 32)))
>>> scores = image_scores(maps)
>>> bool(scores[1] > scores[0]), np.unravel_index(maps[1].argmax(), maps[1].shape)
(True, (np.int64(11), np.int64(11)))
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

TOP_SHARE = 0.01  # share of an image's pixels whose mean is its score
TYPICAL_FLOOR = 0.1  # a pixel's typical error counts as at least this share of the image mean


def smoothing_sigma(height: int, width: int) -> float:
    """Gaussian width in pixels: 1/64 of the image side, at least one pixel."""
    return max(1.0, min(height, width) / 64)


def smoothed(errors: np.ndarray) -> np.ndarray:
    """(n, H, W) -> (n, H, W) Gaussian-smoothed within each image."""
    sigma = smoothing_sigma(*errors.shape[-2:])
    return gaussian_filter(errors.astype(np.float32), sigma=(0, sigma, sigma), mode="nearest")


def typical_error(errors: np.ndarray) -> np.ndarray:
    """(H, W) each pixel's mean smoothed error over training images (``errors`` (n, H, W)),
    floored so that a pixel always rebuilt perfectly (a flat background) cannot divide by ~0."""
    typical = smoothed(errors).mean(axis=0)
    return np.maximum(typical, TYPICAL_FLOOR * typical.mean() + 1e-12)


def anomaly_maps(errors: np.ndarray, typical: np.ndarray) -> np.ndarray:
    """(n, H, W) smoothed error divided by the pixel's typical error: ~1 where typical."""
    return smoothed(errors) / typical


def image_scores(maps: np.ndarray) -> np.ndarray:
    """(n,) mean of each map's top ``TOP_SHARE`` of pixels (at least one)."""
    flat = maps.reshape(len(maps), -1)
    k = max(1, math.ceil(TOP_SHARE * flat.shape[1]))
    return np.partition(flat, -k, axis=1)[:, -k:].mean(axis=1)
