"""The analysts' loop on a real screening run: verdicts in, precision in the report and MLflow, labels into promotion.

Each test works on its own copy of the ``conftest`` screening run, so their order does not matter.
"""

import shutil
import warnings

import mlflow
import pandas as pd
import pytest

from flows.cli import main
from pipeline import tracking
from pipeline.promote import VERDICTS_CAVEAT, promote
from pipeline.review import review
from pipeline.train import train
from pipeline.verdicts import VERDICT_LABEL, VerdictError, labelled_records, stored_verdicts


@pytest.fixture
def run(screened, tmp_path):
    """A copy of the screening run under ``tmp_path/runs``, and verdicts on its flagged records from
    the generator's truth (fraud / legitimate), written to ``tmp_path/verdicts.csv``."""
    copy = shutil.copytree(screened["run"], tmp_path / "runs" / "day")
    flagged = pd.read_csv(copy / "flagged.csv", dtype={"transaction_id": str})
    truth = screened["batch"].set_index("transaction_id")["is_fraud"]
    verdicts = pd.DataFrame({"id": flagged["transaction_id"],
                             "outcome": ["fraud" if truth[i] else "legitimate" for i in flagged["transaction_id"]]})
    verdicts.to_csv(tmp_path / "verdicts.csv", index=False)
    return {**screened, "run": copy, "flagged": flagged, "verdicts": verdicts, "file": tmp_path / "verdicts.csv"}


def test_verdicts_are_stored_merged_logged_and_shown(run, tmp_path):
    first = review(run["run"], run["file"])
    fraud = int((run["verdicts"]["outcome"] == "fraud").sum())
    assert (first.submitted, first.stored, first.flags.reviewed, first.flags.anomalous) == (
        len(run["flagged"]), len(run["flagged"]), len(run["flagged"]), fraud)
    assert 0 < fraud < len(run["flagged"])  # both outcomes, so promotion can use them
    page = (run["run"] / "report.html").read_text()
    assert f"precision of the reviewed flags {fraud / len(run['flagged']):.1%}" in page and 'class="verdict-fraud"' in page

    changed = run["verdicts"].iloc[:1].assign(outcome="legitimate" if run["verdicts"]["outcome"][0] == "fraud"
                                              else "fraud", note="=second look")  # formula-like: kept inert
    changed.to_csv(tmp_path / "again.csv", index=False)
    again = review(run["run"], tmp_path / "again.csv")
    stored = pd.read_csv(run["run"] / "verdicts.csv", dtype=str, keep_default_na=False)
    assert again.stored == len(stored) == len(run["flagged"]) and stored["transaction_id"].is_unique
    assert stored.set_index("transaction_id").loc[changed["id"][0], "note"] == "'=second look"  # the latest wins
    assert stored_verdicts(run["run"]).set_index("transaction_id").loc[changed["id"][0], "note"] == \
        "=second look"  # read back as written
    # Kept for audit: when each verdict was given, and the outcome it overturned.
    assert again.overturned == (changed["id"][0],) and (stored["reviewed_at"] != "").all()
    assert stored.set_index("transaction_id")["previous_outcome"].to_dict() == {
        i: (run["verdicts"]["outcome"][0] if i == changed["id"][0] else "") for i in stored["transaction_id"]}

    summary = pd.read_json(run["run"] / "summary.json", typ="series")
    logged = mlflow.get_run(summary["mlflow_run_id"])
    assert logged.data.metrics["verdicts"] == len(run["flagged"])
    assert logged.data.metrics["flag_precision"] == pytest.approx(again.flags.precision)
    artifacts = mlflow.MlflowClient().list_artifacts(logged.info.run_id, "review")
    assert [f.path for f in artifacts] == ["review/verdicts.csv"]


def test_verdicts_stored_before_the_audit_columns_merge_without_complaint():
    from pipeline.review import _merged

    old = pd.DataFrame({"transaction_id": ["tx1", "tx2"], "outcome": ["fraud", "fraud"], "note": ["", ""]})
    new = pd.DataFrame({"transaction_id": ["tx2", "tx3"], "outcome": ["legitimate", "fraud"], "note": ["", ""]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas warns of filling a float column with text, and will refuse it
        merged, overturned, _ = _merged(old, new, "transaction_id")
        first, _, _ = _merged(None, new, "transaction_id")
    assert overturned == ("tx2",) and merged.set_index("transaction_id")["previous_outcome"].to_dict() == {
        "tx1": "", "tx2": "fraud", "tx3": ""}
    assert (merged.set_index("transaction_id")["reviewed_at"]["tx1"], first["previous_outcome"].tolist()) == ("", ["", ""])
    # The same verdict submitted again changes nothing: its first review time stays.
    stamped = merged.assign(reviewed_at="2026-01-01T00:00:00+00:00")
    again, none, unchanged = _merged(stamped, new, "transaction_id")
    assert none == () and unchanged == 2 and again.equals(stamped)
    # ... and so does the same outcome sent again without its note (a file with no note column).
    noted = stamped.assign(note=["", "night travel, IT", ""])
    again, _, _ = _merged(noted, new, "transaction_id")
    assert again.equals(noted)
    # A new outcome without a note does not inherit the old outcome's note.
    flipped, _, unchanged = _merged(noted, new.assign(outcome=["fraud", "fraud"]), "transaction_id")
    assert unchanged == 1  # tx3 was fraud already
    assert flipped.set_index("transaction_id").loc["tx2", ["outcome", "note"]].tolist() == ["fraud", ""]


def test_a_bad_verdict_file_changes_nothing(run, tmp_path):
    before = (run["run"] / "report.html").read_bytes()
    (tmp_path / "bad.csv").write_text("id,outcome\nnot-a-record,fraud\n")
    with pytest.raises(VerdictError, match="line 2, column 'id': 'not-a-record' is not a record"):
        review(run["run"], tmp_path / "bad.csv")
    assert not (run["run"] / "verdicts.csv").exists() and (run["run"] / "report.html").read_bytes() == before


def test_maskae_review_command(run, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(run["root"])  # where the store is, as an analyst would run it
    assert main(["review", "--run", str(run["run"]), "--verdicts", str(run["file"])]) == 0
    out = capfd.readouterr().out
    assert f"{len(run['flagged'])} verdict(s) attached" in out and "did not flag" not in out
    assert out.count("\n") == 1 and out.endswith(f" Report: {run['run'] / 'report.html'}\n")  # one line
    assert main(["review", "--run", str(run["run"]), "--verdicts", str(run["file"])]) == 0  # the same file again
    n = len(run["flagged"])
    assert f"0 verdict(s) attached; {n} more as the run had them already; the run holds" in capfd.readouterr().out
    scored = pd.read_parquet(run["run"] / "scores.parquet", columns=["transaction_id"])["transaction_id"].astype(str)
    unflagged = sorted(set(scored) - set(run["flagged"]["transaction_id"]))[0]
    (tmp_path / "unflagged.csv").write_text(f"id,outcome\n{unflagged},legitimate\n")
    assert main(["review", "--run", str(run["run"]), "--verdicts", str(tmp_path / "unflagged.csv")]) == 0
    report = (run["run"] / "report.html").read_text()
    listed = report[report.index('id="unflagged"'):]  # with its score, below the run's threshold
    assert f"<td>{unflagged}</td>" in listed[:listed.index("</table>")]
    assert "1 verdict is on a record that the run did not flag (kept, but not counted here, nor used by promotion" \
        in capfd.readouterr().out
    summary = pd.read_json(run["run"] / "summary.json", typ="series")
    assert mlflow.get_run(summary["mlflow_run_id"]).data.metrics["verdicts_not_flagged"] == 1
    assert main(["review", "--run", str(tmp_path), "--verdicts", str(run["file"])]) == 2
    err = capfd.readouterr().err
    assert err.startswith("maskae review: error:") and "not a finished screening folder" in err and err.count("\n") == 1
    assert main(["review", "--run", str(tmp_path / "no-run"), "--verdicts", str(run["file"])]) == 2
    assert "no such folder" in capfd.readouterr().err
    assert main(["promote", "--model", "fraud", "--data", "x.csv"]) == 2
    assert "--data needs --label-col" in capfd.readouterr().err


def test_the_runs_flagged_csv_with_an_outcome_column_is_a_verdict_file(run, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(run["root"])
    sheet = pd.read_csv(run["run"] / "flagged.csv", dtype=str, keep_default_na=False).assign(Outcome="")
    sheet.loc[[0, 1], "Outcome"] = ["fraud", "legitimate"]  # an analyst's first two decisions
    first, second = sheet["transaction_id"][:2]
    sheet = pd.concat([sheet, sheet.iloc[[0]].assign(Outcome="legitimate")])  # and a change of mind further down
    sheet.to_csv(tmp_path / "sheet.csv", index=False)
    assert main(["review", "--run", str(run["run"]), "--verdicts", str(tmp_path / "sheet.csv")]) == 0
    assert capfd.readouterr().out.startswith(
        f"2 verdict(s) attached; {len(sheet) - 3} row(s) with no outcome yet left out; 1 record(s) given both "
        f"outcomes in the file, its last line for each kept: {first}; the run holds 2.")
    assert stored_verdicts(run["run"]).set_index("transaction_id")["outcome"].to_dict() == {
        first: "legitimate", second: "legitimate"}
    sheet.rename(columns={"amount": "amnt"}).to_csv(tmp_path / "renamed.csv", index=False)  # not the run's own
    assert main(["review", "--run", str(run["run"]), "--verdicts", str(tmp_path / "renamed.csv")]) == 2
    assert "unexpected column(s) ['amnt']: a verdict file holds 'transaction_id' (or 'id'), 'outcome' and 'note' " \
        "only, or is the run's flagged.csv with an 'outcome' column added" in capfd.readouterr().err


def test_collected_verdicts_are_promotions_labelled_data(run, tmp_path):
    flagged = pd.read_csv(run["run"] / "flagged.csv", dtype=str, keep_default_na=False)
    flagged.loc[0, "country"] = "NA"  # Namibia, which pandas' defaults would read back as missing
    flagged.to_csv(run["run"] / "flagged.csv", index=False)
    review(run["run"], run["file"])
    labelled = labelled_records(tmp_path / "runs")
    assert labelled.set_index("transaction_id").loc[flagged.loc[0, "transaction_id"], "country"] == "NA"
    assert sorted(labelled["transaction_id"]) == sorted(run["flagged"]["transaction_id"])
    expected = (run["verdicts"].set_index("id")["outcome"] == "fraud").astype(int)
    assert (labelled[VERDICT_LABEL].to_numpy() == expected[labelled["transaction_id"]].to_numpy()).all()
    assert "amount" in labelled and "reasons" not in labelled

    # The same records reviewed again in a later run count once, with the later verdict; an id that
    # another run gave to other values (ids restarting with each file) is another record.
    later = shutil.copytree(run["run"], tmp_path / "runs" / "later")
    summary = pd.read_json(later / "summary.json", typ="series")
    summary["finished_at"] = "9999-12-31T00:00:00+00:00"
    summary.to_json(later / "summary.json")
    first_id = flagged.loc[0, "transaction_id"]
    stored = pd.read_csv(later / "verdicts.csv", dtype=str, keep_default_na=False)
    flipped = "legitimate" if stored.set_index("transaction_id").loc[first_id, "outcome"] == "fraud" else "fraud"
    stored.loc[stored["transaction_id"] == first_id, "outcome"] = flipped
    stored.to_csv(later / "verdicts.csv", index=False)
    other = pd.read_csv(later / "flagged.csv", dtype=str, keep_default_na=False)
    other["amount"] = other["amount"].astype(float).map(lambda a: f"{a:.4f}")  # 500 written 500.0000: the same
    other.loc[1, "amount"] = "123456.78"
    other.to_csv(later / "flagged.csv", index=False)
    again = labelled_records(tmp_path / "runs")
    assert len(again) == len(labelled) + 1 and (again["transaction_id"] == other.loc[1, "transaction_id"]).sum() == 2
    assert again.set_index("transaction_id").loc[first_id, VERDICT_LABEL] == int(flipped == "fraud")
    shutil.rmtree(later)

    weak = run["config"].model_copy(update={"calibration": run["config"].calibration.model_copy(
        update={"strategy": "budget", "level": 0.02})})
    challenger = train(weak)  # version 2, challenger; version 1 stays champion
    decision = promote("fraud", verdicts_from=tmp_path / "runs")
    assert decision.challenger_version == challenger.version != decision.champion_version
    assert decision.rows_evaluated == len(labelled) and VERDICTS_CAVEAT in decision.reason
    tags = mlflow.MlflowClient().get_model_version("fraud", challenger.version).tags
    assert tags["promotion.evaluation_data"].startswith("verdicts") and tracking.resolve_model("fraud@challenger")
    with pytest.raises(VerdictError, match="no reviewed screening run"):
        promote("fraud", verdicts_from=tmp_path / "nothing-here")
