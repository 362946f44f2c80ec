"""Save and load a fitted detector without pickle.

A saved detector is a folder: ``maskae.json`` (parameters, column encoding or image format, score
normalisation, thresholds — human-readable) and ``weights.safetensors`` (the network and every
learned array).
Loading a folder that holds anything else as weights (a pickle, a torch ``.pt``) is refused: no
code from a model file is ever executed.

Example
-------
>>> # det.save("model/"); MaskedAutoencoderDetector.load("model/")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from maskae.image_batch import ImageFormat
from maskae.neighbours import NeighbourSamples
from maskae.tails import CategoryTails, ColumnTails, RobustZTails
from maskae.table_encoding import TableEncoder

# 2: neighbour samples as one pool of rows + positions; 3: tails as column quantiles; 4: each column's
# tail probabilities on its own observed count (format 3: one grid over all rows, read as such);
# 5: max_categories (earlier models kept every category, and load with max_categories=None);
# 6: the nearest evidence (reference rows, their suspect distances) and weights per term (earlier
# models weigh every term the same, and have no nearest term); 7: each distance term's smallest
# training value, below which a record's is not read (earlier models read any distance as it is);
# 8: whether each category column read as an identifier or a date at fit (earlier models: none did);
# 9: each category column's tail probabilities (earlier models' tails read numbers only)
FORMAT_VERSION = 9
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
CONFIG_FILE = "maskae.json"
WEIGHTS_FILE = "weights.safetensors"
ARRAYS = ("error_scale_", "training_scores_", "calibration_scores_", "score_masks_")
TUPLE_PARAMS = ("evidence", "neighbour_sample_sizes", "cnn_widths", "patch_size")  # JSON has no tuples


def save_detector_state(detector, path: Path) -> Path:
    image_format = getattr(detector, "image_format_", None)
    config = {
        "format_version": FORMAT_VERSION,
        "params": detector.get_params(),
        "image_format": None if image_format is None else image_format.to_dict(),
        "threshold": detector.threshold_,
        "history": detector.history_,
        "evidence_center": detector.evidence_center_,
        "evidence_scale": detector.evidence_scale_,
        "evidence_floor": detector.evidence_floor_,
        "evidence_weights": detector.evidence_weights_,
        "nearest_k": detector.neighbours_.k,
    }
    neighbours = detector.neighbours_
    tensors = {f"network.{k}": v.contiguous() for k, v in detector.network_.state_dict().items()}
    tensors.update({"neighbours.pool": torch.from_numpy(neighbours.pool),
                    "neighbours.pool_ids": torch.from_numpy(neighbours.pool_ids)})
    tensors.update({f"neighbours.sample.{i}": torch.from_numpy(s) for i, s in enumerate(neighbours.samples)})
    tensors.update({"neighbours.reference": torch.from_numpy(neighbours.reference),
                    "neighbours.suspect": torch.from_numpy(neighbours.suspect)})
    tensors.update({name: torch.from_numpy(np.ascontiguousarray(getattr(detector, name))) for name in ARRAYS})
    if detector.backend == "mlp":
        config.update(
            encoder=detector.encoder_.to_dict(),
            feature_names_in=None if detector.feature_names_in_ is None else [str(c) for c in detector.feature_names_in_],
        )
        tensors.update({"tails.probabilities": torch.from_numpy(detector.tails_.probabilities),
                        "tails.quantiles": torch.from_numpy(detector.tails_.quantiles)})
        if detector.category_tails_ is not None:  # None: loaded from before format 9, saved again as it was
            tensors.update({f"category_tails.{j}": torch.from_numpy(shares)
                            for j, shares in enumerate(detector.category_tails_.shares)})
    path = Path(os.path.realpath(path))  # a link to an earlier save: that folder is the one replaced, the link kept
    _check_target(path)
    # Write beside the target, then swap in: a reader never sees a half-written model.
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    earlier = staging.with_name(staging.name + ".old")  # an earlier save, kept until the new one is in
    try:
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=_json_param))
        save_file(tensors, staging / WEIGHTS_FILE)
        _permit_as_a_new_file(staging)
        if path.exists():
            os.replace(path, earlier)
        try:
            os.replace(staging, path)
        except OSError:
            if earlier.exists():
                os.replace(earlier, path)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(earlier, ignore_errors=True)
    return path


def _json_param(value):
    """JSON for what ``json`` does not take among the parameters: NumPy scalars (a grid search over
    ``np.arange`` sets them) as numbers; a RandomState or Generator as None (scoring needs no seed)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.random.RandomState, np.random.Generator)):
        return None
    raise TypeError(f"cannot save a parameter of type {type(value).__name__}: {value!r}")


def _check_target(path: Path) -> None:
    """Refuse a target that is a file or a folder holding anything but a saved detector: saving
    replaces the folder, and must never delete a user's other files with it."""
    if path.is_file():
        raise ValueError(f"cannot save to {str(path)!r}: it is a file; a saved detector is a folder, name a new one")
    if path.is_dir():
        other = sorted(p.name for p in path.iterdir() if p.name not in (CONFIG_FILE, WEIGHTS_FILE))
        if other:
            shown = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
            raise ValueError(f"cannot save to {str(path)!r}: it holds other files ({shown}), which saving would "
                             f"replace; save into a folder of its own, e.g. {str(path / 'detector')!r}")


def _permit_as_a_new_file(folder: Path) -> None:
    """Give the staged folder and its weights the permissions the user's umask gave its config file,
    written the ordinary way (``mkdtemp`` makes the folder private to its owner, and a scoring
    service may run as another user); read from the file, as changing the umask to read it is not
    safe beside other threads."""
    mode = (folder / CONFIG_FILE).stat().st_mode & 0o666
    (folder / WEIGHTS_FILE).chmod(mode)
    folder.chmod(mode | (mode & 0o444) >> 2)  # a folder: searchable wherever it is readable


def load_detector_state(cls, path: Path):
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no such folder {str(path)!r}: give the folder save() wrote; check the path and the "
                                f"working directory")
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{path} is not a saved maskae detector: expected {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:  # a copy cut short, or another file
        raise ValueError(f"{config_path} is not a readable saved detector ({error}): save the detector again") from None
    version = config.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{config_path}: unsupported format_version {version!r}")
    try:
        tensors = load_file(weights_path)  # safetensors: plain arrays, never executes code
    except Exception as error:  # a pickle or torch file renamed to .safetensors lands here
        raise ValueError(f"{weights_path} is not a valid safetensors file ({error}); refusing to load it") from error
    params = config["params"]
    if version < 5:
        params.setdefault("max_categories", None)  # so that clone() refits as this model was fitted
    for name in TUPLE_PARAMS:
        if isinstance(params.get(name), list):
            params[name] = tuple(params[name])
    detector = cls(**params)
    image_format = config.get("image_format")
    detector.image_format_ = None if image_format is None else ImageFormat.from_dict(image_format)
    detector.threshold_ = config["threshold"]
    detector.offset_ = -detector.threshold_
    detector.history_ = config["history"]
    if detector.backend == "mlp":
        detector.encoder_ = TableEncoder.from_dict(config["encoder"])
        names = config["feature_names_in"]
        detector.feature_names_in_ = None if names is None else np.asarray(names, dtype=object)
        detector.n_features_in_ = len(detector.encoder_.columns_)
        detector.tails_ = (ColumnTails(tensors["tails.probabilities"].numpy(), tensors["tails.quantiles"].numpy())
                           if version >= 3 else RobustZTails(tensors["tail_center_"].numpy(), tensors["tail_scale_"].numpy()))
        keys = [f"category_tails.{j}" for j in range(len(detector.encoder_.categorical_))]
        detector.category_tails_ = (CategoryTails([tensors[k].numpy() for k in keys])
                                    if version >= 9 and all(k in tensors for k in keys) else None)
    if version == 1:
        _read_format_1_evidence(detector, config, tensors)
    else:
        detector.evidence_center_, detector.evidence_scale_ = config["evidence_center"], config["evidence_scale"]
        n_sizes = len(detector.neighbour_sample_sizes)
        detector.neighbours_ = NeighbourSamples(
            detector.neighbour_sample_sizes, tensors["neighbours.pool"].numpy(), tensors["neighbours.pool_ids"].numpy(),
            [tensors[f"neighbours.sample.{i}"].numpy() for i in range(n_sizes)],
        )
        if version >= 6:
            detector.neighbours_.reference = tensors["neighbours.reference"].numpy()
            detector.neighbours_.suspect = tensors["neighbours.suspect"].numpy()
            detector.neighbours_.k = config["nearest_k"]
    detector.evidence_weights_ = (config["evidence_weights"] if version >= 6
                                  else dict.fromkeys(detector.evidence_center_, 1.0))
    detector.evidence_floor_ = config["evidence_floor"] if version >= 7 else {}
    for name in ARRAYS:
        setattr(detector, name, tensors[name].numpy())
    detector.network_ = detector._build_network()
    detector.network_.load_state_dict({k[len("network."):]: v for k, v in tensors.items() if k.startswith("network.")})
    detector.network_.eval()
    return detector


def _read_format_1_evidence(detector, config: dict, tensors: dict) -> None:
    """Format 1 stored each table sample's rows in full and gave CNN models reconstruction
    evidence only (``score_center`` / ``score_scale``); they load and score as they did."""
    if detector.backend == "cnn":
        detector.set_params(evidence=("reconstruction",))
        detector.evidence_center_ = {"reconstruction": config["score_center"]}
        detector.evidence_scale_ = {"reconstruction": config["score_scale"]}
        detector.neighbours_ = NeighbourSamples((), np.zeros((0, 0), np.float32), np.zeros(0, np.int64), [])
        return
    detector.evidence_center_, detector.evidence_scale_ = config["evidence_center"], config["evidence_scale"]
    references = [tensors[f"neighbours.{i}"].numpy() for i in range(len(detector.neighbour_sample_sizes))]
    bounds = np.cumsum([0] + [r.shape[0] * r.shape[1] for r in references])
    pool = np.concatenate([r.reshape(-1, r.shape[2]) for r in references])
    # Training row numbers were not stored: copies of one row (in several samples) share one
    # number, so that the row scored again is not its own neighbour in any of them.
    same_row = np.unique(pool, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
    detector.neighbours_ = NeighbourSamples(
        detector.neighbour_sample_sizes, pool, same_row,
        [np.arange(lo, hi).reshape(r.shape[:2]) for lo, hi, r in zip(bounds, bounds[1:], references)],
    )
