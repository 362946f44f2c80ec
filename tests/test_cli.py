"""The `maskae` command: help, argument errors, and the demo end to end on the embedded defaults."""

import json
import sys
import time
from pathlib import Path

import pytest

import pipeline.train
from flows.cli import _warnings_as_lines, main


def test_help_and_bad_arguments(capfd):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    usage = capfd.readouterr().out
    assert all(command in usage for command in ("train", "screen", "promote", "serve", "demo"))
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--customers", "many"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    version = capfd.readouterr().out
    assert version.startswith("maskae 0.") and "torch 2." in version and version.count("\n") == 1  # one line


def test_demo_trains_registers_screens_and_says_where_things_are(prefect_api, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["demo", "--customers", "300", "--top", "3", "--out", "demo"]) == 0
    out = capfd.readouterr().out
    assert "most anomalous" in out and "expected ~" in out  # printed records carry their reasons
    assert "report:" in out and "MLflow UI:" in out
    summary = json.loads((tmp_path / "demo" / "screening" / "today" / "summary.json").read_text())
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"]
    assert (tmp_path / "mlflow.db").exists()


def test_promote_refuses_options_that_would_not_be_used(capfd):
    assert main(["promote", "--model", "fraud", "--version", "1", "--margin", "0.1", "--metric", "auroc",
                 "--min-anomalies", "5"]) == 2
    assert "--version sets champion by hand, with no comparison: --metric, --margin, --min-anomalies would not be " \
        "used" in capfd.readouterr().err
    assert main(["promote", "--model", "fraud", "--data", "x.csv", "--label-col", "y", "--note", "why"]) == 2
    assert "--note goes with --version" in capfd.readouterr().err
    assert main(["promote", "--model", "fraud", "--verdicts-from", ".", "--label-col", "is_fraud"]) == 2
    assert "--label-col goes with --data" in capfd.readouterr().err
    assert main(["promote", "--model", "fraud", "--data", "x.csv", "--label-col", "y", "--min-anomalies", "0"]) == 2
    assert "min_anomalies must be at least 1, got 0" in capfd.readouterr().err


def test_promote_on_verdicts_with_no_review_fails_before_prefect_starts(capfd, tmp_path):
    assert main(["promote", "--model", "fraud", "--verdicts-from", str(tmp_path)]) == 2
    err = capfd.readouterr().err
    assert "no reviewed screening run under" in err and "Beginning flow run" not in err


def test_a_misspelt_training_or_label_column_is_refused_before_prefect_starts_with_the_near_name(capfd, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "h.csv").write_text("transaction_id,amount,country,is_fraud\nT1,12.5,GB,0\n")
    assert main(["train", "--data", "h.csv", "--id-col", "transaction_ID", "--label-col", "is_fraud",
                 "--exclude-columns", "contry", "--model", "m"]) == 2
    err = capfd.readouterr().err
    assert err == ("maskae train: error: h.csv: column(s) ['transaction_ID', 'contry'] are not in the training data "
                   "(it has 'transaction_id' for 'transaction_ID', 'country' for 'contry': renamed, or spelt with "
                   "other case or spaces?); it has ['transaction_id', 'amount', 'country', 'is_fraud']\n")
    assert not (tmp_path / "mlflow.db").exists()  # nothing started
    (tmp_path / "scored.csv").write_text("transaction_id,amount,reasons,is_fraud\nT1,12.5,rules,0\n")
    assert main(["train", "--data", "scored.csv", "--id-col", "transaction_id", "--label-col", "is_fraud",
                 "--model-name", "m"]) == 2
    assert capfd.readouterr().err.startswith(
        "maskae train: error: column(s) ['reasons'] are named as columns maskae writes beside each screened record "
        "(anomaly_score, p_value, reasons, flagged, quarantine_reason, _row): rename them in the data, or leave them "
        "out (--exclude-columns reasons)")
    assert main(["train", "--data", "h.csv", "--id-col", "transaction_id", "--label-col", "fraud", "--model", "m"]) == 2
    assert "(it has 'is_fraud' for 'fraud': renamed" in capfd.readouterr().err  # a word of it
    assert main(["promote", "--model", "m", "--data", "h.csv", "--label-col", "is_frad"]) == 2
    assert capfd.readouterr().err == (
        "maskae promote: error: label column 'is_frad' (--label-col) is not in h.csv (it has 'is_fraud' for "
        "'is_frad': renamed, or spelt with other case or spaces?); it has ['transaction_id', 'amount', 'country', "
        "'is_fraud']\n")
    assert main(["train", "--data", "h.csv", "--model-name", "m", "--level", "5"]) == 2
    assert capfd.readouterr().err == (  # one line, naming the flags as well as the settings
        "maskae train: error: invalid config: data.id_column (--id-col): required for tables: name the column "
        "that identifies each record; calibration.level (--level): fpr level must be in (0, 1), got 5.0\n")


def test_an_output_path_no_screening_can_take_is_refused_before_prefect_starts(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    for out, said in (("afile", "'afile' is a file, not a folder: choose a new output folder"),
                      ("busy", "'busy' already holds files that are not a screening's: choose a new folder")):
        assert main(["screen", "--data", "any.csv", "--model", "m", "--out", out]) == 2
        assert capfd.readouterr().err == f"maskae screen: error: {said}\n"
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    assert main(["screen", "--data", "any.csv", "--model", "m", "--out", "o", "--batch-rows", "0"]) == 2
    assert capfd.readouterr().err == "maskae screen: error: --batch-rows must be at least 1, got 0\n"


def test_errors_are_one_line_not_a_traceback(capfd, tmp_path):
    assert main(["demo", "--customers", "0", "--out", str(tmp_path / "demo-x")]) == 2
    assert not (tmp_path / "demo-x").exists()  # a refused demo leaves no folder behind
    err = capfd.readouterr().err
    assert err.startswith("maskae demo: error:") and "Traceback" not in err and err.count("\n") == 1


def test_prefect_logs_a_failed_run_without_its_traceback_but_serve_keeps_it(monkeypatch):
    import logging

    from flows.cli import _flow_failures_as_lines, _WithoutTraceback

    monkeypatch.delenv("MASKAE_DEBUG", raising=False)
    try:
        raise ValueError("the batch lacks column(s) ['country']")
    except ValueError:
        failure = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "Task run failed", None,
                                    exc_info=sys.exc_info())
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    with _flow_failures_as_lines("serve"):
        assert all(logger.filter(failure) for logger in loggers) and failure.exc_info is not None
    with _flow_failures_as_lines("screen"):
        assert all(logger.filter(failure) for logger in loggers) and failure.exc_info is None
    assert not [f for logger in loggers for f in logger.filters if isinstance(f, _WithoutTraceback)]  # removed after


def test_warnings_print_as_one_line_naming_the_command(monkeypatch):
    import warnings

    monkeypatch.delenv("MASKAE_DEBUG", raising=False)
    raised = UserWarning("column 'terminal_id' is named as an identifier")
    ours = str(Path(pipeline.train.__file__))  # maskae's warnings reach the command from its pipeline steps
    with _warnings_as_lines("train"):
        assert warnings.formatwarning(raised, UserWarning, ours, 141, "warn(...)") == \
            "maskae train: warning: column 'terminal_id' is named as an identifier\n"
        other = warnings.formatwarning(FutureWarning("x is deprecated"), FutureWarning, "/lib/pandas/core.py", 7)
        assert other.startswith("/lib/pandas/core.py:7: FutureWarning: x is deprecated")  # says where it comes from
    assert f"{ours}:141" in warnings.formatwarning(raised, UserWarning, ours, 141)  # restored afterwards
    monkeypatch.setenv("MASKAE_DEBUG", "1")
    with _warnings_as_lines("train"):  # debugging keeps Python's format, with the place
        assert f"{ours}:141" in warnings.formatwarning(raised, UserWarning, ours, 141)


def test_sigterm_exits_through_python_so_exit_handlers_stop_prefects_server(monkeypatch, tmp_path):
    # Prefect's engine re-sends SIGTERM to the handler it found after marking its run crashed; with
    # Python's default one the process died before its exit handlers ran, and the temporary API
    # server it had started lived on. The command's handler exits through SystemExit instead.
    import os
    import signal

    import flows.cli

    cleaned = []

    def terminated(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # as cron's timeout does mid-screening
            time.sleep(5)
        finally:
            cleaned.append(True)  # as the screening's folder and Prefect's exit handlers are

    monkeypatch.setitem(flows.cli.COMMANDS, "screen", terminated)
    monkeypatch.chdir(tmp_path)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exited:
        main(["screen", "--data", "x.csv", "--model", "m", "--out", "o"])
    assert exited.value.code == 128 + signal.SIGTERM and cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is before  # the test process's own handler is back


def test_an_image_folder_without_images_or_holding_the_output_is_refused_before_prefect_starts(tmp_path, monkeypatch,
                                                                                              capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "line").mkdir()
    (tmp_path / "line" / "notes.txt").write_text("not an image")
    assert main(["screen", "--data", "line", "--model", "bottles", "--out", "out"]) == 2
    assert capfd.readouterr().err.startswith("maskae screen: error: line holds no image file (expected .png, ")
    assert main(["screen", "--data", "line", "--model", "bottles", "--out", "line/out"]) == 2
    err = capfd.readouterr().err
    assert "is inside the image folder 'line'" in err and "Starting temporary server" not in err
    # a folder of tables: screen reads one file; the glob its message once suggested is refused as such
    (tmp_path / "line" / "a.csv").write_text("id,amount\n1,2\n")
    assert main(["screen", "--data", "line", "--model", "bottles", "--out", "out"]) == 2
    assert "for a table give one file (screen each, or let `maskae serve`" in capfd.readouterr().err
    assert main(["screen", "--data", "line/*.csv", "--model", "bottles", "--out", "out"]) == 2
    assert "'line/*.csv' is a glob of 1 file(s): this command reads one table file; screen each" in capfd.readouterr().err
