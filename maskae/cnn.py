"""The CNN backend: a pure ``nn.Module`` that inpaints hidden image patches from the visible ones.

Hidden pixels enter as a learned per-channel value, and a mask channel tells the network which
pixels are hidden. A small U-Net-like encoder-decoder (two convolutions per level, stride-2
downsampling, bilinear upsampling with skip connections) predicts every pixel. The skips cannot
copy a hidden patch through: its content is replaced before the first layer, so all the network
ever sees of it is the mask value. The encoder's deepest features, averaged over the image, are
the embedding.

Example
-------
>>> import torch
>>> net = MaskedPatchCNN(channels=3, widths=(8, 16, 32))
>>> out = net(torch.zeros(2, 3, 24, 20), torch.zeros(2, 1, 24, 20, dtype=torch.bool))
>>> out.image.shape, out.latent.shape
(torch.Size([2, 3, 24, 20]), torch.Size([2, 32]))
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F


class Inpainting(NamedTuple):
    image: torch.Tensor  # (n, channels, H, W) every pixel as predicted, scaled units
    latent: torch.Tensor  # (n, widths[-1]) deepest features averaged over the image


def _block(n_in: int, n_out: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm, not BatchNorm: scoring runs one image at a time as well as in batches.
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1), nn.GroupNorm(min(8, n_out), n_out), nn.GELU(),
        nn.Conv2d(n_out, n_out, 3, padding=1), nn.GroupNorm(min(8, n_out), n_out), nn.GELU(),
    )


class MaskedPatchCNN(nn.Module):
    def __init__(self, channels: int, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        self.mask_value = nn.Parameter(torch.zeros(channels))
        self.down = nn.ModuleList(
            _block(channels + 1 if i == 0 else widths[i - 1], w, stride=1 if i == 0 else 2) for i, w in enumerate(widths)
        )
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], channels, 1)

    def forward(self, image: torch.Tensor, hidden: torch.Tensor) -> Inpainting:
        """``image`` (n, channels, H, W) scaled; ``hidden`` bool (n, 1, H, W), True = not shown."""
        x = torch.cat([torch.where(hidden, self.mask_value[:, None, None], image), hidden.float()], dim=1)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        latent = x.mean(dim=(2, 3))
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return Inpainting(self.head(x), latent)
