"""Image screening step: score a folder of images with a registered image model, write the screening folder.

The image counterpart of :func:`pipeline.screen.screen`, with the same output folder (see
:mod:`pipeline.screening_output`), the same atomic publishing, reuse of an identical earlier
screening, MLflow run and report. An image's id is its path inside the folder (the ``path``
column); its ``kind`` column is the first folder of that path (empty at the top). Every file under the folder is read at
the size the model was trained at and in its colour mode (RGB, or gray as Pillow converts colour);
files that are not images or cannot be decoded go to ``quarantine.csv``
with the reason. Each flagged image's ``reasons`` say which evidence stood out and where it was
rebuilt worst (``x``, ``y`` in pixels at the model's size, from the top left); the report shows
the original, the reconstruction and the anomaly map over it (kept as PNGs in ``images/``, which
``summary.json``'s ``record_images`` lists per image, so that a review can draw the report again),
and ``most_anomalous.png`` the flagged images side by side, most anomalous first.

The images are held in memory at the model's size (64 px RGB: 12 KB each) and scored in chunks.

Example
-------
>>> # result = screen_images("incoming/line-3/", "bottles@champion", Path("runs/line-3"))
>>> # result.summary["rows_flagged"], result.out_dir / "flagged.csv", result.out_dir / "most_anomalous.png"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from maskae import MaskedAutoencoderDetector
from pipeline import tracking
from pipeline.image_figures import anomaly_grid, record_pngs
from pipeline.image_ingest import image_files
from pipeline.image_train import read_as_trained
from pipeline.ingest import FileChangedError
from pipeline.report import REPORT_ROWS
from pipeline.screen import ScreenResult, earlier_screening, in_process_scorer, new_tally, now_utc, publish_screening
from pipeline.scoring import load_scoring_model
from pipeline.screening_output import IMAGE_EVIDENCE_WORDS, ROW, ScreeningFolder, evidence_summary, read_summary
from pipeline.sources import fingerprint

SCORE_IMAGES = 256  # images scored at a time
GRID, RECORD_IMAGES = "most_anomalous.png", "images"  # the grid; the folder of the report's record images


def _reasons(evidence: list[str], maps: np.ndarray) -> list[str]:
    """Per image: the evidence that stood out, and where the anomaly map peaks."""
    out = []
    for text, anomaly_map in zip(evidence, maps):
        y, x = np.unravel_index(int(np.argmax(anomaly_map)), anomaly_map.shape)
        where = f"rebuilt worst around x={x}, y={y} ({float(anomaly_map[y, x]):.1f}x its typical error)"
        out.append(f"{text}; {where}" if text else where)
    return out


def _explain_flagged(folder: ScreeningFolder, detector: MaskedAutoencoderDetector, images: np.ndarray,
                     kinds: list[str], hits: pd.DataFrame, top_images: int
                     ) -> tuple[pd.DataFrame, dict[str, dict[str, Path]]]:
    """Write ``flagged.csv`` (``hits``: the flagged images' rows, most anomalous first, with their
    reasons and kind), ``most_anomalous.png`` and the report's record images into ``folder``;
    returns the report's first flagged rows and each shown image's PNG files by view."""
    id_column, columns = folder.id_column, [folder.id_column, "anomaly_score", "p_value", "reasons", "kind"]
    if not len(hits):
        return folder.write_flagged(hits, columns, REPORT_ROWS), {}
    picked = images[hits[ROW].to_numpy()]
    maps = detector.explain(picked)
    evidence = evidence_summary(detector.evidence_scores(picked), detector.evidence, IMAGE_EVIDENCE_WORDS)
    folder.add_flagged(hits.assign(reasons=_reasons(evidence, maps), kind=[kinds[i] for i in hits[ROW]])[[*columns, ROW]])
    top = folder.write_flagged(hits, columns, REPORT_ROWS)
    shown = max(REPORT_ROWS, top_images)  # the images the report and the grid show
    rebuilt = detector.reconstruct(picked[:shown])
    anomaly_grid(folder.tmp / GRID, picked[:shown], rebuilt, maps[:shown], hits["anomaly_score"].to_numpy()[:shown],
                 names=list(hits[id_column]), top_k=top_images)
    high = float(np.percentile(maps[:top_images], 99.5))  # the grid's colour scale
    (folder.tmp / RECORD_IMAGES).mkdir()
    pictures: dict[str, dict[str, Path]] = {}
    for i, path in enumerate(hits[id_column].head(REPORT_ROWS)):  # kept, so that a review can draw the report again
        pictures[path] = {}
        for view, png in record_pngs(picked[i], rebuilt[i], maps[i], high).items():
            pictures[path][view] = folder.tmp / RECORD_IMAGES / f"{i + 1:04d}-{view}.png"
            pictures[path][view].write_bytes(png)
    return top, pictures


def check_out_dir(folder: Path, out_dir: Path) -> None:
    """Refuse an output folder inside the image folder: its pictures and files would be read as
    images to screen the next time, and the same screening would then be refused as another."""
    if Path(out_dir).resolve().is_relative_to(Path(folder).resolve()):
        raise ValueError(f"the output folder {str(out_dir)!r} is inside the image folder {str(folder)!r}, whose "
                         f"every file is read as an image to screen: choose an output folder outside it")


def screen_images(folder_path: str | Path, model_ref: str | tracking.ResolvedModel, out_dir: Path, *,
                  top_images: int = 8) -> ScreenResult:
    """Screen the image folder ``folder_path`` and write the screening folder ``out_dir``.

    ``model_ref`` as for :func:`pipeline.screen.screen`; ``top_images``: how many flagged images
    ``most_anomalous.png`` shows.

    Raises
    ------
    FileNotFoundError
        The folder does not exist.
    ValueError
        It holds no readable image.
    SchemaError
        The model was trained on a table.
    FileChangedError
        The folder's files changed while it was screened.
    ModelNotFoundError, FileExistsError
        Unknown model or alias; ``out_dir`` holds something else.
    """
    started, folder_path, out_dir = now_utc(), Path(folder_path), Path(out_dir)
    check_out_dir(folder_path, out_dir)
    files = image_files(folder_path)
    resolved, source = tracking.resolve_model(model_ref), fingerprint(files, names_under=folder_path)
    previous = earlier_screening(out_dir, source["sha256"], resolved, folder_path.name)
    if previous is not None:
        return ScreenResult(out_dir, previous, reused=True)
    model = load_scoring_model(resolved, images=True)
    read = read_as_trained(folder_path, model.schema)
    images, paths, id_column = read.images, np.asarray(read.paths, dtype=object), model.schema["id_column"]
    tally = new_tally(model.calibration)
    with ScreeningFolder(out_dir, id_column) as folder:
        folder.add_quarantined(read.quarantined.rename(columns={"path": id_column}))
        tally.rows_quarantined = len(read.quarantined)
        chunks = (images[start:start + SCORE_IMAGES] for start in range(0, len(images), SCORE_IMAGES))
        rows = 0
        for scores in in_process_scorer(model)(chunks):
            span = np.arange(rows, rows + len(scores))
            tally.add(folder, pd.Series(paths[span]), span, scores)
            rows += len(scores)
        rule = tally.batch.finish(
            lambda: (c["anomaly_score"].to_numpy() for c in folder.unflagged_scores(["anomaly_score"])))
        hits = folder.flag_scores(rule.flags).sort_values("anomaly_score", ascending=False, kind="stable")
        top, pictures = _explain_flagged(folder, model.detector, images, read.kinds, hits, top_images)
        if fingerprint(image_files(folder_path), names_under=folder_path)["sha256"] != source["sha256"]:
            raise FileChangedError(f"{str(folder_path)!r} changed while it was screened; screen it again once it is complete")
        publish_screening(folder, tally, resolved, model.calibration, rule.threshold, hits, top, started=started,
                          source={"path": str(folder_path.resolve()), **{k: source[k] for k in ("sha256", "bytes")},
                                  "files": len(files), "image_size": model.schema["image_size"]},
                          unseen={}, params={"top_images": top_images}, images=pictures)
    return ScreenResult(out_dir, read_summary(out_dir), reused=False)
