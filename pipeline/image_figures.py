"""The figure an inspector reads first: the most anomalous images, what the model expected there,
and where it disagrees.

One PNG grid, a row per image (most anomalous first): the original, the reconstruction (each
pixel inpainted from its context) and the anomaly map laid over the original. Drawn with
matplotlib's Agg backend and written atomically (temporary name, then rename), so a report or an
MLflow run never picks up half a file. :func:`record_pngs` gives the same three views of one image
as separate PNGs, for the report's record details.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> images = np.random.default_rng(0).integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
>>> maps = np.random.default_rng(1).random((5, 16, 16))
>>> path = pathlib.Path(tempfile.mkdtemp()) / "most_anomalous.png"
>>> anomaly_grid(path, images, images, maps, scores=maps.max(axis=(1, 2)), top_k=3).name
'most_anomalous.png'
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never look for a display on a batch machine

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def _displayable(image: np.ndarray) -> np.ndarray:
    """H x W x C (uint8 or float) -> what ``imshow`` draws as the image: H x W gray or H x W x 3."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8:
        low, high = float(image.min()), float(image.max())
        image = (image - low) / (high - low or 1.0)
    return image


def anomaly_grid(path: str | Path, images: np.ndarray, reconstructions: np.ndarray, maps: np.ndarray,
                 scores: np.ndarray, names: Sequence[str] | None = None, top_k: int = 8) -> Path:
    """Write the grid for the ``top_k`` highest ``scores`` to ``path`` (PNG); returns the path.

    ``images`` and ``reconstructions``: N x H x W x C or N x H x W (as ``reconstruct`` returns for
    channels-last input); ``maps``: N x H x W anomaly maps (``explain``), one colour scale shared
    by all rows so that colours compare across images (values above its top are drawn at the top
    colour); ``names`` label the rows.
    """
    path = Path(path)
    order = np.argsort(-np.asarray(scores), kind="stable")[:top_k]
    # One colour scale for all rows, topped at the 99.5th percentile: a few extreme pixels (a
    # defect over a background that is always rebuilt perfectly) would otherwise wash out the rest.
    low, high = float(np.min(maps[order])), float(np.percentile(maps[order], 99.5))
    figure, axes = plt.subplots(len(order), 3, figsize=(7.5, 2.6 * len(order)), squeeze=False)
    for row, i in zip(axes, order):
        original = _displayable(images[i])
        gray = original.mean(axis=-1) if original.ndim == 3 else original
        row[0].imshow(original, cmap="gray", vmin=0, vmax=255 if original.dtype == np.uint8 else 1)
        row[1].imshow(_displayable(reconstructions[i]), cmap="gray", vmin=0,
                      vmax=255 if np.asarray(reconstructions[i]).dtype == np.uint8 else 1)
        row[2].imshow(gray, cmap="gray")
        shown = row[2].imshow(maps[i], cmap="jet", alpha=0.5, vmin=low, vmax=high)
        label = names[i] if names is not None else f"image {i}"
        row[0].set_title(f"{label}\nscore {float(scores[i]):.3g}", fontsize=8)
        row[1].set_title("reconstruction", fontsize=8)
        row[2].set_title("anomaly map", fontsize=8)
        figure.colorbar(shown, ax=row[2], fraction=0.046, pad=0.04)
        for axis in row:
            axis.set_axis_off()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():  # a name in a script the font lacks (Chinese) shows as boxes: no more
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.savefig(staging, dpi=100, format="png")
    plt.close(figure)
    os.replace(staging, path)
    return path


def _png(pixels: np.ndarray) -> bytes:
    if pixels.ndim == 3 and pixels.shape[-1] == 1:  # one channel: a gray PNG
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def record_pngs(image: np.ndarray, reconstruction: np.ndarray, anomaly_map: np.ndarray,
                high: float) -> dict[str, bytes]:
    """``{"original", "reconstruction", "overlay"}`` PNG bytes of one H x W x C ``uint8`` image:
    the overlay blends the anomaly map (``jet`` colours, ``high`` and above drawn at the top
    colour, as in :func:`anomaly_grid`) half and half with the image in gray."""
    original, rebuilt = (np.asarray(a, dtype=np.uint8) for a in (image, reconstruction))
    gray = original.mean(axis=-1) if original.ndim == 3 else original.astype(float)
    low = float(np.min(anomaly_map))
    heat = plt.get_cmap("jet")((np.asarray(anomaly_map) - low) / ((high - low) or 1.0))[..., :3] * 255
    overlay = (0.5 * gray[..., None] + 0.5 * heat).clip(0, 255).astype(np.uint8)
    return {"original": _png(original), "reconstruction": _png(rebuilt), "overlay": _png(overlay)}
