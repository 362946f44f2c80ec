"""End to end through the `maskae` command and the real Prefect flows, on the embedded defaults
(one Prefect test harness per session, MLflow on SQLite in a temporary working folder), and two
slow tests against real servers on loopback: `mlflow server` and `prefect server start`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from data.transactions import generate_transactions
from flows.cli import main

ROOT = Path(__file__).resolve().parents[1]
FEATURES = "amount,merchant_category,country,channel,card_present,hour,home_country,customer_typical_amount"


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A fresh working folder: the embedded MLflow store lands here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    week = generate_transactions(n_customers=150, days=3, fraud_rate=0.02, seed=3)
    day = week["timestamp"].dt.normalize()
    week[day < day.max()].to_csv(tmp_path / "history.csv", index=False)
    week[day == day.max()].to_csv(tmp_path / "today.csv", index=False)
    (tmp_path / "model.toml").write_text(
        f'[data]\ncolumns = {json.dumps(FEATURES.split(","))}\n[model]\nmax_steps = 60\nrandom_state = 0\n'
    )
    return tmp_path


def train_args(name: str, *extra: str) -> list[str]:
    return ["train", "--data", "history.csv", "--config", "model.toml", "--model-name", name,
            "--id-col", "transaction_id", "--label-col", "is_fraud", *extra]


def aliases(name: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return {alias: str(version) for alias, version in MlflowClient().get_registered_model(name).aliases.items()}


def test_train_screen_promote_end_to_end(prefect_api, workdir, capfd):
    assert main(train_args("fraud")) == 0
    assert (workdir / "mlflow.db").exists()
    assert aliases("fraud") == {"champion": "1", "challenger": "1"}
    # Each command's result is a line on stdout, for scripts; Prefect's log goes to stderr.
    assert "registered fraud version 1 as challenger, champion\n" in capfd.readouterr().out

    assert main(["screen", "--data", "today.csv", "--model", "fraud@champion", "--out", "out/today"]) == 0
    assert "rows flagged; output in out/today\n" in capfd.readouterr().out
    summary = json.loads((workdir / "out" / "today" / "summary.json").read_text())
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"]
    assert summary["model"]["name"] == "fraud" and str(summary["model"]["version"]) == "1"
    assert {"flagged.csv", "report.html", "summary.json"} <= {p.name for p in (workdir / "out" / "today").iterdir()}
    # A batch that lacks a column is refused before Prefect starts: one line, nothing else
    pd.read_csv(workdir / "today.csv").drop(columns="country").to_csv(workdir / "no_country.csv", index=False)
    assert main(["screen", "--data", "no_country.csv", "--model", "fraud", "--out", "out/no_country"]) == 2
    err = capfd.readouterr().err
    assert err.startswith("maskae screen: error: no_country.csv: the batch lacks column(s) ['country']")
    assert err.count("\n") == 1 and not (workdir / "out" / "no_country").exists()
    # so does one whose id column is not the model's, unless --id-col names it
    pd.read_csv(workdir / "today.csv").rename(columns={"transaction_id": "txn"}).to_csv(workdir / "txn.csv", index=False)
    assert main(["screen", "--data", "txn.csv", "--model", "fraud", "--out", "out/txn"]) == 2
    assert "the batch lacks column(s) ['transaction_id']" in capfd.readouterr().err
    # a mistyped --id-col is told from the model's own
    assert main(["screen", "--data", "txn.csv", "--model", "fraud", "--out", "out/txn", "--id-col", "txn_id"]) == 2
    assert "(--id-col 'txn_id' was given; the model's id column is 'transaction_id')" in capfd.readouterr().err
    # A batch of which no row could be scored is written (its quarantine.csv says why), but the run fails.
    pd.read_csv(workdir / "today.csv").assign(transaction_id="").to_csv(workdir / "no_ids.csv", index=False)
    assert main(["screen", "--data", "no_ids.csv", "--model", "fraud", "--out", "out/no_ids"]) == 2
    assert "maskae screen: error: no row of no_ids.csv could be scored: all " in capfd.readouterr().err
    assert (workdir / "out" / "no_ids" / "quarantine.csv").is_file()

    # A second version becomes challenger; promotion on labelled data moves champion only if better.
    assert main(train_args("fraud", "--max-steps", "1", "--seed", "1")) == 0
    assert aliases("fraud") == {"champion": "1", "challenger": "2"}
    assert main(["promote", "--model", "fraud", "--data", "today.csv", "--label-col", "is_fraud",
                 "--margin", "0.5"]) == 0
    assert aliases("fraud")["champion"] == "1"  # no challenger beats AUPRC by 0.5
    assert capfd.readouterr().out.splitlines()[-1].startswith("keep")
    assert main(["promote", "--model", "fraud@challenger", "--data", "today.csv", "--label-col", "is_fraud"]) == 2
    err = capfd.readouterr().err
    assert "takes a registered model's name alone" in err and "Beginning flow run" not in err  # before any flow
    # Both versions must read the labelled file; which one cannot is said before any flow
    pd.read_csv(workdir / "today.csv").drop(columns="amount").to_csv(workdir / "no_amount.csv", index=False)
    assert main(["promote", "--model", "fraud", "--data", "no_amount.csv", "--label-col", "is_fraud"]) == 2
    err = capfd.readouterr().err
    assert "fraud@challenger (version 2) cannot read it: no_amount.csv: " in err and "Beginning flow run" not in err
    # A champion set by hand (a rollback) moves aliases with no flow, and says so in one line
    assert main(["promote", "--model", "fraud", "--version", "2", "--note", "a test"]) == 0
    captured = capfd.readouterr()
    assert captured.out == "set: champion set by hand to version 2 (was 1): a test\n"
    assert aliases("fraud") == {"champion": "2", "challenger": "2"} and "Beginning flow run" not in captured.err
    # With no champion there is nothing to compare: said before any flow, with the way out
    from mlflow import MlflowClient

    MlflowClient().delete_registered_model_alias("fraud", "champion")
    assert main(["promote", "--model", "fraud", "--data", "today.csv", "--label-col", "is_fraud"]) == 2
    err = capfd.readouterr().err
    assert "has no alias 'champion'" in err and "set champion by hand with `maskae promote --model fraud --version N`" \
        in err and "Beginning flow run" not in err


def test_identifier_and_timestamp_columns_can_be_left_out_by_flag(prefect_api, workdir):
    from mlflow import MlflowClient

    (workdir / "quick.toml").write_text("[model]\nmax_steps = 1\n")
    assert main(["train", "--data", "history.csv", "--config", "quick.toml", "--model-name", "lean",
                 "--id-col", "transaction_id", "--label-col", "is_fraud",
                 "--exclude-columns", "customer_id, timestamp,merchant,fraud_pattern"]) == 0
    client = MlflowClient()
    features = client.get_run(client.get_model_version("lean", "1").run_id).data.params["data.features"].split(",")
    assert "amount" in features and not {"customer_id", "timestamp", "merchant", "fraud_pattern"} & set(features)


def test_errors_are_one_clear_line(prefect_api, workdir, capfd):
    assert main(["screen", "--data", "today.csv", "--model", "nobody@champion", "--out", "out/x"]) == 2
    err = capfd.readouterr().err  # MLflow may log a line as it creates its database first
    last = err.strip().splitlines()[-1]
    assert last.startswith("maskae screen: error:") and "nobody" in last and "Traceback" not in err
    assert main(["train", "--data", "missing.csv", "--model-name", "x", "--id-col", "id"]) == 2
    err = capfd.readouterr().err
    assert "missing.csv" in err and "no such file" in err and "Beginning flow run" not in err  # before any flow
    (workdir / "empty.csv").write_text("")
    assert main(["screen", "--data", "empty.csv", "--model", "nobody", "--out", "out/y"]) == 2
    err = capfd.readouterr().err
    assert "empty.csv" in err and "the file is empty" in err and "Beginning flow run" not in err


def test_tasks_retry_what_a_retry_can_mend_and_nothing_else():
    import asyncio

    from prefect.states import Failed

    from flows.retries import transient
    from pipeline.ingest import FileChangedError, IngestError, SchemaError
    from pipeline.tracking import ModelNotFoundError

    def retried(error: Exception) -> bool:
        return asyncio.run(transient(None, None, Failed(data=error)))

    import errno

    for permanent in (SchemaError("lacks amount"), IngestError("empty"), ModelNotFoundError("no alias"),
                      FileExistsError("taken"), OSError(errno.EROFS, "Read-only file system"),
                      OSError(errno.ENOSPC, "No space left on device")):
        assert not retried(permanent)
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    for permanent in (MlflowException("unsupported URI 'sqllite:///m.db'", error_code=INVALID_PARAMETER_VALUE),
                      MlflowException("No such artifact: ''", error_code=RESOURCE_DOES_NOT_EXIST)):
        assert not retried(permanent)
    assert retried(MlflowException("API request failed", error_code=TEMPORARILY_UNAVAILABLE))
    for passing in (ConnectionError("tracking server down"), TimeoutError(), RuntimeError("database is locked"),
                    FileChangedError("still being copied"), OSError(errno.EIO, "Input/output error")):
        assert retried(passing)


def test_a_training_retried_after_registering_finishes_that_version_and_trains_no_other(
        prefect_api, workdir, monkeypatch):
    from mlflow import MlflowClient

    from maskae import MaskedAutoencoderDetector

    fits, original_fit = [], MaskedAutoencoderDetector.fit
    monkeypatch.setattr(MaskedAutoencoderDetector, "fit", lambda self, X, y=None: fits.append(1) or original_fit(self, X))
    calls, set_alias = [], MlflowClient.set_registered_model_alias

    def flaky(self, name, alias, version):  # the tracking server drops out right after the version is created
        calls.append(alias)
        if len(calls) == 1:
            raise ConnectionError("tracking server unavailable")
        return set_alias(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", flaky)
    assert main(train_args("fraud")) == 0
    assert len(calls) > 1 and len(fits) == 1  # retried, and the retry did not train again
    assert [str(v.version) for v in MlflowClient().search_model_versions("name = 'fraud'")] == ["1"]
    assert aliases("fraud") == {"champion": "1", "challenger": "1"}
    # Another request (a new task run) is a new version, as before.
    assert main(train_args("fraud", "--max-steps", "1")) == 0
    assert aliases("fraud") == {"champion": "1", "challenger": "2"} and len(fits) == 2


def test_dask_screening_gives_the_single_process_output(prefect_api, workdir):
    assert main(train_args("fraud")) == 0
    common = ["screen", "--data", "today.csv", "--model", "fraud", "--batch-rows", "100"]
    assert main([*common, "--out", "out/single"]) == 0
    assert main([*common, "--out", "out/dask", "--dask-workers", "2"]) == 0
    import pandas as pd

    single, dask = (pd.read_parquet(workdir / "out" / name / "scores.parquet") for name in ("single", "dask"))
    assert len(single) > 200  # three chunks or more went out to the workers
    pd.testing.assert_frame_equal(single, dask, check_exact=False, rtol=1e-6)
    summaries = [json.loads((workdir / "out" / name / "summary.json").read_text()) for name in ("single", "dask")]
    assert [s["rows_flagged"] for s in summaries] == [summaries[0]["rows_flagged"]] * 2


def test_unreachable_tracking_server_is_retried_then_fails_clearly(prefect_api, workdir, monkeypatch):
    import flows.screening

    attempts = []

    def resolve_model(ref):
        attempts.append(ref)
        return real(ref)

    real = flows.screening.resolve_model
    monkeypatch.setattr(flows.screening, "resolve_model", resolve_model)
    monkeypatch.setattr(flows.screening, "resolve", flows.screening.resolve.with_options(retry_delay_seconds=0))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(Exception, match="127.0.0.1"):
        flows.screening.screen_flow("today.csv", "fraud", "out/today")
    assert len(attempts) == 1 + flows.screening.resolve.retries
    assert not (workdir / "out").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], log: Path, **options) -> subprocess.Popen:
    """Start a server or runner writing to ``log`` (an unread pipe, once full, would block it), in
    a process group of its own, so that :func:`stop` also stops the processes it starts (flow runs)."""
    with log.open("w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **options)
    process.log = log
    return process


def log_of(process: subprocess.Popen) -> str:
    """The end of what ``process`` (from :func:`spawn`) wrote."""
    return process.log.read_text(errors="replace")[-3000:]


def wait_for(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early: {log_of(process)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


def stop(process: subprocess.Popen) -> None:
    """Stop ``process`` and every process of its group (a runner's flow runs, a server's workers):
    SIGTERM to all, then SIGKILL to whatever is left once the leader has gone or after 20 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        process.wait()  # the whole group has gone: reap the leader
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_against_a_real_mlflow_server(prefect_api, workdir, monkeypatch):
    port = free_port()
    server = spawn(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{workdir / 'server.db'}",
         "--artifacts-destination", str(workdir / "server-artifacts"), "--workers", "1"],
        workdir / "mlflow-server.log", env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", server)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        assert main(train_args("served")) == 0
        assert main(["screen", "--data", "today.csv", "--model", "served", "--out", "out/served"]) == 0
        assert aliases("served")["champion"] == "1"
        assert not (workdir / "mlflow.db").exists()  # nothing fell back to the embedded store
        assert any((workdir / "server-artifacts").rglob("MLmodel"))
    finally:
        stop(server)


@pytest.mark.slow
def test_scheduled_deployment_fires_on_a_real_prefect_server(prefect_api, workdir):
    import httpx

    assert main(train_args("nightly")) == 0
    incoming = workdir / "incoming"
    incoming.mkdir()
    (workdir / "today.csv").rename(incoming / "today.csv")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(workdir / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    server = spawn([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                   workdir / "prefect-server.log", env=env)
    runner = None
    try:
        wait_for(f"{api}/health", server)
        runner = spawn(
            [sys.executable, "-m", "flows.cli", "serve", "--incoming", "incoming", "--model", "nightly",
             "--out", "out", "--every", "5"], workdir / "runner.log", cwd=workdir, env=env)
        # A bound on waiting, not a speed target: on two busy cores a flow run's start alone can take a minute.
        deadline, completed = time.monotonic() + 300, []
        while time.monotonic() < deadline and not completed:
            time.sleep(3)
            runs = httpx.post(f"{api}/flow_runs/filter", json={
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}, timeout=10).json()
            completed = [r for r in runs if r.get("deployment_id")]
        assert completed, f"no scheduled run completed; the runner's log ends:\n{log_of(runner)}"
        assert (workdir / "out" / "today" / "summary.json").exists()
    finally:
        for process in (runner, server):
            if process is not None:
                stop(process)


def test_the_training_line_counts_quarantined_rows():
    from flows.training import registered_line

    result = {"model_name": "fraud", "version": "2", "aliases": ["challenger"], "rows_read": 1200, "rows_quarantined": 3}
    assert registered_line(result) == ("registered fraud version 2 as challenger; 3 of 1,200 rows quarantined "
                                       "(the run's quarantine/ artifact)")
    assert registered_line({**result, "rows_quarantined": 0}) == "registered fraud version 2 as challenger"


def test_the_result_line_counts_quarantined_rows_when_there_are_some():
    from flows.screening import screened_line

    summary = {"rows_flagged": 3, "rows_in": 100, "rows_quarantined": 0, "input": {}}
    assert screened_line({"summary": summary, "out_dir": "out/a"}) == "3 of 100 rows flagged; output in out/a"
    summary["rows_quarantined"] = 7
    assert screened_line({"summary": summary, "out_dir": "out/a"}) == "3 of 100 rows flagged, 7 quarantined; output in out/a"


def test_a_sweep_batch_folder_is_named_after_its_file_less_its_format_suffixes(tmp_path):
    from flows.screening import _batch_name

    for name, folder in (("cards.2026-01-08.csv", "cards.2026-01-08"), ("CARDS.CSV.GZ", "CARDS"),
                         ("x.pq.csv", "x.pq"), ("day.parquet", "day")):  # x.pq.csv was once named x
        (tmp_path / name).write_text("id\n1\n")
        assert _batch_name(tmp_path / name) == folder
    (tmp_path / "line.3").mkdir()
    assert _batch_name(tmp_path / "line.3") == "line.3"  # a folder of images, as it is
