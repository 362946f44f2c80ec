"""The training flow: read, validate, fit, calibrate, evaluate and register a model, on a table
(:mod:`pipeline.train`) or on a folder of images (:mod:`pipeline.image_train`).

Example
-------
>>> # from flows.training import train_flow
>>> # train_flow({"data": {"path": "history.csv", "id_column": "transaction_id"},
>>> #             "mlflow": {"model_name": "fraud"}})
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import flows  # noqa: F401  (sets the no-telemetry environment before prefect loads)
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import task_run

from flows.retries import transient
from pipeline.config import PipelineConfig
from pipeline.image_train import train_images
from pipeline.tracking import use_tracking
from pipeline.train import TrainResult, train


@task(name="train-calibrate-register", retries=2, retry_delay_seconds=5, retry_condition_fn=transient)
def train_and_register(config: PipelineConfig, workdir: Path) -> TrainResult:
    # Retries cover MLflow or the file store being briefly unavailable. The task run's id names the
    # request: a retry after the version was registered (naming it failed) finishes that version
    # instead of training and registering another.
    request_id = str(task_run.id) if task_run.id else None  # None: called outside a flow run
    return (train_images if config.data.format == "images" else train)(config, workdir, request_id)


@flow(name="maskae-train", log_prints=True)
def train_flow(config: dict[str, Any], workdir: str | None = None) -> dict[str, Any]:
    """Train on ``config`` (a :class:`PipelineConfig` as a dict); returns the registration."""
    settings = PipelineConfig.model_validate(config)
    root = Path(workdir or Path.cwd())
    use_tracking(root)
    result = train_and_register(settings, root)
    lines = [f"## Trained {result.model_name} v{result.version} ({', '.join(result.aliases)})", "",
             "| measure | value |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in asdict(result).items() if k not in {"metrics", "aliases"}]
    lines += [f"| {k} | {v:.4g} |" for k, v in result.metrics.items()]
    create_markdown_artifact("\n".join(lines), key="maskae-training", description="training summary")
    print(registered_line(asdict(result)))
    return asdict(result)


def registered_line(result: dict[str, Any]) -> str:
    """One line on what :func:`train_flow` registered (its returned dict), and how many rows (or
    images) it quarantined: they are in the run's ``quarantine`` artifact, with their reasons."""
    line = f"registered {result['model_name']} version {result['version']} as {', '.join(result['aliases'])}"
    if quarantined := result.get("rows_quarantined"):
        line += f"; {quarantined:,} of {result['rows_read']:,} rows quarantined (the run's quarantine/ artifact)"
    return line
