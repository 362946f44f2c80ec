"""The screening pipeline's configuration: one validated object, read from TOML or built from flags.

Sections: ``data`` (where the batch is and which columns matter, or a folder of images), ``model`` (detector settings),
``calibration`` (how scores become flags), ``output`` (the folder that runs are written under) and
``mlflow`` (registered model and experiment). Unknown keys are refused, so a typo cannot silently
fall back to a default. Relative paths are taken relative to the working directory.

Example
-------
>>> config = PipelineConfig.model_validate({"data": {"path": "batches/*.csv", "id_column": "txn_id"}})
>>> config.data.format, config.calibration.strategy, config.calibration.level
('csv', 'fpr', 0.01)
>>> config.output.path("../../etc")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: output path '../../etc' escapes the output root ...
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

SUFFIX_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
CSV_COMPRESSIONS = (".gz", ".bz2", ".zip", ".xz")  # those pandas reads without an optional package
IMAGES = "images"  # data.format of a folder of images, and the schema kind of a model trained on one
IMAGE_ID = "path"  # an image is identified by its path inside the folder
# Registered model names end up in URIs such as ``models:/<name>@champion``: keep them URI-safe.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


class ConfigError(ValueError):
    """The configuration could not be read or is invalid; the message names file and field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def format_from_suffix(path: str | Path) -> str | None:
    """``"csv"`` or ``"parquet"`` from a path's suffixes in any case, else None. A CSV may be
    compressed (``.csv.gz``, ``.csv.bz2``, ``.csv.zip``, ``.csv.xz``: pandas reads them as they are);
    a Parquet file compresses inside itself, so ``.parquet.gz`` says no format that can be read."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes[-2:-1] == [".csv"] and suffixes[-1] in CSV_COMPRESSIONS:
        return "csv"
    return SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None


class DataConfig(_Section):
    """Where the batch is and which of its columns the model uses; or a folder of images."""

    path: str = Field(min_length=1, description="file or glob pattern of the batch files, or a folder of images")
    format: Literal["csv", "parquet", "images"] | None = Field(None, validate_default=True)
    id_column: str | None = Field(None, min_length=1, validate_default=True,
                                  description="required for tables; images are named by their path")
    label_column: str | None = None
    columns: list[str] | None = Field(None, description="feature columns; default all but id and label")
    exclude_columns: list[str] = Field([], description="columns that are not features, with the default columns "
                                                       "(identifiers, timestamps)")
    column_types: dict[str, Literal["numeric", "categorical"]] = {}
    max_rows: int = Field(1_000_000, ge=100, description="training rows; larger data are sampled uniformly")
    image_size: int = Field(64, ge=8, description="images are read resized to this many pixels square")

    @field_validator("format")
    @classmethod
    def _infer_format(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and "path" in info.data:
            value = IMAGES if Path(info.data["path"]).is_dir() else format_from_suffix(info.data["path"])
            if value is None and not any(char in info.data["path"] for char in "*?[") and not Path(
                    info.data["path"]).exists():
                raise ValueError(f"no such file or folder: {info.data['path']!r}; check the path and the working "
                                 f"directory")
            if value is None:
                raise ValueError(f"cannot tell the format from {info.data['path']!r}: set format = 'csv' or "
                                 f"'parquet', or give a folder of images")
        return value

    @field_validator("id_column")
    @classmethod
    def _id_for_tables(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("format") == IMAGES:
            return IMAGE_ID
        if value is None and info.data.get("format") is not None:
            raise ValueError("required for tables: name the column that identifies each record")
        return value

    @field_validator("label_column")
    @classmethod
    def _label_is_not_the_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value == info.data.get("id_column"):
            raise ValueError(f"{value!r} is the id column too: name the column that holds the labels (1 = known "
                             f"anomaly), or leave the label out")
        return value

    @field_validator("columns")
    @classmethod
    def _check_columns(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("list at least one feature column, or leave columns out to use all of them")
        repeated = sorted({c for c in value if value.count(c) > 1})
        if repeated:
            raise ValueError(f"column(s) {repeated} are listed more than once")
        reserved = [c for c in value if c in (info.data.get("id_column"), info.data.get("label_column"))]
        if reserved:
            raise ValueError(f"{reserved} is the id or label column and cannot also be a feature")
        return value

    @field_validator("exclude_columns")
    @classmethod
    def _check_excluded(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if value and info.data.get("columns") is not None:
            raise ValueError("list the feature columns or the columns to exclude, not both")
        return value

    @field_validator("column_types")
    @classmethod
    def _check_types(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        reserved = {info.data.get("id_column"), info.data.get("label_column"), *info.data.get("exclude_columns", [])}
        allowed = info.data.get("columns")
        unknown = [c for c in value if c in reserved or (allowed is not None and c not in allowed)]
        if unknown:
            raise ValueError(f"{unknown} are not feature columns (features: {allowed or 'all but id and label'})")
        return value


class ModelConfig(_Section):
    """Detector settings. Defaults are MaskedAutoencoderDetector's (a test keeps them in step);
    those left None depend on the kind of data: see :meth:`detector_params`."""

    backend: Literal["mlp", "cnn"] | None = Field(None, description="default: cnn for images, mlp for tables")
    mask_ratio: float | None = Field(None, gt=0, lt=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    patch_size: int = Field(8, ge=1, description="images: side in pixels of the hidden square patches")
    # Training data vetted clean (e.g. confirmed-genuine only): [256, 1024] and 0.01 (README).
    neighbour_sample_sizes: tuple[Annotated[int, Field(ge=1)], ...] = Field((16, 64, 256), min_length=1)
    contamination: float = Field(
        0.1, gt=0, le=0.5,
        description="share of training rows taken to be anomalous: left out of the second half of training and of the neighbour samples",
    )
    max_categories: int = Field(
        256, ge=1, description="categories kept per categorical column with more values, the most frequent; the "
                               "rest read as 'other'")
    random_state: int | None = Field(None, ge=0)

    def detector_params(self, images: bool) -> dict[str, Any]:
        """The settings as ``MaskedAutoencoderDetector`` arguments, those left None filled with the
        defaults for tables (the detector's own) or for images (``IMAGE_DEFAULTS``)."""
        params = self.model_dump()
        kind_defaults = IMAGE_DEFAULTS if images else TABLE_DEFAULTS
        return {k: kind_defaults[k] if v is None and k in kind_defaults else v for k, v in params.items()}


# Tables: the detector's defaults. Images: a CNN with the settings of the images benchmark (bottle,
# 64 px): a table-sized batch of 256 images per step would make a fit on 2 CPU cores take an hour.
TABLE_DEFAULTS = {"backend": "mlp", "mask_ratio": 0.3, "max_steps": 1000, "batch_size": 256}
IMAGE_DEFAULTS = {"backend": "cnn", "mask_ratio": 0.5, "max_steps": 500, "batch_size": 16}


class CalibrationConfig(_Section):
    """Mirrors ``maskae.calibration.Calibration``: ``level`` means alpha (fpr), q (fdr), a count or
    fraction (budget), or the precision/recall target of ``objective`` (labels)."""

    strategy: Literal["fpr", "fdr", "budget", "labels"] = "fpr"
    objective: Literal["f1", "precision", "recall"] = "f1"
    level: float | None = Field(None, validate_default=True)
    calibration_fraction: float = Field(0.2, gt=0, lt=1)

    @field_validator("level")
    @classmethod
    def _check_level(cls, level: float | None, info: ValidationInfo) -> float | None:
        strategy, objective = info.data.get("strategy"), info.data.get("objective")
        if strategy is None or objective is None:
            return level  # already reported as invalid
        if strategy == "labels":
            if (objective == "f1") != (level is None):
                need = "no level" if objective == "f1" else "a level in (0, 1]"
                raise ValueError(f"strategy 'labels' with objective {objective!r} needs {need}")
            if level is not None and not 0 < level <= 1:
                raise ValueError(f"a {objective} target must be in (0, 1], got {level}")
            return level
        if level is None:
            return 0.01  # Calibration.fit's default
        if strategy == "budget":
            if not (0 < level < 1 or (level >= 1 and float(level).is_integer())):
                raise ValueError(f"budget level must be a fraction in (0, 1) or a whole count >= 1, got {level}")
            return int(level) if level >= 1 else level
        if not 0 < level < 1:
            raise ValueError(f"{strategy} level must be in (0, 1), got {level}")
        return level


def path_inside(root: str | Path, *parts: str | Path) -> Path:
    """``root / parts`` resolved (symlinks and ``..`` followed); ValueError unless strictly inside root."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target == base or not target.is_relative_to(base):
        shown = str(Path(*parts)) if parts else ""
        raise ValueError(f"output path {shown!r} escapes the output root {str(base)!r}: use a relative path inside it")
    return target


class OutputConfig(_Section):
    """The folder that screening runs are written under."""

    root: Path = Path("maskae-runs")

    def path(self, *parts: str | Path) -> Path:
        """A path under ``root`` for run folders and files; refuses ``..``, absolute paths and links out."""
        return path_inside(self.root, *parts)


class MlflowConfig(_Section):
    """The registered model (one per use case) and the experiment its runs are logged to."""

    model_name: str = "maskae-screening"
    experiment: str | None = Field(None, validate_default=True, description="default: model_name")

    @field_validator("model_name")
    @classmethod
    def _uri_safe(cls, value: str) -> str:
        if not MODEL_NAME.match(value):
            raise ValueError(f"{value!r}: use letters, digits, '_', '.' and '-' (it goes into models:/<name>@alias)")
        return value

    @field_validator("experiment")
    @classmethod
    def _default_experiment(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value or info.data.get("model_name")


class PipelineConfig(_Section):
    """Everything one screening use case needs; only ``data.path`` and ``data.id_column`` are required."""

    data: DataConfig
    model: ModelConfig = ModelConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    output: OutputConfig = OutputConfig()
    mlflow: MlflowConfig = MlflowConfig()

    @model_validator(mode="after")
    def _labels_need_a_label_column(self) -> "PipelineConfig":
        if self.calibration.strategy == "labels" and self.data.label_column is None:
            raise ValueError("calibration.strategy 'labels' needs data.label_column: name the column holding the labels")
        return self

    @model_validator(mode="after")
    def _settings_fit_the_kind_of_data(self) -> "PipelineConfig":
        data = self.data
        if self.model.backend == "cnn" and data.format != IMAGES:
            raise ValueError(f"model.backend 'cnn' reads images, and data.path {data.path!r} is not a folder of "
                             f"images: use backend 'mlp' for tables")
        if data.format == IMAGES and (data.label_column or data.columns or data.column_types or data.exclude_columns
                                      or data.id_column != IMAGE_ID):
            raise ValueError("data.id_column, label_column, columns, exclude_columns and column_types are for "
                             f"tables; an image folder has none (an image's id is its {IMAGE_ID!r})")
        return self


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """``raw["model"]["max_steps"] = value`` for ``key="model.max_steps"``."""
    *sections, name = key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key!r}: {section!r} is not a section")
    node[name] = value


# Settings people look for in the config that live elsewhere, and where.
ELSEWHERE = {"mlflow.tracking_uri": ": the store is set by the environment variable MLFLOW_TRACKING_URI, so that "
                                    "train, screen and promote all find the one registry"}


def _describe(error: ValidationError, flags: Mapping[str, str]) -> str:
    """``field.path: what is wrong (got value)`` per problem, ``"; "``-joined, with spelling hints,
    and the command-line flag that sets the field when ``flags`` (dotted key -> flag) has one."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            message = "required, but not set"
        elif problem["type"] == "extra_forbidden":
            section = PipelineConfig
            for part in problem["loc"][:-1]:
                section = section.model_fields[part].annotation if isinstance(part, str) else section
            close = difflib.get_close_matches(str(problem["loc"][-1]), list(getattr(section, "model_fields", {})), 1)
            message = "unknown setting" + (f" (did you mean {close[0]!r}?)" if close else "")
            message += ELSEWHERE.get(where, "")
        elif problem["type"] != "value_error":
            message += f" (got {problem['input']!r})"
        where += f" ({flags[where]})" if where in flags else ""
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                flags: Mapping[str, str] | None = None) -> PipelineConfig:
    """Read a TOML config, apply overrides, validate once.

    Parameters
    ----------
    path : str or Path or None, default=None
        TOML file with the sections above; None starts from an empty config (overrides only).
    overrides : mapping of str to value, default=None
        Dotted keys such as ``{"model.max_steps": 50}``, e.g. from command-line flags; values that
        are None (flags not given) are skipped, so the file's value stands.
    flags : mapping of str to str, default=None
        The command-line flag of each dotted key (``{"data.id_column": "--id-col"}``), named in
        errors beside the field.

    Returns
    -------
    PipelineConfig

    Raises
    ------
    ConfigError
        The file is missing or not valid TOML, or a value is invalid (each field named).
    """
    source = f" {str(path)!r}" if path is not None else ""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(f"cannot read config{source}: {error.strerror or error}") from error
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config{source} is not valid TOML: {error}") from error
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, key, value)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"invalid config{source}: {_describe(error, flags or {})}") from error
