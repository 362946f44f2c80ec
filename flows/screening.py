"""Screening flows: one file (or a folder of images), and the nightly sweep of a folder of incoming files.

``screen_flow`` resolves the model, screens the file into its output folder and publishes a
markdown summary and a table of the top flagged records as Prefect artifacts. ``screen_incoming``
screens every file of a folder that has no completed output folder yet, so each file is screened
once however often the schedule fires.

With ``dask_workers`` or ``dask_address`` the chunks are scored by Prefect tasks on a Dask cluster
(prefect-dask's ``DaskTaskRunner``): a local cluster of that many single-threaded worker processes,
or the scheduler at that address. This process still reads, validates and writes, in order, with a
bounded number of chunks in flight, so the output is that of the single-process run (the scores up to
float rounding of a different thread count) and memory stays bounded on both sides. Each worker
loads the model once, from its own ``MLFLOW_TRACKING_URI``: a local cluster inherits this process's;
the workers of a remote cluster need it set to a tracking server they can reach.

Example
-------
>>> # screen_flow("today.csv", "fraud@champion", "maskae-runs/screening/today", dask_workers=4)
"""

from __future__ import annotations

import json
from collections import deque
from datetime import datetime
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import flows  # noqa: F401  (sets the no-telemetry environment before prefect loads)
import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.retries import transient
from pipeline.image_ingest import image_files
from pipeline.image_screen import screen_images
from pipeline.scoring import ScoringModel, load_scoring_model
from pipeline.screen import BATCH_ROWS, ChunkScorer, NothingScoredError, in_process_scorer, screen
from pipeline.screening_output import read_output_csv, read_summary
from pipeline.sources import fingerprint
from pipeline.config import CSV_COMPRESSIONS, IMAGES, format_from_suffix
from pipeline.tracking import ResolvedModel, data_kind, resolve_model, use_tracking

TOP_FLAGGED = 20


@task(name="resolve-model", retries=3, retry_delay_seconds=5, retry_condition_fn=transient)
def resolve(model_ref: str) -> ResolvedModel:
    # Pin the version once, so an alias moving mid-run cannot change the model half-way; the
    # alias it was reached by stays in the summary.
    return resolve_model(model_ref)


IN_FLIGHT_PER_WORKER = 2  # chunks queued per Dask worker: keeps workers busy, memory bounded


@lru_cache(maxsize=2)
def _worker_model(model_ref: str) -> ScoringModel:
    return load_scoring_model(model_ref)


@task(name="score-chunk", retries=2, retry_delay_seconds=2, retry_condition_fn=transient, cache_policy=NO_CACHE)
def score_chunk(model_ref: str, features: pd.DataFrame) -> np.ndarray:
    # Runs on a Dask worker: the model is loaded once per worker process, then reused. The tracking
    # URI comes from the worker's MLFLOW_TRACKING_URI (inherited by a local cluster), never from a
    # task parameter: Prefect stores parameters, and a server URI may hold credentials.
    return next(in_process_scorer(_worker_model(model_ref))([features]))


def dask_scorer(model_ref: str, in_flight: int) -> Any:
    """A ``screen(scorer=...)`` that submits each chunk as a :func:`score_chunk` task to the flow's task
    runner and yields the scores in chunk order, with at most ``in_flight`` chunks submitted ahead."""
    def scorer(_: ScoringModel) -> ChunkScorer:
        def scores(frames: Iterable[pd.DataFrame]) -> Iterator[np.ndarray]:
            running: deque = deque()
            for frame in frames:
                running.append(score_chunk.submit(model_ref, frame))
                if len(running) >= in_flight:
                    yield running.popleft().result()
            while running:
                yield running.popleft().result()
        return scores
    return scorer


@task(name="score-flag-report", retries=1, retry_delay_seconds=5, retry_condition_fn=transient)
def screen_file(data_path: str, model: ResolvedModel, out_dir: str, id_column: str | None, batch_rows: int
                ) -> dict[str, Any]:
    # A retry after a crash is safe: the output folder appears only once complete.
    if Path(data_path).is_dir():  # a folder of images
        return _result(screen_images(data_path, model, Path(out_dir)))
    return _result(screen(data_path, model, Path(out_dir), id_column=id_column, batch_rows=batch_rows))


def _result(screened: Any) -> dict[str, Any]:
    return {"out_dir": str(screened.out_dir), "summary": screened.summary, "reused": screened.reused}


@flow(name="maskae-screen-distributed")
def screen_distributed(data_path: str, model: ResolvedModel, out_dir: str, id_column: str | None, batch_rows: int,
                       in_flight: int) -> dict[str, Any]:
    """The screening with its chunks scored on the Dask cluster this flow's task runner points at."""
    return _result(screen(data_path, model, Path(out_dir), id_column=id_column, batch_rows=batch_rows,
                          scorer=dask_scorer(model.uri, in_flight)))


@task(name="publish-artifacts")
def publish(result: dict[str, Any]) -> None:
    summary, out_dir = result["summary"], Path(result["out_dir"])
    counts = {k: summary[k] for k in ("rows_in", "rows_scored", "rows_quarantined", "rows_flagged")}
    counts["unseen_categories"] = summary.get("unseen_categories") or {}  # not in screenings from before it was counted
    create_markdown_artifact(
        f"## Screening {out_dir.name}\n\n```json\n{json.dumps(counts | {'model': summary['model']}, indent=2)}\n```\n"
        f"Output folder: `{out_dir}`", key="maskae-screening", description="screening summary")
    flagged = out_dir / "flagged.csv"
    if flagged.exists():
        top = read_output_csv(flagged, nrows=TOP_FLAGGED).astype(str)
        create_table_artifact(top.to_dict("records"), key="maskae-top-flagged", description="top flagged records")


@flow(name="maskae-screen", log_prints=True)
def screen_flow(data_path: str, model: str, out_dir: str, id_column: str | None = None,
                workdir: str | None = None, batch_rows: int = BATCH_ROWS, dask_workers: int | None = None,
                dask_address: str | None = None) -> dict[str, Any]:
    """Screen one file, or a folder of images, with ``model`` (``NAME`` or ``NAME@ALIAS``) into
    ``out_dir``; a file with ``dask_workers`` (a local cluster) or ``dask_address`` (a running
    scheduler) on Dask."""
    use_tracking(Path(workdir or Path.cwd()))  # also sets MLFLOW_TRACKING_URI, which local workers inherit
    if Path(data_path).is_dir() and (dask_workers or dask_address or id_column):
        raise ValueError(f"{data_path!r} is a folder of images: they are screened in this process, not on Dask, "
                         f"and each is named by its path, not an id column")
    pinned = resolve(model)
    if dask_workers or dask_address:
        from prefect_dask import DaskTaskRunner

        if dask_address:
            runner = DaskTaskRunner(address=dask_address)
            in_flight = IN_FLIGHT_PER_WORKER * (dask_workers or 4)
        else:
            runner = DaskTaskRunner(cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1,
                                                    "processes": True, "dashboard_address": None})
            in_flight = IN_FLIGHT_PER_WORKER * dask_workers
        result = screen_distributed.with_options(task_runner=runner)(
            data_path, pinned, out_dir, id_column, batch_rows, in_flight)
    else:
        result = screen_file(data_path, pinned, out_dir, id_column, batch_rows)
    publish(result)
    print(screened_line(result))
    if (nothing := _nothing_scored(result["summary"], Path(data_path).name, Path(out_dir))) is not None:
        raise NothingScoredError(nothing)
    return result


def _nothing_scored(summary: dict[str, Any], name: str, out_dir: Path) -> str | None:
    """What to say of a screening where every row was quarantined; None when some row was scored."""
    if not summary["rows_in"] or summary["rows_scored"]:
        return None
    return (f"no row of {name} could be scored: all {summary['rows_in']:,} were quarantined; see "
            f"{out_dir / 'quarantine.csv'} for why")


def screened_line(result: dict[str, Any]) -> str:
    """One line on a screening (the dict :func:`screen_flow` returns)."""
    summary = result["summary"]
    records = "images" if "image_size" in summary["input"] else "rows"
    quarantined = f", {summary['rows_quarantined']} quarantined" if summary["rows_quarantined"] else ""
    return f"{summary['rows_flagged']} of {summary['rows_in']} {records} flagged{quarantined}; output in {result['out_dir']}"


@flow(name="maskae-screen-incoming", log_prints=True)
def screen_incoming(incoming: str, model: str, out_root: str, id_column: str | None = None,
                    workdir: str | None = None, dask_address: str | None = None) -> list[str]:
    """Screen each file of ``incoming`` that has no completed output folder under ``out_root``
    (on the Dask scheduler at ``dask_address`` when given); for an image model, each folder in it
    instead, as a batch of images (in this process). Move a batch in once it is complete: a rename
    is atomic, a copy is not.

    The output folder is named after the batch, less its format's suffix (``cards.2026-01-08.csv``
    -> ``cards.2026-01-08``). A batch that cannot be screened does not stop the others: the flow
    screens the rest, then fails naming each batch that failed and why."""
    use_tracking(Path(workdir or Path.cwd()))
    if not Path(incoming).is_dir():
        raise FileNotFoundError(f"no such incoming folder {incoming!r}: create it, or check the path")
    images, done, failed = data_kind(resolve_model(model)) == IMAGES, [], []
    for path in sorted(Path(incoming).iterdir()):
        if path.name.startswith("."):
            continue  # hidden: by convention a batch still being written
        if Path(out_root).resolve().is_relative_to(path.resolve()):
            print(f"skipping {path.name}: it holds the sweep's output folder {out_root}")
            continue
        # A batch is what the model reads: a folder of images, or a table's file by the suffix
        # that names its format in any case (CARDS.CSV, cards.csv.bz2), as screening reads it.
        if not (path.is_dir() if images else path.is_file() and format_from_suffix(path) is not None):
            what = "a folder" if path.is_dir() else "a file"
            print(f"skipping {path.name}: {what}, and the model reads {'folders of images' if images else 'CSV or Parquet files'}")
            continue
        out_dir = Path(out_root) / _batch_name(path)
        earlier = read_summary(out_dir)
        # the summary holds the path resolved: a link's target's name
        if earlier is not None and Path(earlier["input"]["path"]).name == path.resolve().name:
            # screened on an earlier night; another file's screening there is refused by screen_flow
            if (problem := _screened_problem(path, out_dir, earlier)) is not None:
                failed.append(f"{path.name}: {problem}")
                print(f"could not screen {failed[-1]}")
            continue
        try:
            screen_flow(str(path), model, str(out_dir), None if images else id_column, workdir,
                        dask_address=None if images else dask_address)
            done.append(str(out_dir))
        except Exception as error:  # noqa: BLE001 (one bad batch must not hold back the night's others)
            failed.append(str(error) if str(error).startswith(f"{path.name}: ") else f"{path.name}: {error}")
            print(f"could not screen {path.name}: {error}")
    print(f"screened {len(done)} new batch(es) from {incoming}")
    if failed:
        raise RuntimeError(f"{len(failed)} batch(es) in {incoming} could not be screened: " + "; ".join(failed))
    return done


def _screened_problem(path: Path, out_dir: Path, earlier: dict[str, Any]) -> str | None:
    """Why a batch screened on an earlier night into ``out_dir`` still needs someone, or None: it
    changed since (a batch replaced by a corrected export), or nothing in it could be scored. The
    sweep says so every night until the folder is moved away, rather than once."""
    fix = "move that folder away to screen it again"
    try:
        files, size, modified = _on_disk(path)
    except OSError as error:  # removed or unreadable since it was listed
        return f"removed or unreadable since it was listed ({error})"
    if size != earlier["input"]["bytes"]:
        return (f"changed since it was screened into {out_dir} ({earlier['input']['bytes']:,} bytes then, {size:,} "
                f"now; was it still being copied?): {fix}")
    # Same size: hashed again only when written or replaced after its screening began (this runs every night).
    if (modified >= datetime.fromisoformat(earlier["started_at"]).timestamp()
            and fingerprint(files, names_under=path if path.is_dir() else None)["sha256"] != earlier["input"]["sha256"]):
        return f"changed since it was screened into {out_dir} (same size, other bytes: a corrected export?): {fix}"
    if (nothing := _nothing_scored(earlier, path.name, out_dir)) is not None:
        return f"{nothing}; fix the file and {fix}"
    return None


def _on_disk(path: Path) -> tuple[list[Path], int, float]:
    """A batch's files (a file's self, a folder's images), their bytes as its fingerprint counts
    them (a link to nothing, none), and the latest time any of them or the folder was written or
    replaced: a copy that keeps the old modification time (cp -p, rsync -a) sets it back, which
    itself sets ctime to now; a folder's own times change as files are added, removed or renamed."""
    files = image_files(path) if path.is_dir() else [path]
    stats = [f.stat() for f in files if f.exists()]
    return files, sum(s.st_size for s in stats), max(max(s.st_mtime, s.st_ctime) for s in [path.stat(), *stats])


def _batch_name(path: Path) -> str:
    """An incoming file's name less the suffixes that name its format (``.csv``, ``.csv.gz``,
    ``.parquet``, ...: ``x.pq.csv`` is ``x.pq``, not ``x``); a folder's name as it is."""
    name = path.name
    if not path.is_file() or format_from_suffix(name) is None:
        return name
    suffixes = [s.lower() for s in Path(name).suffixes]
    compressed = suffixes[-2:-1] == [".csv"] and suffixes[-1] in CSV_COMPRESSIONS
    return name.rsplit(".", 2 if compressed else 1)[0]
