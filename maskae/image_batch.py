"""Image batches in and out: layout, resizing to the network's size, per-channel scaling.

A batch is N x H x W x C ``uint8`` (what image files decode to), N x C x H x W float (what torch
code holds) or N x H x W (grayscale). :class:`ImageFormat` is fitted on the training images: it
remembers the channel count, the size the network works at and each channel's mean and standard
deviation, and converts every later batch the same way — whatever its layout or resolution —
and maps results (anomaly maps, inpainted images) back to the batch's own layout and resolution.

Example
-------
>>> import numpy as np
>>> images = np.random.default_rng(0).integers(0, 256, size=(4, 40, 30, 3), dtype=np.uint8)
>>> fmt = ImageFormat.fit(images, image_size=16)
>>> fmt.to_network(images).shape, fmt.to_input(np.zeros((4, 16, 16)), like=images).shape
(torch.Size([4, 3, 16, 16]), (4, 40, 30))
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from maskae.table_encoding import outside_stacklevel

RESIZE_CHUNK = 64  # images resized at a time: a batch of 900-pixel photos would not fit in memory


class ImageScaleWarning(UserWarning):
    """A batch whose pixel values are scaled otherwise than the training images' (0-1 against 0-255)."""


def is_image_batch(X) -> bool:
    """True for a 3-D or 4-D numpy array (tables are 2-D arrays or DataFrames)."""
    return isinstance(X, np.ndarray) and X.ndim in (3, 4)


def channel_axis(images: np.ndarray) -> int | None:
    """Where the channels are: -1 (N x H x W x C), 1 (N x C x H x W) or None (N x H x W).
    When both could be, ``uint8`` means channels last (decoded files), float channels first."""
    if images.ndim == 3:
        return None
    last, first = images.shape[-1] in (1, 3), images.shape[1] in (1, 3)
    if last and (images.dtype == np.uint8 or not first):
        return -1
    if first:
        return 1
    raise ValueError(
        f"an image batch needs 1 or 3 channels (N x H x W x C uint8 or N x C x H x W float), got shape {images.shape}"
    )


def as_nchw(images: np.ndarray) -> np.ndarray:
    """The batch as float32 N x C x H x W, in its own units."""
    if not is_image_batch(images):
        raise ValueError(f"expected an image batch (a 3-D or 4-D array), got {type(images).__name__} "
                         f"of shape {getattr(images, 'shape', None)}")
    if len(images) == 0:
        raise ValueError("the image batch is empty")
    if images.ndim == 3 and images.shape[-1] in (1, 3):  # read as N grayscale images 1 or 3 pixels wide
        raise ValueError(f"an array of shape {images.shape} reads as {images.shape[0]} grayscale images "
                         f"{images.shape[1]} x {images.shape[2]} pixels; for one image, add a batch axis "
                         f"(image[None])")
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        bad = np.flatnonzero(~np.isfinite(images.reshape(len(images), -1)).all(axis=1))
        raise ValueError(f"image(s) at position {bad[:10].tolist()}{' ...' if len(bad) > 10 else ''} of the batch hold "
                         f"NaN or infinite pixels: no score can be read from them; leave them out or fill them")
    axis = channel_axis(images)
    images = images.astype(np.float32, copy=False)
    if axis is None:
        return images[:, None]
    return np.moveaxis(images, -1, 1) if axis == -1 else images


def input_size(images: np.ndarray) -> tuple[int, int]:
    """(H, W) of a batch in any of the accepted layouts."""
    return tuple(images.shape[-2:]) if channel_axis(images) == 1 else tuple(images.shape[1:3])


def resize(images: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """N x C x H x W -> N x C x size, bilinear with antialiasing when shrinking, in chunks."""
    images = torch.as_tensor(images)
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return torch.cat([F.interpolate(images[i:i + RESIZE_CHUNK], size=size, mode="bilinear", antialias=True,
                                    align_corners=False) for i in range(0, len(images), RESIZE_CHUNK)])


@dataclass
class ImageFormat:
    """How images are fed to a network: channels, working size (height, width), channel scaling."""

    channels: int
    size: tuple[int, int]
    channel_mean: list[float]
    channel_std: list[float]

    @classmethod
    def fit(cls, images: np.ndarray, image_size: int | None) -> "ImageFormat":
        """Learn the format from training images; ``image_size`` None keeps their own size."""
        nchw = as_nchw(images)
        size = tuple(nchw.shape[-2:]) if image_size is None else (int(image_size), int(image_size))
        resized = resize(nchw, size)
        mean = resized.mean(dim=(0, 2, 3))
        std = resized.std(dim=(0, 2, 3)).clamp(min=1e-6)
        return cls(nchw.shape[1], size, mean.tolist(), std.tolist())

    def _checked(self, images: np.ndarray) -> np.ndarray:
        nchw = as_nchw(images)
        if nchw.shape[1] != self.channels:
            raise ValueError(f"the model was trained on {self.channels}-channel images, got {nchw.shape[1]} channels")
        # Pixels are read in the training images' units: a batch scaled to 0-1 (torchvision's
        # ToTensor) for a model of 0-255 images, or the reverse, reads as one uniform anomaly.
        trained_in_units = max(m + 3 * s for m, s in zip(self.channel_mean, self.channel_std)) <= 1.5
        if images.dtype.kind == "f" and (top := float(nchw.max())) > 0 and (top > 2) == trained_in_units:
            given, trained = ("0-255", "0-1") if trained_in_units else ("0-1", "0-255")
            warnings.warn(f"the batch's pixels look scaled to {given} (largest {top:.3g}), the training images' to "
                          f"{trained}, so its scores mean little; scale the batch as the training images were",
                          ImageScaleWarning, stacklevel=outside_stacklevel())
        return nchw

    def resized(self, images: np.ndarray) -> torch.Tensor:
        """N x C x h x w float32 at the working size, in the images' own units."""
        return resize(self._checked(images), self.size)

    def to_network(self, images: np.ndarray) -> torch.Tensor:
        """N x C x h x w float32 at the working size, each channel centred and scaled."""
        mean, std = torch.tensor(self.channel_mean), torch.tensor(self.channel_std)
        return (self.resized(images) - mean[:, None, None]) / std[:, None, None]

    def from_network(self, scaled: torch.Tensor | np.ndarray, like: np.ndarray) -> np.ndarray:
        """Undo :meth:`to_network`: back to ``like``'s units, layout, resolution and dtype."""
        mean, std = torch.tensor(self.channel_mean), torch.tensor(self.channel_std)
        images = torch.as_tensor(scaled) * std[:, None, None] + mean[:, None, None]
        return self.restore_layout(images, like)

    def restore_layout(self, nchw: torch.Tensor | np.ndarray, like: np.ndarray) -> np.ndarray:
        """N x C x h x w in ``like``'s units -> ``like``'s layout, resolution and dtype."""
        images = resize(torch.as_tensor(nchw), input_size(like)).numpy()
        if like.dtype == np.uint8:
            images = np.clip(np.rint(images), 0, 255)
        axis = channel_axis(like)
        images = images[:, 0] if axis is None else (np.moveaxis(images, 1, -1) if axis == -1 else images)
        return images.astype(like.dtype, copy=False)

    def to_input(self, maps: np.ndarray, like: np.ndarray) -> np.ndarray:
        """N x h x w maps -> N x H x W float32 at ``like``'s resolution."""
        return resize(torch.as_tensor(maps, dtype=torch.float32)[:, None], input_size(like))[:, 0].numpy()

    def flatten(self, images: np.ndarray) -> np.ndarray:
        """N x (h * w * C) at the working size, in the images' own units: the MLP backend's table."""
        return self.resized(images).permute(0, 2, 3, 1).reshape(len(images), -1).numpy()

    def unflatten(self, rows: np.ndarray) -> torch.Tensor:
        """Inverse of :meth:`flatten`'s reshaping: N x C x h x w."""
        height, width = self.size
        return torch.from_numpy(np.array(rows, dtype=np.float32)).view(-1, height, width, self.channels).permute(0, 3, 1, 2)

    def to_dict(self) -> dict:
        return {**asdict(self), "size": list(self.size)}

    @classmethod
    def from_dict(cls, state: dict) -> "ImageFormat":
        return cls(**{**state, "size": tuple(state["size"])})
