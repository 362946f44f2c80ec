"""Training and complementary-mask inference for the CNN backend.

Each step draws a batch of training images, applies light augmentation (random small shifts,
and flips where orientation does not matter), hides random patches at one of the patch sizes
and takes the squared error on the hidden pixels only — the network is never rewarded for
copying what it can see. ``mask_ratio=0`` trains a plain reconstruction autoencoder instead (loss
on every pixel, nothing hidden): the ablation that shows what masking buys. Training uses the
same step budget as the MLP backend (``maskae.training.run_steps``).

Example
-------
>>> import torch
>>> from maskae.cnn import MaskedPatchCNN
>>> from maskae.training import TrainingPlan
>>> images = torch.randn(8, 1, 16, 16)
>>> net = MaskedPatchCNN(1, widths=(4, 8))
>>> plan = TrainingPlan(max_steps=3, batch_size=4)
>>> len(fit_inpainting(net, images, plan, (4,), "shift", torch.Generator())["train_loss"])
3
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from maskae.cnn import MaskedPatchCNN
from maskae.patch_masking import random_patch_mask
from maskae.training import TrainingPlan, run_steps

AUGMENTATIONS = ("none", "shift", "flip")  # "flip": flips and shifts
MAX_SHIFT = 1 / 32  # of the image side: small enough to keep an aligned object aligned


def augment(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Random shift of the whole batch by up to ``MAX_SHIFT`` of the side (edges replicated),
    and with ``kind="flip"`` random horizontal / vertical flips per image."""
    if kind == "none":
        return images
    height, width = images.shape[-2:]
    pad_h, pad_w = max(1, round(height * MAX_SHIFT)), max(1, round(width * MAX_SHIFT))
    padded = torch.nn.functional.pad(images, (pad_w, pad_w, pad_h, pad_h), mode="replicate")
    top, left = (int(torch.randint(2 * p + 1, (1,), generator=generator)) for p in (pad_h, pad_w))
    images = padded[..., top:top + height, left:left + width]
    if kind == "flip":
        flip_h, flip_v = torch.rand(2, len(images), generator=generator) < 0.5
        images = torch.where(flip_h[:, None, None, None], images.flip(-1), images)
        images = torch.where(flip_v[:, None, None, None], images.flip(-2), images)
    return images


def inpainting_loss(net: MaskedPatchCNN, images: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden pixels (over every pixel when nothing is hidden)."""
    errors = (net(images, hidden).image - images) ** 2
    if not hidden.any():
        return errors.mean()
    return (errors * hidden).sum() / (hidden.sum() * images.shape[1])


def fit_inpainting(
    net: MaskedPatchCNN,
    images: torch.Tensor,
    plan: TrainingPlan,
    patch_sizes: tuple[int, ...],
    augmentation: str,
    generator: torch.Generator,
    validation: torch.Tensor | None = None,
) -> dict[str, list[float]]:
    """Train ``net`` in place on ``images`` (n, C, H, W, scaled); returns the loss curves."""
    n, height, width = len(images), *images.shape[-2:]
    batch_size = min(plan.batch_size, n)

    def hide(count: int, gen: torch.Generator) -> torch.Tensor:
        if plan.mask_ratio == 0:
            return torch.zeros(count, 1, height, width, dtype=torch.bool)
        size = patch_sizes[int(torch.randint(len(patch_sizes), (1,), generator=gen))]
        return random_patch_mask(count, height, width, size, plan.mask_ratio, gen)

    def step_loss() -> torch.Tensor:
        batch = augment(images[torch.randint(n, (batch_size,), generator=generator)], augmentation, generator)
        return inpainting_loss(net, batch, hide(batch_size, generator))

    def validation_loss() -> float:
        # A fixed generator: every check sees the same masks, so the curve reflects the weights only.
        return float(inpainting_loss(net, validation, hide(len(validation), torch.Generator().manual_seed(0))))

    return run_steps(net, plan, step_loss, None if validation is None else validation_loss)


class ImagePasses(NamedTuple):
    errors: np.ndarray  # (n, H, W) squared error of each pixel, mean over channels and the passes that hid it
    image: np.ndarray  # (n, C, H, W) each pixel as predicted while hidden, scaled units
    latent: np.ndarray  # (n, latent) mean embedding over all passes


@torch.no_grad()
def inpainting_passes(net: MaskedPatchCNN, images: torch.Tensor, masks: np.ndarray, batch_size: int = 32) -> ImagePasses:
    """Run every image through every scoring mask (n_passes, H, W); each pixel is judged only
    while hidden. An all-False mask (the plain autoencoder) judges every pixel on that pass."""
    net.eval()
    masks_t = torch.as_tensor(masks)
    judged = masks_t | ~masks_t.flatten(1).any(1)[:, None, None]
    times_judged = judged.sum(0).clamp(min=1).float()
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        errors, rebuilt, latent = torch.zeros(len(batch), *batch.shape[-2:]), torch.zeros_like(batch), 0.0
        for hide, judge in zip(masks_t, judged):
            out = net(batch, hide.expand(len(batch), 1, -1, -1))
            errors += ((out.image - batch) ** 2).mean(dim=1) * judge
            rebuilt += out.image * judge
            latent = latent + out.latent
        chunks.append((errors / times_judged, rebuilt / times_judged, latent / len(masks_t)))
    return ImagePasses(*(torch.cat(parts).numpy() for parts in zip(*chunks)))
