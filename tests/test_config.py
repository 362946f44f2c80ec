"""Pipeline configuration: TOML loading, overrides, field-named errors and output path safety."""

import doctest
import inspect

import pytest

import pipeline.config
from pipeline.config import ConfigError, PipelineConfig, format_from_suffix, load_config, path_inside

TOML = """
[data]
path = "batches/*.parquet"
id_column = "txn_id"
label_column = "is_fraud"
column_types = { mcc = "categorical" }

[model]
max_steps = 50
random_state = 0

[calibration]
strategy = "fdr"
level = 0.05

[output]
root = "{root}"

[mlflow]
model_name = "card-fraud"
"""


def test_module_example_runs():
    assert doctest.testmod(pipeline.config).failed == 0


def test_config_from_toml_with_defaults_and_overrides(tmp_path):
    path = tmp_path / "screening.toml"
    path.write_text(TOML.replace("{root}", str(tmp_path / "runs")))
    config = load_config(path)
    assert config.data.format == "parquet" and config.data.column_types == {"mcc": "categorical"}
    params = config.model.detector_params(images=False)
    assert (params["max_steps"], params["mask_ratio"]) == (50, 0.3)
    calibration = config.calibration
    assert (calibration.strategy, calibration.level, calibration.calibration_fraction) == ("fdr", 0.05, 0.2)
    assert config.mlflow.experiment == "card-fraud"  # defaults to the model name
    flags = {"model.max_steps": 7, "calibration.level": None, "data.path": "new.csv"}  # None: flag not given
    again = load_config(path, overrides=flags)
    assert (again.model.max_steps, again.calibration.level, again.data.format) == (7, 0.05, "csv")
    built = PipelineConfig.model_validate(again.model_dump())
    assert built == again


def test_model_defaults_match_the_detector():
    from maskae import MaskedAutoencoderDetector  # imports torch, builds nothing

    defaults = inspect.signature(MaskedAutoencoderDetector).parameters
    model = PipelineConfig.model_validate({"data": {"path": "a.csv", "id_column": "i"}}).model
    for name, value in model.detector_params(images=False).items():
        assert defaults[name].default == value, name
    assert model.detector_params(images=True)["backend"] == "cnn"


def test_a_folder_is_read_as_images(tmp_path):
    (tmp_path / "good").mkdir()
    config = load_config(overrides={"data.path": str(tmp_path / "good"), "model.max_steps": 9})
    assert (config.data.format, config.data.id_column, config.data.image_size) == ("images", "path", 64)
    params = config.model.detector_params(images=True)
    assert (params["backend"], params["batch_size"], params["max_steps"]) == ("cnn", 16, 9)  # set values stand
    for table_only in ({"data.label_column": "y"}, {"data.id_column": "file"}, {"data.exclude_columns": ["x"]}):
        with pytest.raises(ConfigError, match="are for tables; an image folder has none"):
            load_config(overrides={"data.path": str(tmp_path / "good"), **table_only})
    with pytest.raises(ConfigError, match="model.backend 'cnn' reads images"):
        load_config(overrides={"data.path": "a.csv", "data.id_column": "i", "model.backend": "cnn"})
    with pytest.raises(ConfigError, match="data.id_column: required for tables"):
        load_config(overrides={"data.path": "a.csv"})


@pytest.mark.parametrize("overrides, field", [
    ({"model.mask_ratio": 1.5}, "model.mask_ratio"),
    ({"model.max_steps": 0}, "model.max_steps"),
    ({"model.backend": "transformer"}, "model.backend"),
    ({"model.contamination": 0.7}, "model.contamination"),
    ({"model.neighbour_sample_sizes": [64, 0]}, "model.neighbour_sample_sizes.1"),
    ({"calibration.strategy": "magic"}, "calibration.strategy"),
    ({"calibration.level": 2.0}, "calibration.level"),
    ({"calibration.strategy": "budget", "calibration.level": 2.5}, "calibration.level"),
    ({"calibration.calibration_fraction": 0}, "calibration.calibration_fraction"),
    ({"data.path": "batch.txt"}, "data.format"),
    ({"data.columns": ["amount", "txn_id"]}, "data.columns"),
    ({"data.column_types": {"amount": "text"}}, "data.column_types.amount"),
    ({"data.columns": ["amount"], "data.exclude_columns": ["ts"]}, "data.exclude_columns"),
    ({"data.exclude_columns": ["ts"], "data.column_types": {"ts": "numeric"}}, "data.column_types"),
    ({"mlflow.model_name": "../models"}, "mlflow.model_name"),
    ({"model.max_step": 5}, "model.max_step: unknown setting (did you mean 'max_steps'?)"),
    ({"mlflow.tracking_uri": "sqlite:///m.db"}, "unknown setting: the store is set by the environment variable "
                                                "MLFLOW_TRACKING_URI"),
    ({"calibration.strategy": "labels"}, "data.label_column"),
    ({"data.label_column": "txn_id"}, "data.label_column: 'txn_id' is the id column too"),
])
def test_bad_values_name_the_field(overrides, field):
    base = {"data.path": "batch.csv", "data.id_column": "txn_id"}
    with pytest.raises(ConfigError) as raised:
        load_config(overrides={**base, **overrides})
    assert field in str(raised.value)


def test_missing_section_bad_toml_and_missing_file_are_named(tmp_path):
    with pytest.raises(ConfigError, match="data: required"):
        load_config(overrides={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[data\npath = 1")
    with pytest.raises(ConfigError, match="broken.toml.*TOML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="absent.toml"):
        load_config(tmp_path / "absent.toml")


def test_output_paths_cannot_escape_the_root(tmp_path):
    config = load_config(overrides={"data.path": "a.csv", "data.id_column": "i", "output.root": str(tmp_path / "runs")})
    assert config.output.path("run-1", "scores.parquet") == (tmp_path / "runs" / "run-1" / "scores.parquet").resolve()
    for escape in ["../../etc", "/etc/passwd", "run-1/../../x", ".", ""]:
        with pytest.raises(ValueError, match="escapes the output root"):
            config.output.path(escape)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="escapes"):
        path_inside(tmp_path / "runs", "link", "outside.json")


@pytest.mark.parametrize("name, fmt", [
    ("cards.csv", "csv"), ("CARDS.CSV", "csv"), ("cards.2026-01-09.csv.gz", "csv"), ("cards.csv.BZ2", "csv"),
    ("cards.parquet", "parquet"), ("cards.pq", "parquet"),
    # Parquet compresses inside the file; a compressor pandas lacks, no suffix, a date as the suffix
    ("cards.parquet.gz", None), ("cards.csv.zst", None), ("cards", None), ("cards.2026-01-09", None), ("cards.gz", None),
])
def test_the_format_is_read_from_the_suffixes_in_any_case(name, fmt):
    assert format_from_suffix(name) == fmt
