"""Image ingest: a folder of image files -> one uint8 array, with every unreadable file quarantined.

Two layouts: any folder of images (read recursively; each image's ``kind`` is the first folder of
its path inside the folder read, empty for an image at its top), and an MVTec-AD-like root (``train/good`` to train on, ``test/<kind>`` to evaluate, where
every kind but ``good`` is a defect). A file that is not an image, is truncated or cannot be
decoded goes to ``quarantined`` with the reason, instead of stopping the run; so does an image
whose size differs from the others' when no common ``size`` is asked for. Truncated files stay
errors (Pillow's ``LOAD_TRUNCATED_IMAGES`` is left False): a half-image is not a good image.

Example
-------
>>> # train, test = read_mvtec_like("../shared/datasets/images/mvtec_bottle", size=128)
>>> # train.images.shape, test.labels.mean(), test.quarantined
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
NORMAL_KIND = "good"


@dataclass
class ImageFolder:
    """Images read from a folder, in sorted path order."""

    images: np.ndarray  # (n, H, W, C) uint8
    paths: list[str]  # relative to the folder read
    kinds: list[str]  # the first folder of each image's path ("good", "broken_large", ...; "" at the top)
    quarantined: pd.DataFrame  # columns: path, quarantine_reason

    @property
    def labels(self) -> np.ndarray:
        """(n,) 1 for images whose kind is not ``good`` in any case (a defect), else 0: ``Good/``
        holds good images, as a verdict's ``Good`` is one."""
        return np.array([kind.lower() != NORMAL_KIND for kind in self.kinds], dtype=int)


def _decode(path: Path, size: int | None) -> Image.Image:
    with Image.open(path) as image:
        image.load()  # decodes every byte: truncated or corrupt files fail here, not later
        ImageOps.exif_transpose(image, in_place=True)  # a camera's rotation, as every viewer shows the image
        if image.mode.startswith("I"):  # 16-bit gray (PNG): its top 8 bits; convert("L") would clip at 255
            image = Image.fromarray((np.asarray(image).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8))
        if image.mode == "F":  # float gray (TIFF): 0-1 as most tools write it, or 0-255; convert() reads 0-255
            values = np.asarray(image, dtype=np.float64)
            if not np.isfinite(values).all():
                raise ValueError("it holds a NaN or infinite pixel")
            image = Image.fromarray((values * (255 if values.max() <= 1 else 1)).round().clip(0, 255).astype(np.uint8))
        image = image.convert("RGB" if image.mode not in ("L", "1", "F") else "L")
        if size is not None:
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return image


def image_files(folder: str | Path) -> list[Path]:
    """Every file under ``folder`` (recursively, through linked folders, hidden files and folders
    skipped), sorted, and every link to nothing, which :func:`read_image_folder` quarantines: what
    it reads, and what a run's fingerprint covers."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    found, seen, root = [], set(), os.path.realpath(folder)
    for top, folders, files in os.walk(folder, followlinks=True):
        if (real := os.path.realpath(top)) in seen:  # two links to one folder outside the tree: walked once
            folders.clear()
            continue
        seen.add(real)
        # A link to a folder inside the tree (a back link, an alias) is left out: the folder is
        # walked under its own name, whatever order the file system lists them in.
        folders[:] = sorted(name for name in folders if not name.startswith(".") and not (
            os.path.islink(os.path.join(top, name))
            and Path(os.path.realpath(os.path.join(top, name))).is_relative_to(root)))
        found += [Path(top, name) for name in files if not name.startswith(".")]
    return sorted(found)


def read_image_folder(folder: str | Path, size: int | None = None, mode: str | None = None) -> ImageFolder:
    """Every file under ``folder`` (recursively, hidden files skipped), decoded to uint8 arrays.

    ``size`` resizes every image to ``size`` x ``size`` while reading (a batch of full-size
    photos would not fit in memory). Grayscale images stay one channel unless the folder mixes
    grayscale and colour, then all are RGB; ``mode`` (``"L"`` or ``"RGB"``) converts every image
    to that one (a model's), colour to gray by Pillow's luma weights. Raises ``ValueError`` naming the folder when it
    holds no readable image.
    """
    folder = Path(folder)
    files = image_files(folder)
    decoded, quarantined = [], []
    for path in files:
        name = str(path.relative_to(folder))
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            quarantined.append((name, f"not an image file (suffix {path.suffix or 'none'!r}; expected "
                                      f"{', '.join(s[1:] for s in IMAGE_SUFFIXES)})"))
            continue
        if not path.exists():
            quarantined.append((name, f"a link to {str(path.readlink())!r}, which does not exist"))
            continue
        if path.stat().st_size == 0:
            quarantined.append((name, "an empty file (0 bytes): copy it again"))
            continue
        try:
            parts = path.relative_to(folder).parts
            decoded.append((name, parts[0] if len(parts) > 1 else "", _decode(path, size)))
        except Image.DecompressionBombError as error:
            quarantined.append((name, f"too large to decode safely ({error}); downscale it, or raise "
                                      f"PIL.Image.MAX_IMAGE_PIXELS in the process that reads it if it is trusted"))
        except Exception as error:  # Pillow raises several types for bad files; each is a reason
            quarantined.append((name, f"unreadable image: {type(error).__name__}: {error}"))
    if not decoded:
        first = f", e.g. {quarantined[0][0]}: {quarantined[0][1]}" if quarantined else ""
        raise ValueError(f"{folder} holds no readable images ({len(quarantined)} file(s) quarantined{first}; "
                         f"expected {', '.join(IMAGE_SUFFIXES)})")
    mode = mode or ("L" if all(image.mode == "L" for _, _, image in decoded) else "RGB")
    expected = decoded[0][2].size
    kept = []
    for name, kind, image in decoded:
        if image.size != expected:
            quarantined.append((name, f"size {image.size[0]}x{image.size[1]} differs from the first image's "
                                      f"{expected[0]}x{expected[1]}; pass size= to resize all"))
        else:
            kept.append((name, kind, np.asarray(image.convert(mode))))
    images = np.stack([a if a.ndim == 3 else a[..., None] for _, _, a in kept])
    return ImageFolder(
        images, [n for n, _, _ in kept], [k for _, k, _ in kept],
        pd.DataFrame(quarantined, columns=["path", "quarantine_reason"]),
    )


def read_mvtec_like(root: str | Path, size: int | None = None) -> tuple[ImageFolder, ImageFolder]:
    """(train, test) of an MVTec-AD-like root: ``train/good`` and ``test/<kind>`` folders."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder {str(root)!r}; check the path and the working directory")
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise FileNotFoundError(f"{root} is not an MVTec-like root: it has no {part}/ folder")
    train = read_image_folder(root / "train" / NORMAL_KIND, size)
    train.kinds = [NORMAL_KIND] * len(train.paths)  # read from inside train/good, where every image is good
    return train, read_image_folder(root / "test", size)
