"""The ``maskae`` command line: every command but ``review`` runs a Prefect flow on the embedded defaults.

``review`` is an analyst's quick step on one run folder (:mod:`pipeline.review`), with no schedule or
retries to gain from a flow.

With nothing configured, MLflow keeps its runs and registry in ``./mlflow.db`` (artifacts in
``./mlartifacts``) and Prefect runs flows on its temporary local API; ``MLFLOW_TRACKING_URI`` and
``PREFECT_API_URL`` point them at servers instead. Errors are one clear line (``MASKAE_DEBUG=1``
shows the traceback). A command's result is one line on stdout, for scripts; the flow's log, with
the same line, goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


# The config key each of maskae train's flags sets (errors name the flag beside the key).
TRAIN_FLAGS = {
    "data.path": "--data", "data.id_column": "--id-col", "data.label_column": "--label-col",
    "data.columns": "--columns", "data.exclude_columns": "--exclude-columns", "data.image_size": "--image-size",
    "mlflow.model_name": "--model-name", "model.backend": "--backend", "model.max_steps": "--max-steps",
    "model.random_state": "--seed", "calibration.strategy": "--strategy", "calibration.level": "--level",
}


def _versions() -> str:
    """maskae's version and those of the libraries that decide its results, as a bug report wants
    them (read from the installed packages' metadata: no import of torch or mlflow)."""
    from importlib.metadata import version

    return "maskae " + version("maskae") + " (" + ", ".join(
        f"{name} {version(name)}" for name in ("torch", "scikit-learn", "mlflow", "prefect")) + f", python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskae", description="Batch anomaly detection with masked autoencoders.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # --version: one line
    parser.add_argument("--version", action="version", version=_versions())
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, calibrate and register a model version")
    train.add_argument("--data", help="CSV or Parquet file, or a glob of them; or a folder of good images")
    train.add_argument("--config", help="TOML config file; flags override its values")
    train.add_argument("--model-name", help="registered model name (one per use case)")
    train.add_argument("--id-col", help="record id column (required for tables)")
    train.add_argument("--label-col", help="label column (1 = known anomaly): such rows never train")
    train.add_argument("--columns", type=_names, help="feature columns, comma-separated (default: all but id and label)")
    train.add_argument("--exclude-columns", type=_names, help="columns that are not features, comma-separated "
                                                              "(identifiers, timestamps)")
    train.add_argument("--backend", choices=["mlp", "cnn"], help="network backend (default: cnn for images, mlp for tables)")
    train.add_argument("--image-size", type=int, help="images: read at this many pixels square (default 64)")
    train.add_argument("--max-steps", type=int, help="training budget in optimisation steps")
    train.add_argument("--strategy", choices=["fpr", "fdr", "budget", "labels"], help="threshold strategy")
    train.add_argument("--level", type=float, help="alpha (fpr), q (fdr), fraction or count (budget)")
    train.add_argument("--seed", type=int, help="random seed (repeatable training)")

    screen = commands.add_parser("screen", help="score a batch and write flagged records, report and summary")
    screen.add_argument("--data", required=True, help="CSV or Parquet file to screen, or a folder of images")
    screen.add_argument("--model", required=True, help="NAME or NAME@ALIAS (default alias: champion)")
    screen.add_argument("--out", required=True, help="output folder of this screening run")
    screen.add_argument("--id-col", help="record id column (default: the one the model was trained with)")
    screen.add_argument("--batch-rows", type=int, default=50_000, help="rows read and scored at a time (default 50000)")
    screen.add_argument("--dask-workers", type=int, help="score chunks on a local Dask cluster of this many workers")
    screen.add_argument("--dask-address", help="score chunks on the Dask scheduler at this address (tcp://host:8786)")

    promote = commands.add_parser("promote", help="move champion to the challenger if it is better on labels, or "
                                                  "to a version named by hand (--version: a rollback)")
    promote.add_argument("--model", required=True, help="registered model name")
    labels = promote.add_mutually_exclusive_group(required=True)
    labels.add_argument("--data", help="labelled evaluation data (with --label-col), or a folder of images "
                                       "labelled by subfolder (good = normal)")
    labels.add_argument("--verdicts-from", help="folder of screening runs: their analysts' verdicts are the labels "
                                                "(flagged records only, so biased toward them)")
    labels.add_argument("--version", help="make this version champion by hand (a rollback), no comparison; "
                                          "challenger moves with champion when it is the version left")
    promote.add_argument("--note", default="", help="with --version: why, recorded with the decision")
    promote.add_argument("--label-col", help="label column of --data (1 = confirmed anomaly)")
    promote.add_argument("--metric", choices=["auprc", "auroc"], help="compared metric (default auprc)")
    promote.add_argument("--margin", type=float, help="required improvement (default 0)")
    promote.add_argument("--max-fpr", type=float, help="largest acceptable realised false-positive rate")
    promote.add_argument("--min-anomalies", type=int, help="fewest labelled anomalies a promotion may rest on "
                                                           "(default 10)")

    review = commands.add_parser("review", help="attach an analyst's verdicts to a screening run")
    review.add_argument("--run", required=True, help="the screening run's output folder")
    review.add_argument("--verdicts", required=True, help="CSV of id, outcome (fraud / legitimate; images: defect / "
                                                          "good), optional note")

    serve = commands.add_parser("serve", help="serve the nightly screening of an incoming folder")
    serve.add_argument("--incoming", required=True, help="folder where new files arrive")
    serve.add_argument("--model", required=True, help="NAME or NAME@ALIAS")
    serve.add_argument("--out", required=True, help="root folder of the screening outputs")
    serve.add_argument("--cron", default="0 2 * * *", help="schedule (default: 02:00 every night)")
    serve.add_argument("--every", type=float, help="run every N seconds instead of the cron schedule")
    serve.add_argument("--id-col", help="record id column")
    serve.add_argument("--dask-address", help="score on the Dask scheduler at this address (tcp://host:8786)")

    demo = commands.add_parser("demo", help="generate card transactions, train, register and screen a new day")
    demo.add_argument("--customers", type=int, default=3000, help="customers to simulate (default 3000)")
    demo.add_argument("--top", type=int, default=10, help="how many flagged records to print (default 10)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="maskae-runs/demo", help="folder for the demo's data and outputs")
    return parser


def _preflight(data: str | None = None, models: tuple[str, ...] = (), fmt: str | None = None,
               out: str | None = None, id_column: str | None = None, one_file: str | None = None,
               label_column: str | None = None) -> None:
    """Catch the usual mistakes (no such file, an empty one, no such model or alias, data of the
    other kind than a model reads, a table without a model's columns or the label column, an
    output folder inside the image folder) before a flow starts, so they read as one line at once
    rather than a failed flow run's log after Prefect's start. ``models``: the references the
    command reads the data with (a comparison names each in its errors). ``one_file``: what to do
    instead, for a command that reads one table file, not a glob of them."""
    from maskae.table_encoding import near_names_hint
    from pipeline.image_ingest import IMAGE_SUFFIXES, image_files
    from pipeline.image_screen import check_out_dir
    from pipeline.ingest import SchemaError, iter_batches
    from pipeline.screen import check_columns, check_out_free
    from pipeline.sources import source_files
    from pipeline.tracking import few, resolve_model, use_tracking

    use_tracking(Path.cwd())
    if out is not None:
        check_out_free(Path(out))
    if data is not None and Path(data).is_dir():  # a folder is read as images
        if out is not None:
            check_out_dir(Path(data), Path(out))
        if not any(path.suffix.lower() in IMAGE_SUFFIXES for path in image_files(data)):
            tables = "give one file" + (f" ({one_file})" if one_file else f", or a glob like '{Path(data) / '*.csv'}'")
            raise ValueError(f"{data} holds no image file (expected {', '.join(IMAGE_SUFFIXES)}): a folder is read "
                             f"as images; for a table {tables}")
    if data is not None and not Path(data).is_dir():
        files = source_files(data)
        if one_file and files != [Path(data)]:
            raise ValueError(f"{data!r} is a glob of {len(files):,} file(s): this command reads one table file; {one_file}")
        for file in files:
            batches = iter_batches(file, fmt, batch_rows=1, short_lines=False)  # checks name, size, header
            if label_column and label_column not in (header := next(batches).columns):
                raise SchemaError(f"label column {label_column!r} (--label-col) is not in {file.name}"
                                  f"{near_names_hint([label_column], header)}; it has {few(list(header))}")
    for model in models:
        resolved = resolve_model(model)
        if data is None:
            continue
        try:
            check_columns(data, model, id_column)
        except SchemaError as error:  # of two versions, which one
            raise (SchemaError(f"{model} (version {resolved.version}) cannot read it: {error}") if len(models) > 1
                   else error) from None


def _train(args: argparse.Namespace) -> None:
    from flows.training import registered_line, train_flow
    from pipeline.config import IMAGES, load_config
    from pipeline.train import check_named_columns

    config = load_config(args.config, {key: getattr(args, flag[2:].replace("-", "_")) for key, flag in TRAIN_FLAGS.items()},
                         flags=TRAIN_FLAGS)
    _preflight(data=config.data.path, fmt=config.data.format)
    if config.data.format != IMAGES:
        check_named_columns(config.data)
    print(registered_line(train_flow(config.model_dump(mode="json"), workdir=str(Path.cwd()))))


def _screen(args: argparse.Namespace) -> None:
    from flows.screening import screen_flow, screened_line

    for flag, value in (("--batch-rows", args.batch_rows), ("--dask-workers", args.dask_workers)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    _preflight(data=args.data, models=(args.model,), out=args.out, id_column=args.id_col,
               one_file="screen each, or let `maskae serve` screen a folder of them, each into its own folder")
    print(screened_line(screen_flow(args.data, args.model, args.out, args.id_col, workdir=str(Path.cwd()),
                                    batch_rows=args.batch_rows, dask_workers=args.dask_workers,
                                    dask_address=args.dask_address)))


def _promote(args: argparse.Namespace) -> None:
    from flows.promotion import decision_line, promote_flow
    from pipeline.promote import MIN_ANOMALIES, check_evidence, check_policy, registered_name, set_champion
    from pipeline.verdicts import reviewed_runs
    from pipeline.tracking import CHALLENGER, CHAMPION, ModelNotFoundError, resolve_model

    compare = [f"--{name.replace('_', '-')}" for name in ("label_col", "metric", "margin", "max_fpr", "min_anomalies")
               if getattr(args, name) is not None]
    if args.version is not None and compare:
        raise ValueError(f"--version sets champion by hand, with no comparison: {', '.join(compare)} would not be "
                         f"used; leave them out, or compare with --data or --verdicts-from instead of --version")
    if args.version is None and args.note:
        raise ValueError("--note goes with --version (why champion is set by hand); a comparison records its reason")
    if args.version is not None:  # a registry move, no evaluation: no flow
        _preflight()
        print(decision_line(asdict(set_champion(registered_name(args.model), args.version, args.note))))
        return
    if args.verdicts_from is not None and args.label_col is not None:
        raise ValueError("--label-col goes with --data: on --verdicts-from, the analysts' verdicts are the labels")
    policy = (args.metric or "auprc", args.margin or 0.0, args.max_fpr,
              MIN_ANOMALIES if args.min_anomalies is None else args.min_anomalies)
    check_policy(*policy)
    if args.data is not None and args.label_col is None and not Path(args.data).is_dir():  # a folder: images, by kind
        raise ValueError("--data needs --label-col, the column that holds the labels")
    if args.verdicts_from is not None and not Path(args.verdicts_from).is_dir():
        raise FileNotFoundError(f"--verdicts-from {args.verdicts_from!r} is not a folder")
    if args.verdicts_from is not None:
        reviewed_runs(args.verdicts_from)  # none: said before Prefect starts
    name = registered_name(args.model)
    try:
        _preflight(data=args.data, models=(f"{name}@{CHALLENGER}", f"{name}@{CHAMPION}"),
                   one_file="put the labelled records in one file", label_column=args.label_col)
    except ModelNotFoundError as error:
        if f"no alias {CHAMPION!r}" not in str(error):
            raise
        raise ModelNotFoundError(f"nothing to compare the challenger with: {error}") from None
    check_evidence(resolve_model(f"{name}@{CHALLENGER}"), args.data, args.label_col, args.verdicts_from)
    metric, margin, max_fpr, min_anomalies = policy
    print(decision_line(promote_flow(args.model, args.data, args.label_col, metric, margin, max_fpr,
                                     workdir=str(Path.cwd()), verdicts_from=args.verdicts_from,
                                     min_anomalies=min_anomalies)))


def _review(args: argparse.Namespace) -> None:
    from pipeline.report import review_line
    from pipeline.review import review

    def first(ids: tuple[str, ...], shown: int = 5) -> str:
        return ", ".join(ids[:shown]) + (", ..." if len(ids) > shown else "")

    _preflight()
    result = review(args.run, args.verdicts)
    changed, conflicting = result.overturned, result.conflicting
    overturned = f" ({len(changed)} changed an earlier outcome: {first(changed)})" if changed else ""
    overturned += f"; {result.unchanged} more as the run had them already" if result.unchanged else ""
    overturned += f"; {result.undecided} row(s) with no outcome yet left out" if result.undecided else ""
    overturned += (f"; {len(conflicting)} record(s) given both outcomes in the file, its last line for each kept: "
                   f"{first(conflicting)}" if conflicting else "")
    print(f"{result.submitted - result.unchanged} verdict(s) attached{overturned}; the run holds {result.stored}. "
          f"{review_line(result.flags)} Report: {Path(args.run) / 'report.html'}")  # one line, as every result


def _serve(args: argparse.Namespace) -> None:
    from flows.serve import serve_nightly

    if not os.environ.get("PREFECT_API_URL"):
        raise RuntimeError("schedules need a Prefect server: run `prefect server start --host 127.0.0.1` "
                           "and set PREFECT_API_URL=http://127.0.0.1:4200/api")
    serve_nightly(str(Path(args.incoming).resolve()), args.model, str(Path(args.out).resolve()),
                  cron=args.cron, every_seconds=args.every, id_column=args.id_col, workdir=str(Path.cwd()),
                  dask_address=args.dask_address)


def _demo(args: argparse.Namespace) -> None:
    from flows.demo import run_demo

    run_demo(Path(args.out), n_customers=args.customers, top=args.top, seed=args.seed)


COMMANDS = {"train": _train, "screen": _screen, "promote": _promote, "review": _review, "serve": _serve,
            "demo": _demo}


ROOT = Path(__file__).resolve().parents[1]
OURS = ("maskae", "pipeline", "flows", "data")
PACKAGES = tuple(f"{ROOT / name}{os.sep}" for name in OURS)  # not ROOT/.venv


@contextmanager
def _warnings_as_lines(command: str):
    """maskae's own warnings as one line each, ``maskae <command>: warning: ...``: what the data or
    the run needs, not the file and source line that raised it. Other libraries' warnings keep
    Python's format, which says where they come from; so does everything with MASKAE_DEBUG=1."""
    original = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None) -> str:
        # by where it was raised, or by its kind (a model's pyfunc raises from its copy in MLflow's store)
        if str(Path(filename).resolve()).startswith(PACKAGES) or category.__module__.split(".")[0] in OURS:
            return f"maskae {command}: warning: {message}\n"
        return original(message, category, filename, lineno, line)

    if not os.environ.get("MASKAE_DEBUG"):
        warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = original


class _WithoutTraceback(logging.Filter):
    """A failed flow or task run's log line without its traceback: the line names the exception,
    and the command ends with the error as one line (MASKAE_DEBUG=1 keeps both)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = record.exc_text = None
        return True


@contextmanager
def _flow_failures_as_lines(command: str):
    """Prefect's flow- and task-run logs without tracebacks while a one-shot command runs (``serve``
    keeps them: its log is where a night's failures are read)."""
    loggers, quiet = [logging.getLogger(f"prefect.{kind}_runs") for kind in ("flow", "task")], _WithoutTraceback()
    for logger in loggers if command != "serve" and not os.environ.get("MASKAE_DEBUG") else ():
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import flows  # noqa: F401  (no-telemetry environment, before any prefect or mlflow import)

    # SIGTERM (cron's and systemd's timeout) exits through Python, not around it: Prefect's flow
    # engine re-sends the signal to the handler it found once its run is marked crashed; with the
    # default one the process died before its exit handlers, and Prefect's temporary API server
    # outlived it (225 MB, still listening), one per killed night.
    main_thread = threading.current_thread() is threading.main_thread()  # (signals are set there only)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main_thread else None
    try:
        with _warnings_as_lines(args.command), _flow_failures_as_lines(args.command):
            COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # one clear line for people; the traceback on request
        if os.environ.get("MASKAE_DEBUG"):
            raise
        print(f"maskae {args.command}: error: {error}", file=sys.stderr)
        return 2
    finally:
        if main_thread:  # None: a handler set outside Python, which cannot be restored; the default then
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
