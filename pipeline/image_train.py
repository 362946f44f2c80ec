"""Image training step: a folder of good images -> fit -> calibrate -> log -> register.

The image counterpart of :mod:`pipeline.train`, chosen by ``data.format = "images"`` (a folder as
``data.path``). Every file under the folder is read at ``data.image_size`` pixels square; files
that are not images, or cannot be decoded, are quarantined with the reason and logged with the
run (``quarantine.csv``), never trained on. The detector (CNN by default, with the images
benchmark's settings: :data:`pipeline.config.IMAGE_DEFAULTS`) holds out ``calibration_fraction``
of the images, whose scores calibrate the threshold. The registered model takes an
N x H x W x C ``uint8`` array and carries an image schema (``kind = "images"``, the size the
images are read at), so ``maskae screen`` knows to read a folder for it.

There are no labels: the folder is taken to hold good images (MVTec's ``train/good``).

Example
-------
>>> # from pipeline.config import load_config
>>> # result = train_images(load_config(overrides={"data.path": "bottle/train/good"}))
>>> # result.version, result.rows_quarantined, result.metrics["threshold"]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import mlflow

from maskae import MaskedAutoencoderDetector
from maskae.calibration import Calibration
from pipeline import tracking
from pipeline.config import IMAGES, PipelineConfig
from pipeline.image_ingest import ImageFolder, image_files, read_image_folder
from pipeline.sources import fingerprint
from pipeline.train import TrainResult, log_training, registered_earlier


def image_schema(height: int, width: int, channels: int, image_size: int, id_column: str) -> dict:
    """The schema an image model carries: what screening needs to read a folder for it."""
    return {"kind": IMAGES, "image_size": image_size, "height": height, "width": width,
            "channels": channels, "id_column": id_column}


def read_as_trained(folder: str | Path, schema: dict) -> ImageFolder:
    """The images under ``folder`` as the model with this schema read its training images: at its
    size, and in its colour mode (gray as Pillow converts colour, or RGB)."""
    return read_image_folder(folder, schema["image_size"], mode="L" if schema["channels"] == 1 else "RGB")


def train_images(config: PipelineConfig, workdir: Path | None = None, request_id: str | None = None) -> TrainResult:
    """Train, calibrate, log and register one model version on the image folder ``config.data.path``.

    Raises
    ------
    FileNotFoundError
        The folder does not exist.
    ValueError
        The folder holds no readable image (the message counts the quarantined files).
    """
    if workdir is not None:
        mlflow.set_tracking_uri(tracking.tracking_uri(workdir))
    if (earlier := registered_earlier(config, request_id)) is not None:  # a retry: see pipeline.train.train
        return earlier
    started, data = time.perf_counter(), config.data
    folder = read_image_folder(data.path, data.image_size)
    model_params = config.model.detector_params(images=True)
    detector = MaskedAutoencoderDetector(
        **model_params, calibration_fraction=config.calibration.calibration_fraction,
        progress=sys.stderr.isatty(),
    ).fit(folder.images)
    cal_scores = detector.calibration_scores_
    calibration = Calibration.fit(cal_scores, config.calibration.strategy, config.calibration.level)
    counts = {"rows_read": len(folder.paths) + len(folder.quarantined), "rows_quarantined": len(folder.quarantined),
              "rows_fit": len(folder.paths) - len(cal_scores), "rows_calibration": len(cal_scores),
              "rows_validation": 0,
              "known_anomalies_set_aside": 0}
    source = fingerprint(image_files(data.path), names_under=Path(data.path))
    _, height, width, channels = folder.images.shape
    data_tags = {"data.rows": counts["rows_read"], "data.sha256": source["sha256"], "data.bytes": source["bytes"],
                 "data.path": str(Path(data.path).resolve()), "data.format": IMAGES}
    return log_training(
        config, detector, calibration, model_params, started, counts, metrics={},
        params={"data.image_size": data.image_size, **data_tags}, tags=data_tags, quarantined=folder.quarantined,
        input_example=folder.images[:5],
        schema=image_schema(height, width, channels, data.image_size, data.id_column), request_id=request_id,
    )
