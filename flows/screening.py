"""Screening flows: one file, and the nightly sweep of a folder of incoming files.

``screen_flow`` resolves the model, screens the file into its output folder and publishes a
markdown summary and a table of the top flagged records as Prefect artifacts. ``screen_incoming``
screens every file of a folder that has no completed output folder yet, so each file is screened
once however often the schedule fires.

Example
-------
>>> # screen_flow("today.csv", "fraud@champion", "maskae-runs/screening/today")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import flows  # noqa: F401  (sets the no-telemetry environment before prefect loads)
import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline.screen import screen
from pipeline.tracking import resolve_model, use_tracking

TOP_FLAGGED = 20
INCOMING_SUFFIXES = (".csv", ".parquet", ".pq", ".gz")


@task(name="resolve-model", retries=3, retry_delay_seconds=5)
def resolve(model_ref: str) -> str:
    # Pin the version once, so an alias moving mid-run cannot change the model half-way.
    model = resolve_model(model_ref)
    return f"{model.name}/{model.version}"


@task(name="score-flag-report", retries=1, retry_delay_seconds=5)
def screen_file(data_path: str, model_ref: str, out_dir: str, id_column: str | None) -> dict[str, Any]:
    # A retry after a crash is safe: the output folder appears only once complete.
    result = screen(data_path, model_ref, Path(out_dir), id_column=id_column)
    return {"out_dir": str(result.out_dir), "summary": result.summary, "reused": result.reused}


@task(name="publish-artifacts")
def publish(result: dict[str, Any]) -> None:
    summary, out_dir = result["summary"], Path(result["out_dir"])
    counts = {k: summary[k] for k in ("rows_in", "rows_scored", "rows_quarantined", "rows_flagged")}
    create_markdown_artifact(
        f"## Screening {out_dir.name}\n\n```json\n{json.dumps(counts | {'model': summary['model']}, indent=2)}\n```\n"
        f"Output folder: `{out_dir}`", key="maskae-screening", description="screening summary")
    flagged = out_dir / "flagged.csv"
    if flagged.exists():
        top = pd.read_csv(flagged, nrows=TOP_FLAGGED).astype(str)
        create_table_artifact(top.to_dict("records"), key="maskae-top-flagged", description="top flagged records")


@flow(name="maskae-screen", log_prints=True)
def screen_flow(data_path: str, model: str, out_dir: str, id_column: str | None = None,
                workdir: str | None = None) -> dict[str, Any]:
    """Screen one file with ``model`` (``NAME`` or ``NAME@ALIAS``) into ``out_dir``."""
    use_tracking(Path(workdir or Path.cwd()))
    pinned = resolve(model)
    result = screen_file(data_path, pinned, out_dir, id_column)
    publish(result)
    summary = result["summary"]
    print(f"{summary['rows_flagged']} of {summary['rows_in']} rows flagged; output in {result['out_dir']}")
    return result


@flow(name="maskae-screen-incoming", log_prints=True)
def screen_incoming(incoming: str, model: str, out_root: str, id_column: str | None = None,
                    workdir: str | None = None) -> list[str]:
    """Screen each file of ``incoming`` that has no completed output folder under ``out_root``."""
    done = []
    for path in sorted(Path(incoming).iterdir()):
        out_dir = Path(out_root) / path.name.split(".")[0]
        if not path.is_file() or path.suffix not in INCOMING_SUFFIXES or (out_dir / "summary.json").exists():
            continue
        screen_flow(str(path), model, str(out_dir), id_column, workdir)
        done.append(str(out_dir))
    print(f"screened {len(done)} new file(s) from {incoming}")
    return done
