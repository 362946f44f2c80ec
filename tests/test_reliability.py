"""Screening under bad input and faults: it finishes and accounts for every row, or fails loudly
before writing anything, and a killed run leaves nothing half-written behind.

All tests screen with the session's real model (``screening_run`` in conftest: ``fraud`` v1).
"""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ingest import FileChangedError, IngestError, SchemaError
from pipeline.screen import ScreeningWarning, screen
from pipeline.screening_output import read_summary

ROOT = Path(__file__).resolve().parents[1]
ID = "transaction_id"


def batch(screened, rows: int = 200) -> pd.DataFrame:
    """Clean rows of the session's batch (its first 100 hold deliberately broken ones)."""
    return screened["batch"].iloc[100:100 + rows].reset_index(drop=True)


def accounted(out_dir: Path, frame: pd.DataFrame) -> dict:
    """The run's summary, after checking that every input row is scored or quarantined, once."""
    summary = read_summary(out_dir)
    assert summary["rows_in"] == len(frame) == summary["rows_scored"] + summary["rows_quarantined"]
    scores = pd.read_parquet(out_dir / "scores.parquet")
    quarantine = pd.read_csv(out_dir / "quarantine.csv", dtype=str, keep_default_na=False)
    assert len(scores) == summary["rows_scored"] and len(quarantine) == summary["rows_quarantined"]
    assert scores[ID].is_unique  # a repeated id is scored once, its repeats quarantined
    assert quarantine["quarantine_reason"].str.len().gt(0).all()
    return summary


def write(frame: pd.DataFrame, path: Path) -> Path:
    """CSV as is; Parquet with each mixed column as text (a Parquet column has one type)."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        mixed = [c for c in frame.columns if frame[c].dtype == object]
        frame.astype({c: str for c in mixed}).where(frame.notna(), None).to_parquet(path)
    return path


def _text_in_numbers(frame):
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[3, "amount"] = "twelve"


def _wrong_dtype(frame):
    frame["hour"] = frame["hour"].astype(str) + "h"  # every value is text


def _nan_and_inf(frame):
    frame["amount"] = frame["amount"].astype(float)
    frame.loc[[1, 2, 3], "amount"] = [np.nan, np.inf, -np.inf]


def _unseen_category(frame):
    frame.loc[4, "merchant_category"] = "never-seen-before"


def _duplicate_ids(frame):
    frame.loc[[7, 150], ID] = frame.loc[6, ID]


def _extra_column(frame):
    frame["note"] = "extra"


BAD_BATCHES = {  # name: (change, rows quarantined)
    "text in a numeric column": (_text_in_numbers, 1),
    "wrong dtype: a numeric column of text": (_wrong_dtype, 200),
    "NaN and +-inf": (_nan_and_inf, 2),  # NaN is a missing cell (scored), infinities are not numbers
    "unseen category": (_unseen_category, 0),
    "duplicate ids": (_duplicate_ids, 2),
    "extra column": (_extra_column, 0),
}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("name", list(BAD_BATCHES))
def test_bad_rows_are_quarantined_and_every_row_accounted_for(screened, tmp_path, name, fmt):
    change, expected = BAD_BATCHES[name]
    frame = batch(screened)
    change(frame)
    path = write(frame, tmp_path / f"batch.{fmt}")
    summary = accounted(screen(path, "fraud", tmp_path / "out", batch_rows=64).out_dir, frame)
    assert summary["rows_quarantined"] == expected


def test_csv_lines_with_more_fields_than_the_header_are_quarantined_and_the_rest_scored(screened, tmp_path):
    frame = batch(screened)
    lines = frame.to_csv(index=False).splitlines()
    lines.insert(51, lines[50] + ",EXTRA")  # record 51 (line 52, after the header) with an unquoted comma
    lines.append(lines[-1] + ",EXTRA")  # after the last row: met after the last chunk of 64 was read
    path = tmp_path / "batch.csv"
    path.write_text("\n".join(lines) + "\n")
    out = screen(path, "fraud", tmp_path / "out", batch_rows=64).out_dir
    summary = read_summary(out)
    assert (summary["rows_in"], summary["rows_scored"], summary["rows_quarantined"]) == (202, 200, 2)
    quarantine = pd.read_csv(out / "quarantine.csv", dtype=str)
    assert [r.split(" (")[0] for r in quarantine["quarantine_reason"]] == ["line 52", "line 203"]
    assert pd.read_parquet(out / "scores.parquet")[ID].tolist() == frame[ID].astype(str).tolist()


def test_a_batch_that_screens_but_not_as_a_night_should_is_said_so(screened, tmp_path):
    def screened_with(change, name) -> list[str]:
        frame = batch(screened)
        change(frame)
        with pytest.warns(ScreeningWarning) as said:
            summary = accounted(screen(write(frame, tmp_path / f"{name}.csv"), "fraud", tmp_path / name).out_dir, frame)
        assert [str(w.message) for w in said if w.category is ScreeningWarning] == [
            f"{name}.csv: {text}" for text in summary["warnings"]]
        return summary["warnings"]

    empty = screened_with(lambda f: f.__setitem__("amount", np.nan), "no_amount")
    assert empty == ["feature column(s) ['amount'] are empty in every one of its 200 scored rows, so the model scored "
                     "without them; check the export"]
    cents = screened_with(lambda f: f.__setitem__("amount", f["amount"] * 100), "cents")  # an export in cents
    assert len(cents) == 2 and "were flagged, where about 5.0% of rows like the training data's would be" in cents[1]
    assert re.fullmatch(r"\d+ of its 'amount' values lie above the largest value in training \([\d,.]+\), more than "
                        r"chance allows \([\d,]+ training values\): a sign or a unit the model never saw .*", cents[0])
    report = (tmp_path / "cents" / "report.html").read_text()  # the analyst's page says it first
    assert report.index('id="warnings"') < report.index('id="flag-rate"')
    assert "the batch as a whole differs from the training data" in report.split('id="flag-rate"')[0]
    def refunds(frame):  # a sign the training data never had, on a few rows: too few flags to tell
        frame.loc[:9, "amount"] = -frame.loc[:9, "amount"]

    assert screened_with(refunds, "refunds")[0].startswith("10 of its 'amount' values lie below the smallest value in "
                                                           "training (")
    summary = read_summary(tmp_path / "refunds")
    assert summary["outside_training_range"]["amount"]["below"] == 10
    assert "amount: 10 below the smallest training value (" in (tmp_path / "refunds" / "report.html").read_text()
    bad = screened_with(_wrong_dtype, "text_hours")
    assert bad == ["200 of its 200 rows (100%) were quarantined: see quarantine.csv for why"]
    assert read_summary(tmp_path / "text_hours")["rows_scored"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScreeningWarning)  # an ordinary batch: nothing said
        assert read_summary(screen(write(batch(screened), tmp_path / "ok.csv"), "fraud", tmp_path / "ok").out_dir)[
            "warnings"] == []
    assert 'id="warnings"' not in (tmp_path / "ok" / "report.html").read_text()


def test_a_batch_column_named_as_an_output_column_is_kept_under_another_name(screened, tmp_path):
    upstream = {"anomaly_score": "upstream-7", "reasons": "rules engine", "quarantine_reason": "none", "flagged": "no",
                "_row": "r"}  # an upstream system's columns, beside maskae's of the same names
    frame = batch(screened, rows=100).assign(**upstream)
    frame["amount"] = (frame["amount"] * np.where(frame.index < 10, 100, 1)).astype(object)  # ten to flag
    frame.loc[50, "amount"] = "abc"
    with pytest.warns(UserWarning, match=re.escape(f"column(s) {list(upstream)} are named as columns maskae writes "
                                                   f"beside each record: kept as {['input_' + c for c in upstream]}")):
        out = screen(write(frame, tmp_path / "upstream.csv"), "fraud", tmp_path / "upstream", batch_rows=64).out_dir
    accounted(out, frame)
    quarantine = pd.read_csv(out / "quarantine.csv", dtype=str, keep_default_na=False)
    assert quarantine.columns[-1] == "quarantine_reason" and quarantine["input_quarantine_reason"].tolist() == ["none"]
    assert quarantine["quarantine_reason"].tolist() == ["amount: 'abc' is not a number"]
    flagged = pd.read_csv(out / "flagged.csv", dtype=str, keep_default_na=False)
    assert len(flagged) >= 10 and "flagged" not in flagged.columns
    assert (flagged[[f"input_{c}" for c in upstream]] == pd.Series(upstream).add_prefix("input_")).all().all()
    assert flagged["anomaly_score"].astype(float).notna().all() and not flagged["reasons"].eq("rules engine").any()


def test_a_screening_that_cannot_be_written_names_its_folder_and_its_run_is_failed(screened, tmp_path, monkeypatch):
    import errno

    from mlflow import MlflowClient

    from pipeline.screening_output import ScreeningFolder

    path = write(batch(screened, rows=40), tmp_path / "batch.csv")
    mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if ".tmp-" in self.name:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return mkdir(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "mkdir", read_only)
        with pytest.raises(OSError, match=r"cannot write the screening folder '.*/night': Read-only file system; "):
            screen(path, "fraud", tmp_path / "night")  # once named the hidden folder: '.night.tmp-4ff8c7a156ea'

    def full(self, **_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ScreeningFolder, "publish", full)  # the disk fills as the folder is finished
    with pytest.raises(OSError, match="No space left"):
        screen(path, "fraud", tmp_path / "full")
    assert not (tmp_path / "full").exists()
    client = MlflowClient()
    run, = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string=f"params.out_dir = '{tmp_path / 'full'}'")
    assert run.info.status == "FAILED" and run.data.tags["maskae.failure"].startswith("OSError: [Errno 28]")


def test_a_csv_cut_short_mid_line_fails_as_a_file_still_being_written_and_writes_nothing(screened, tmp_path):
    text = batch(screened).to_csv(index=False)
    path = tmp_path / "batch.csv"
    path.write_text(text[: text.rindex(",", 0, len(text) - 40)])  # read while still being copied: the last line cut
    with pytest.raises(FileChangedError, match="it ends mid-line"):
        screen(path, "fraud", tmp_path / "out", batch_rows=64)  # its last line was scored, the rest never would be
    assert not (tmp_path / "out").exists()
    path.write_text(text)  # once complete, it screens
    accounted(screen(path, "fraud", tmp_path / "out", batch_rows=64).out_dir, batch(screened))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_header_only_file_is_an_empty_screening(screened, tmp_path, fmt):
    frame = batch(screened).head(0)
    path = write(frame, tmp_path / f"empty.{fmt}")
    with pytest.warns(ScreeningWarning, match=r"empty\.\w+: it holds no row: nothing was screened"):
        summary = accounted(screen(path, "fraud", tmp_path / "out").out_dir, frame)
    assert summary["rows_flagged"] == 0 and summary["drift"]["ks_statistic"] is None
    assert summary["warnings"] == ["it holds no row: nothing was screened; check the export"]


def test_unreadable_files_fail_naming_the_file_and_write_nothing(screened, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    whole = tmp_path / "whole.parquet"
    batch(screened).to_parquet(whole)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    # A compressed CSV cut short is one still being copied (retried); a damaged one is said to be so.
    batch(screened).to_csv(tmp_path / "whole.csv.gz", index=False)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes((tmp_path / "whole.csv.gz").read_bytes()[:-40])
    damaged = tmp_path / "damaged.csv.zip"
    damaged.write_bytes(b"transaction_id,amount\n1,2\n")
    for path, error, says in ((empty, IngestError, "the file is empty"), (truncated, IngestError, "truncated"),
                              (cut, FileChangedError, "ends before its compressed data does"),
                              (damaged, IngestError, "compressed data are damaged or not of the kind its name says")):
        with pytest.raises(error, match=rf"{path.name}'.*{says}"):
            screen(path, "fraud", tmp_path / path.stem)
        assert not (tmp_path / path.stem).exists() and not list(tmp_path.glob(f".{path.stem}.tmp-*"))


def test_a_schema_mismatch_is_refused_before_any_scoring(screened, tmp_path):
    path = tmp_path / "batch.csv"
    batch(screened).drop(columns=["country", "hour"]).to_csv(path, index=False)
    with pytest.raises(SchemaError, match=r"\['country', 'hour'\]"):
        screen(path, "fraud", tmp_path / "out")
    assert not any(tmp_path.glob("*out*"))


CHILD = """
import sys
from pipeline.screen import screen
screen(sys.argv[1], "fraud", sys.argv[2], batch_rows=int(sys.argv[3]))
"""


def test_a_killed_screening_leaves_nothing_and_a_rerun_gives_the_same_output(screened, tmp_path):
    frame = pd.concat([screened["batch"]] * 8, ignore_index=True)  # long enough to be killed mid-way
    frame[ID] = [f"T{i:07d}" for i in range(len(frame))]
    frame.loc[5, ID] = frame.loc[4, ID]  # and one duplicate
    path, out = tmp_path / "big.csv", tmp_path / "runs" / "night"
    frame.to_csv(path, index=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": screened["tracking_uri"], "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(out), "200"], env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(out.parent.glob(".night.tmp-*/.scores-unflagged.parquet")):  # scoring has begun
        assert child.poll() is None and time.monotonic() < deadline, "the screening ended before it was killed"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not out.exists()  # nothing visible as a finished screening

    result = screen(path, "fraud", out, batch_rows=200)  # the rerun clears the killed run's folder
    assert [p.name for p in out.parent.iterdir()] == ["night"]
    summary = accounted(result.out_dir, frame)
    reference = screen(path, "fraud", tmp_path / "reference", batch_rows=200)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "scores.parquet"),
                                  pd.read_parquet(reference.out_dir / "scores.parquet"))
    assert summary["rows_quarantined"] == (frame["amount"] == "twelve").sum() + 1  # + the duplicate


def test_a_screening_still_being_written_is_not_cleared(screened, tmp_path):
    import fcntl

    path = write(batch(screened), tmp_path / "batch.csv")
    live = tmp_path / ".out.tmp-live"  # another process's folder, its lock held
    live.mkdir()
    with open(live / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(FileExistsError, match="another screening is writing"):
            screen(path, "fraud", tmp_path / "out")
    assert live.is_dir() and not (tmp_path / "out").exists()


def test_no_secret_reaches_the_outputs(screened, tmp_path, monkeypatch, capfd):
    secret = "s3cr3t-token-value"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    path = tmp_path / "batch.csv"
    batch(screened).to_csv(path, index=False)
    out = screen(path, "fraud", tmp_path / "out").out_dir
    written = "".join(p.read_text(errors="replace") for p in out.iterdir() if p.suffix != ".parquet")
    captured = capfd.readouterr()
    assert secret not in written + captured.out + captured.err


_cells = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                   st.text(max_size=8), st.booleans())


def test_carriage_returns_in_text_do_not_shift_the_written_columns(screened, tmp_path):
    """A bare "\r" inside a record's text (found by the property test below) used to be written
    unquoted, and pandas read it back as a line break: later columns shifted into the scores."""
    frame = batch(screened, rows=60)
    frame[ID] = [f"tx\r{i}" for i in range(len(frame))]
    frame["merchant_category"] = frame["merchant_category"].astype(str) + "\r"  # unseen, but scored
    frame.loc[:9, "amount"] = frame.loc[:9, "amount"] * 1000  # ten clear anomalies to flag
    frame.loc[30, "amount"] = np.inf  # one quarantined row, "\r" in its id
    out = screen(write(frame, tmp_path / "batch.parquet"), "fraud", tmp_path / "out").out_dir
    flagged = pd.read_csv(out / "flagged.csv", dtype={ID: str})
    quarantine = pd.read_csv(out / "quarantine.csv", dtype=str, keep_default_na=False)
    assert len(flagged) >= 5 and flagged["anomaly_score"].dtype == float and flagged["p_value"].dtype == float
    assert set(flagged[ID]) <= set(frame[ID]) and flagged["merchant_category"].str.endswith("\r").all()
    assert list(quarantine[ID]) == ["tx\r30"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_screening_never_crashes_and_accounts_for_every_row(screened, tmp_path_factory, data):
    columns = [ID, "amount", "merchant_category", "country", "channel", "card_present", "hour", "home_country",
               "customer_typical_amount"]
    n = data.draw(st.integers(0, 30), label="rows")
    frame = pd.DataFrame({c: data.draw(st.lists(_cells if c != ID else st.one_of(st.none(), st.text(max_size=3)),
                                                min_size=n, max_size=n), label=c) for c in columns})
    frame = frame.astype(object)
    tmp = tmp_path_factory.mktemp("random")
    fmt = data.draw(st.sampled_from(["csv", "parquet"]), label="format")
    path = write(frame, tmp / f"batch.{fmt}")
    written = pd.read_csv(path, dtype=str, keep_default_na=False) if fmt == "csv" else pd.read_parquet(path)
    summary = read_summary(screen(path, "fraud", tmp / "out", batch_rows=7).out_dir)
    assert summary["rows_in"] == len(written) == summary["rows_scored"] + summary["rows_quarantined"]
    assert json.loads(json.dumps(summary)) == summary


def test_new_category_values_are_counted_for_the_whole_file_and_warned_once(screened, tmp_path):
    import warnings

    from maskae.table_encoding import UnknownCategoryWarning

    frame = batch(screened)
    frame.loc[[4, 70, 150, 151], "merchant_category"] = ["new-merchant-type"] * 3 + ["another"]  # in 3 of 4 chunks
    frame.loc[[9, 99], "amount"] = np.nan  # scored as hidden cells, and said so
    path = write(frame, tmp_path / "batch.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = screen(path, "fraud", tmp_path / "out", batch_rows=64).out_dir
    said = [str(w.message) for w in caught if issubclass(w.category, UnknownCategoryWarning)]
    assert said == ["batch.csv: column 'merchant_category': 4 value(s) never seen in training, scored as 'unknown' "
                    "(most frequent: 'new-merchant-type' (3), 'another' (1))"]
    summary = accounted(out, frame)
    assert summary["unseen_categories"] == {"merchant_category": {
        "values": 4, "share": 4 / 200, "reads_as": "unknown", "most_common": {"new-merchant-type": 3, "another": 1},
        "counts_exact": True}}
    import mlflow

    assert mlflow.get_run(summary["mlflow_run_id"]).data.metrics["unseen_category_values"] == 4
    assert summary["missing_values"] == {"amount": 2}
    assert "values missing</th><td>amount: 2 (1.00% of rows scored); scored as hidden cells" in \
        (out / "report.html").read_text()
    assert "merchant_category: 4 (2.00% of rows scored), read as unknown, most frequent new-merchant-type (3), " \
        "another (1)" in (out / "report.html").read_text()
    clean = write(batch(screened), tmp_path / "clean.csv")
    assert read_summary(screen(clean, "fraud", tmp_path / "clean").out_dir)["unseen_categories"] == {}


def test_a_file_changed_while_screened_fails_without_output_or_warnings(screened, tmp_path):
    import warnings

    from maskae.table_encoding import UnknownCategoryWarning
    from pipeline.screen import in_process_scorer

    frame = batch(screened)
    frame.loc[3, "merchant_category"] = "new-merchant-type"
    path = write(frame, tmp_path / "batch.csv")

    def appending_scorer(model):  # another process appends rows while the first chunk is scored
        def scores(frames):
            for n, chunk_scores in enumerate(in_process_scorer(model)(frames)):
                if n == 0:
                    with open(path, "a") as file:
                        file.write(frame.head(1).assign(**{ID: "late"}).to_csv(index=False, header=False))
                yield chunk_scores
        return scores

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(IngestError, match="changed while it was screened"):
            screen(path, "fraud", tmp_path / "out", batch_rows=64, scorer=appending_scorer)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not [w for w in caught if issubclass(w.category, UnknownCategoryWarning)]  # nothing said of a bad run


def test_a_taken_folder_says_which_screening_it_holds():
    from types import SimpleNamespace

    from pipeline.screen import _held

    v2 = SimpleNamespace(name="fraud", version="2")
    night = {"input": {"path": "/in/night1.csv"}, "model": {"name": "fraud", "version": "1"}}
    assert _held(night, "night1.csv", v2) == ("the screening of night1.csv by fraud v1, not this screening of "
                                               "night1.csv by fraud v2")  # a rerun after a promotion
    assert _held(night, "night1.csv", SimpleNamespace(name="fraud", version="1")) == (
        "a screening of night1.csv by fraud v1 from before its input changed")


def test_values_beyond_the_training_range_warn_only_beyond_chance():
    from collections import Counter
    from types import SimpleNamespace

    from pipeline.screen import OutsideRange

    model = SimpleNamespace(detector=SimpleNamespace(training_range=lambda: {"amount": (0.79, 3573.32, 100_000)}))
    outside = OutsideRange(below=Counter(amount=30))
    # 30 of a million values below the smallest of 100,000 training values: an ordinary night, as that
    # smallest is itself a draw (a binomial test at its expected share, 10 of a million, would warn) ...
    assert outside.summary(model, Counter(amount=1_000_000))["amount"]["below_beyond_chance"] is False
    # ... where 10 refunds among 200 values are not
    assert OutsideRange(below=Counter(amount=10)).summary(model, Counter(amount=200))["amount"]["below_beyond_chance"]
