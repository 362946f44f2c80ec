"""The pipeline's business steps as plain functions: train -> registry -> screen -> promote.

One throwaway SQLite MLflow store per module, tiny models (30 steps) and two days of generated
card transactions, so the whole file runs in well under a minute on two cores.
"""

import doctest
import hashlib
import json
import math
import os
import re
import warnings
from collections import Counter

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from data.transactions import generate_transactions  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.ingest import REASON_COLUMN, Schema, SchemaError, read_table, validate  # noqa: E402

mlflow = pytest.importorskip("mlflow")
from pipeline import scoring, screening_output, sources, tracking, training_plots  # noqa: E402
from pipeline.promote import _policy, promote, set_champion  # noqa: E402
from pipeline.screen import UnseenValues, screen  # noqa: E402
from pipeline.train import train  # noqa: E402

NAME = "fraud"
FEATURES = ["amount", "merchant_category", "country", "channel", "card_present", "hour", "home_country",
            "customer_typical_amount"]
SCRIPT = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://evil.example","open me")'  # a spreadsheet would run it
BAD_ROWS = {5: "is not a number", 20: "missing id", 300: "duplicate id"}


def config(path, **sections) -> PipelineConfig:
    data = {"path": str(path), "id_column": "transaction_id", "label_column": "is_fraud", "columns": FEATURES}
    raw = {"data": data, "model": {"max_steps": 30, "random_state": 0}, "mlflow": {"model_name": NAME},
           "calibration": {"strategy": "fpr", "level": 0.05}}
    for section, values in sections.items():
        raw[section] = {**raw[section], **values}
    return PipelineConfig.model_validate(raw)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A fresh tracking store, a training file and a batch to screen with a few broken rows."""
    root = tmp_path_factory.mktemp("steps")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        history = generate_transactions(n_customers=300, days=2, fraud_rate=0.03, seed=0)
        history.to_csv(root / "train.csv", index=False)
        batch = generate_transactions(n_customers=300, days=2, fraud_rate=0.03, seed=1).astype({"amount": object})
        batch.loc[5, ["amount", "merchant"]] = ["twelve", FORMULA]  # text in a numeric column
        batch.loc[20, "transaction_id"] = None  # missing id
        batch.loc[300, "transaction_id"] = batch.loc[10, "transaction_id"]  # repeats an id of an earlier chunk
        batch.loc[50, ["merchant", "amount"]] = [SCRIPT, 1_000_000.0]  # will be flagged: it reaches the report
        batch.loc[51, ["merchant", "amount"]] = [FORMULA, 500_000.0]  # will be flagged too
        batch["hour"] = batch["hour"].astype("Int64")
        batch.loc[[7, 57], "hour"] = None  # a gap: pandas reads the first chunks' hours as floats
        batch.to_csv(root / "batch.csv", index=False)
        yield {"root": root, "history": history, "batch": batch}


@pytest.fixture(scope="module")
def first(env):
    return train(config(env["root"] / "train.csv"))


@pytest.fixture(scope="module")
def screening(env, first):
    return screen(env["root"] / "batch.csv", NAME, env["root"] / "out" / "day2", batch_rows=100)


@pytest.fixture(scope="module")
def weak(env, first):
    """Version 2, trained without labels (frauds included): sees only the customer's profile, nothing
    about the transaction; flags the top 2 % of each batch."""
    columns = ["home_country", "customer_typical_amount"]
    return train(config(env["root"] / "train.csv", data={"columns": columns, "label_column": None},
                        calibration={"strategy": "budget", "level": 0.02}))


@pytest.mark.parametrize("module", [scoring, screening_output, sources, training_plots])
def test_module_examples_run(module):
    assert doctest.testmod(module).failed == 0


def test_train_registers_first_version_and_sets_known_frauds_aside(env, first):
    frauds = int(env["history"]["is_fraud"].sum())
    assert (first.version, set(first.aliases)) == ("1", {"challenger", "champion"})
    assert first.known_anomalies_set_aside == frauds > 0 and first.rows_quarantined == 0
    normals = first.rows_read - frauds
    assert first.rows_validation == frauds + round(0.2 * normals)  # frauds only ever validate
    assert first.rows_fit + first.rows_calibration + first.rows_validation == first.rows_read
    assert 0.5 < first.metrics["validation_auroc"] <= 1 and "validation_auprc" in first.metrics
    run = mlflow.get_run(first.run_id)
    sha = hashlib.sha256((env["root"] / "train.csv").read_bytes()).hexdigest()
    assert run.data.tags["data.sha256"] == sha and run.data.params["data.rows"] == str(first.rows_read)
    assert run.data.metrics["known_anomalies_set_aside"] == frauds
    logged = run.data.params  # the settings that took part, and the file's width apart from the feature list
    assert logged["model.backend"] == "mlp" and not {"model.patch_size", "calibration.objective"} & set(logged)
    assert logged["data.file_columns"] == str(len(env["history"].columns)) and "data.columns" not in logged
    client = mlflow.MlflowClient()
    files = {f.path for f in client.list_artifacts(first.run_id, "plots")}
    assert files == {"plots/score_histogram.png", "plots/pr_curve.png", "plots/training_loss.png"}
    schema = json.loads(mlflow.artifacts.load_text(f"runs:/{first.run_id}/schema.json"))
    assert list(schema["features"]) == FEATURES and schema["features"]["hour"] == "numeric"
    inputs = mlflow.models.get_model_info(f"models:/{NAME}/1").signature.inputs
    assert inputs.input_names() == FEATURES  # features only: no id, no label
    assert str(inputs.input_types()[FEATURES.index("hour")]) == "DataType.double"


def test_training_data_over_max_rows_are_sampled_and_the_run_says_so(env, first):
    rows = len(env["history"])
    with pytest.warns(UserWarning, match=f"{rows:,} rows; training on a uniform random sample of 400"):
        sampled = train(config(env["root"] / "train.csv", data={"max_rows": 400}, mlflow={"model_name": "sampled"}))
    assert sampled.rows_read == rows and sampled.rows_fit + sampled.rows_calibration + sampled.rows_validation == 400
    tags = mlflow.get_run(sampled.run_id).data.tags
    assert (tags["data.rows"], tags["data.rows_sampled"]) == (str(rows), "400")


def test_codes_some_training_chunks_read_as_numbers_are_read_again_as_text(tmp_path, monkeypatch):
    import pipeline.train

    monkeypatch.setattr(pipeline.train, "SAMPLE_CHUNK", 2)  # chunk 1 holds digits only, chunk 2 a letter
    zips = ["01234", "02115", "SW1A", "01234"]
    pd.DataFrame({"transaction_id": list("abcd"), "zip": zips, "amount": [1.5, 2, 3, 4]}).to_csv(tmp_path / "z.csv",
                                                                                                  index=False)
    data = config(tmp_path / "z.csv", data={"columns": ["zip", "amount"], "label_column": None}).data
    frame, rows, _ = pipeline.train._training_rows([tmp_path / "z.csv"], data, seed=0)
    assert rows == 4 and frame["zip"].tolist() == zips and frame["amount"].dtype.kind == "f"
    pd.DataFrame({"transaction_id": ["e"], "zip": ["01234"]}).to_csv(tmp_path / "z2.csv", index=False)
    with pytest.raises(SchemaError, match=r"z2.csv has other columns than .*z.csv: it lacks \['amount'\]"):
        pipeline.train._training_rows([tmp_path / "z.csv", tmp_path / "z2.csv"], data, seed=0)


def test_a_column_of_numbers_with_a_stray_word_is_read_as_numbers_over_the_whole_file(tmp_path, monkeypatch):
    import pipeline.train

    # One corrupt amount in 1,000, where a sample of 100 rows from chunks of 100 may leave it out; the
    # spellings of a missing number are missing, as screening reads them; zip codes stay text.
    monkeypatch.setattr(pipeline.train, "SAMPLE_CHUNK", 100)
    amounts = [f"{i}.5" for i in range(1000)]
    amounts[7], amounts[300], amounts[600] = "abc", "#N/A", "-nan"
    zips = [f"0{i:04d}" for i in range(999)] + ["K1A 0B6"]
    pd.DataFrame({"transaction_id": [f"T{i}" for i in range(1000)], "amount": amounts, "zip": zips}).to_csv(
        tmp_path / "t.csv", index=False)
    data = config(tmp_path / "t.csv", data={"columns": ["amount", "zip"], "label_column": None, "max_rows": 100}).data
    for seed in range(3):
        with pytest.warns(UserWarning, match=r"'amount' is numeric though 1 of its 998 values do not parse as numbers "
                                             r"\(e.g. 'abc'\): the rows with text in it are quarantined"):
            sample, rows, numbers = pipeline.train._training_rows([tmp_path / "t.csv"], data, seed=seed)
        assert (rows, numbers, len(sample)) == (1000, ["amount"], 100) and sample["zip"].str.len().min() == 5
        schema = Schema.infer(sample, "transaction_id", columns=["amount", "zip"], column_types={"amount": "numeric"})
        clean = validate(sample, schema).clean
        assert clean["amount"].dtype.kind == "f" and clean["zip"].str.startswith("0").sum() >= 99
    whole, _, _ = pipeline.train._training_rows([tmp_path / "t.csv"], config(tmp_path / "t.csv", data={
        "columns": ["amount", "zip"], "label_column": None}).data, seed=0)
    checked = validate(whole, Schema.infer(whole, "transaction_id", columns=["amount", "zip"],
                                           column_types={"amount": "numeric"}))
    assert checked.quarantined[REASON_COLUMN].tolist() == ["amount: 'abc' is not a number"]  # '#N/A' is missing


def test_training_and_screening_read_na_as_a_country_and_as_a_missing_number(env, tmp_path):
    """'NA' is Namibia's country code: a text column keeps it in training as in screening (only an
    empty cell is missing there), while a number column still reads R's NA as missing."""
    import pipeline.train

    frame = env["history"].head(40).astype({"amount": object})
    frame.loc[:9, "country"] = "NA"
    frame.loc[5, "amount"] = "NA"
    frame.loc[6, "country"] = None
    frame.to_csv(tmp_path / "na.csv", index=False)
    data = config(tmp_path / "na.csv", data={"label_column": None}).data
    sample, _, _ = pipeline.train._training_rows([tmp_path / "na.csv"], data, seed=0)
    sample = sample.sort_index()
    assert sample["country"].iloc[:10].fillna("-").tolist() == ["NA"] * 6 + ["-"] + ["NA"] * 3
    assert pd.isna(sample["amount"].iloc[5]) and sample["amount"].dtype.kind == "f"
    schema = Schema.infer(sample, "transaction_id", columns=FEATURES)
    screened = validate(read_table(tmp_path / "na.csv", text_columns=schema.text_columns), schema)
    assert len(screened.quarantined) == 0 and (screened.clean["country"] == "NA").sum() == 9


def test_training_quarantines_the_csv_lines_it_cannot_split_and_counts_them(env):
    lines = env["history"].head(80).to_csv(index=False).splitlines()
    lines.insert(11, lines[10] + ",EXTRA")  # an unquoted comma: 10 rows, then line 12
    (env["root"] / "part-1.csv").write_text("\n".join(lines) + "\n")
    more = env["history"].iloc[100:102].to_csv(index=False).splitlines()
    (env["root"] / "part-2.csv").write_text("\n".join([*more, more[-1] + ",X"]) + "\n")  # after its last row
    trained = train(config(env["root"] / "part-*.csv", data={"label_column": None}, mlflow={"model_name": "split"}))
    assert (trained.rows_read, trained.rows_quarantined) == (80 + 1 + 2 + 1, 2)
    quarantine = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{trained.run_id}/quarantine/quarantine.csv"))
    assert [r.split(" (")[0] for r in quarantine["quarantine_reason"]] == ["part-1.csv: line 12", "part-2.csv: line 4"]


def test_settings_for_clean_training_data_reach_the_registered_model(env):
    settings = {"neighbour_sample_sizes": [256, 1024], "contamination": 0.01}  # the README's recipe, from TOML
    trained = train(config(env["root"] / "train.csv", model=settings, mlflow={"model_name": "vetted"}))
    detector = scoring.load_scoring_model("vetted").detector  # its champion: the first version
    assert (detector.neighbour_sample_sizes, detector.contamination) == ((256, 1024), 0.01)
    assert mlflow.get_run(trained.run_id).data.params["model.neighbour_sample_sizes"] == "(256, 1024)"


def test_training_does_not_warn_about_the_columns_it_was_told_to_leave_out(env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(config(env["root"] / "train.csv", data={"columns": None, "exclude_columns": ["customer_id", "timestamp",
                                                                                           "merchant", "fraud_pattern"]},
                     model={"max_steps": 5}, mlflow={"model_name": "excluded"}))
    assert not [w for w in caught if "not in the schema" in str(w.message)]


def test_a_column_typed_numeric_in_the_config_is_not_named_as_an_identifier(env):
    frame = env["history"].assign(terminal_number=np.random.default_rng(0).integers(10**5, 10**6, len(env["history"])))
    frame.to_csv(env["root"] / "terminals.csv", index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(config(env["root"] / "terminals.csv", data={"columns": [*FEATURES, "terminal_number"],
                                                          "column_types": {"terminal_number": "numeric"}},
                     mlflow={"model_name": "terminals"}))
    assert not [w for w in caught if "terminal_number" in str(w.message)]  # told it is a number: not second-guessed


def test_training_with_every_row_labelled_anomalous_says_where_the_rows_went(env):
    env["history"].head(40).assign(is_fraud=1).to_csv(env["root"] / "all_fraud.csv", index=False)
    with pytest.raises(ValueError, match=r"0 of the 40 rows read from .*all_fraud.csv' are left to train and calibrate on \(0 "
                                         r"quarantined, 40 set aside as known anomalies by 'is_fraud'"):
        train(config(env["root"] / "all_fraud.csv", mlflow={"model_name": "nothing-left"}))
    bad = env["history"].head(40).assign(is_fraud="0")
    bad.loc[[7, 30], "is_fraud"] = "chargeback"  # a label word the reader does not know: say which record
    bad.to_csv(env["root"] / "bad_label.csv", index=False)
    with pytest.raises(ValueError, match=rf"'chargeback' is not a label \(2 records hold a value that is not one; "
                                         rf"the first: transaction_id {bad['transaction_id'][7]}\)"):
        train(config(env["root"] / "bad_label.csv", mlflow={"model_name": "bad-label"}))
    env["history"].head(3).assign(is_fraud=0).to_csv(env["root"] / "three.csv", index=False)
    with pytest.raises(ValueError, match="a model needs at least 3 besides its 20% held out to calibrate"):
        train(config(env["root"] / "three.csv", data={"label_column": None}, mlflow={"model_name": "too-few"}))


def test_screen_writes_the_output_folder(env, screening):
    out, summary = screening.out_dir, screening.summary
    assert {p.name for p in out.iterdir()} == {"scores.parquet", "flagged.csv", "quarantine.csv", "report.html",
                                               "summary.json"}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert summary["rows_in"] == len(env["batch"]) == summary["rows_scored"] + summary["rows_quarantined"]
    assert summary["model"] == {"name": NAME, "version": "1", "alias": "champion", "uri": f"models:/{NAME}/1"}
    assert summary["calibration"]["strategy"] == "fpr" and summary["calibration"]["threshold"] is not None
    assert 0 <= summary["drift"]["ks_statistic"] <= 1 and mlflow.get_run(summary["mlflow_run_id"])
    quarantine = pd.read_csv(out / "quarantine.csv")
    assert len(quarantine) == summary["rows_quarantined"] == len(BAD_ROWS)
    for reason, expected in zip(quarantine["quarantine_reason"], BAD_ROWS.values()):
        assert expected in reason
    scores = pd.read_parquet(out / "scores.parquet")
    assert list(scores.columns) == ["transaction_id", "anomaly_score", "p_value", "flagged"]
    assert len(scores) == summary["rows_scored"] and scores["transaction_id"].is_unique
    flagged = pd.read_csv(out / "flagged.csv")
    assert len(flagged) == summary["rows_flagged"] == scores["flagged"].sum() > 0
    assert flagged["anomaly_score"].is_monotonic_decreasing and flagged["reasons"].str.contains(r"=.*expected ~").all()
    assert flagged.iloc[0]["merchant"] == SCRIPT and "amount=1000000" in flagged.iloc[0]["reasons"]
    lead = flagged.iloc[0]["reasons"].split("; amount=")[0]  # the evidence in words, then the features
    assert "unlike any training record +" in lead and "values rare in their own columns +" in lead
    new_country = flagged[flagged["country"] == "IT"]  # IT is in no training row: named in every reason list
    assert len(new_country) and new_country["reasons"].str.contains(r"country=IT \(expected ~\w+, \d+% of the "
                                                                     r"mismatch, never seen in training\)").all()
    report = (out / "report.html").read_text()
    assert "never seen in training" in report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report and SCRIPT not in report
    # whole numbers are written as the input has them (12, not 12.0), though read and scored as floats
    for written in (pd.read_csv(out / name, dtype=str) for name in ("quarantine.csv", "flagged.csv")):
        hours = written["hour"].dropna()
        assert len(hours) and hours.str.fullmatch(r"\d+").all()
        # a value a spreadsheet would run as a formula is written after a "'", and read back without it
        assert (written["merchant"] == "'" + FORMULA).sum() == 1 and FORMULA not in written["merchant"].tolist()
    assert (screening_output.read_output_csv(out / "flagged.csv")["merchant"] == FORMULA).sum() == 1
    assert (screening_output.read_output_csv(out / "quarantine.csv")["merchant"] == FORMULA).sum() == 1


def test_rerun_returns_the_same_screening(env, screening):
    before = (screening.out_dir / "scores.parquet").read_bytes()
    again = screen(env["root"] / "batch.csv", NAME, screening.out_dir, batch_rows=100)
    assert again.reused and again.summary == screening.summary
    assert (screening.out_dir / "scores.parquet").read_bytes() == before
    with pytest.raises(FileExistsError, match="choose a new folder"):  # same folder, other input
        screen(env["root"] / "train.csv", NAME, screening.out_dir)


def test_a_model_that_cannot_flag_says_so_at_each_screening(env):
    env["history"].head(60).to_csv(env["root"] / "few.csv", index=False)  # about 10 calibration rows: 0.01 needs 99
    with pytest.warns(UserWarning, match="threshold is \\+inf"):
        train(config(env["root"] / "few.csv", calibration={"level": 0.01}, mlflow={"model_name": "few"}))
    with pytest.warns(UserWarning, match=r"few v1 flags nothing: calibration set too small for alpha=0.01: n_cal=\d < 1/alpha - 1 = 99"):
        screen(env["root"] / "batch.csv", "few", env["root"] / "out" / "few")


def test_missing_column_is_refused_before_any_output(env, first):
    env["batch"].drop(columns=["amount"]).to_csv(env["root"] / "no_amount.csv", index=False)
    out = env["root"] / "out" / "no_amount"
    with pytest.raises(SchemaError, match="amount"):
        screen(env["root"] / "no_amount.csv", NAME, out)
    assert not out.exists() and not list(out.parent.glob(".no_amount*"))


def test_a_feature_column_never_filled_in_training_is_refused_with_the_flag_that_leaves_it_out(env):
    env["history"].assign(country=None).to_csv(env["root"] / "no_country.csv", index=False)
    with pytest.raises(SchemaError, match=r"column\(s\) \['country'\] have no value in any row trained on \(known "
                                          r"anomalies set aside\): leave them out \(drop them from --columns"):
        train(config(env["root"] / "no_country.csv"))


def test_an_id_column_that_is_a_feature_is_refused_before_any_output(env, first):
    out = env["root"] / "out" / "id_is_a_feature"
    with pytest.raises(SchemaError, match="id column 'merchant_category' is a feature of fraud version 1; name the "
                                          "batch's record id column .*'transaction_id'"):
        screen(env["root"] / "batch.csv", f"{NAME}/1", out, id_column="merchant_category")
    assert not out.exists()


def test_header_only_file_gives_an_empty_screening(env, first):
    (env["root"] / "empty.csv").write_text(",".join(env["batch"].columns) + "\n")
    summary = screen(env["root"] / "empty.csv", NAME, env["root"] / "out" / "empty").summary
    assert (summary["rows_in"], summary["rows_scored"], summary["rows_flagged"], summary["flag_rate"]) == (0, 0, 0, 0)
    assert summary["drift"]["ks_statistic"] is None
    assert pd.read_parquet(env["root"] / "out" / "empty" / "scores.parquet").empty


def test_batch_strategy_flags_do_not_depend_on_the_chunk_size(env, weak):
    assert weak.version == "2" and weak.aliases == ("challenger",)
    assert (weak.known_anomalies_set_aside, weak.rows_validation, weak.rows_fit + weak.rows_calibration) == (
        0, 0, weak.rows_read)
    assert "calibration_score_q99" in weak.metrics and not [k for k in weak.metrics if k.startswith("validation_")]
    runs = [screen(env["root"] / "batch.csv", f"{NAME}/2", env["root"] / "out" / f"v2-{n}", batch_rows=n)
            for n in (97, 100_000)]
    small, whole = (pd.read_parquet(r.out_dir / "scores.parquet") for r in runs)
    pd.testing.assert_frame_equal(small, whole)
    assert small["flagged"].sum() == int(np.ceil(0.02 * len(small)))  # the budget is the whole file's
    assert runs[0].summary["calibration"]["threshold_kind"] == "whole file"


def test_promotion_keeps_champion_when_challenger_is_worse(env, weak):
    decision = promote(NAME, env["root"] / "batch.csv", "is_fraud")
    assert (decision.decision, decision.challenger_version, decision.champion_version) == ("keep", "2", "1")
    assert decision.challenger["auprc"] < decision.champion["auprc"]
    assert tracking.resolve_model(NAME).version == "1"
    tags = mlflow.MlflowClient().get_model_version(NAME, "2").tags
    assert tags["promotion.decision"] == "keep" and tags["promotion.compared_with"] == "1"
    assert mlflow.get_run(decision.run_id).data.tags["maskae.run_type"] == "promotion"
    evaluated = hashlib.sha256((env["root"] / "batch.csv").read_bytes()).hexdigest()
    assert mlflow.get_run(decision.run_id).data.params["data.sha256"] == evaluated
    rows = len(env["batch"])  # its broken rows (BAD_ROWS) are left out, and the reason says so
    assert decision.rows_evaluated == rows - len(BAD_ROWS)
    assert re.search(rf"; \d+ labelled anomalies among {rows - 3:,} records \({rows - 3:,} of the {rows:,} records "
                     rf"read: 0 without a label, 3 that a model cannot score\)$", decision.reason)
    champion = mlflow.MlflowClient().get_model_version(NAME, "1").tags  # its side, apart from its own record
    assert (champion["promotion.last_decision"], champion["promotion.last_evaluation_data"]) == ("keep", "labelled file")
    assert json.loads(champion["promotion.last_metrics"]) == decision.champion
    with pytest.raises(ValueError, match=r"promotion takes a registered model's name alone \('fraud', not "
                                         r"'fraud@challenger'\)"):
        promote(f"{NAME}@challenger", env["root"] / "batch.csv", "is_fraud")
    on_training = promote(NAME, env["root"] / "train.csv", "is_fraud")  # what both versions were trained on
    assert on_training.reason.endswith("; caution: the file is the training data of version(s) 2, 1, whose metrics "
                                       "on it are optimistic: evaluate on records trained on by neither")
    # labelled records that a model cannot score (hours written "0h"): the error says why
    env["batch"].astype({"hour": object}).assign(hour="0h").to_csv(env["root"] / "hours.csv", index=False)
    with pytest.raises(ValueError, match=r"hold 0 anomalies among 0 \([\d,]+ labelled records cannot be scored, most often "
                                         r"because hour: '0h' is not a number\)"):
        promote(NAME, env["root"] / "hours.csv", "is_fraud")


def test_promotion_moves_champion_to_a_better_challenger(env, weak):
    # The weak version is champion now and the strong one the challenger.
    tracking.move_alias(NAME, "champion", "2", {"decision": "test setup"})
    mlflow.MlflowClient().set_registered_model_alias(NAME, "challenger", "1")
    strict = promote(NAME, env["root"] / "batch.csv", "is_fraud", max_fpr=1e-9)
    assert strict.decision == "keep" and "exceeds max_fpr" in strict.reason
    anomalies = int(pd.read_csv(env["root"] / "batch.csv")["is_fraud"].sum())
    thin = promote(NAME, env["root"] / "batch.csv", "is_fraud", margin=0.01, min_anomalies=anomalies + 1)
    assert thin.decision == "keep" and tracking.resolve_model(NAME).version == "2"
    assert re.search(rf"> margin 0.01\), but it rests on \d+ labelled anomalies, fewer than min_anomalies "
                     rf"{anomalies + 1}: too few to act on", thin.reason)
    decision = promote(NAME, env["root"] / "batch.csv", "is_fraud", margin=0.01, max_fpr=0.5)
    assert decision.promoted and decision.challenger["auprc"] > decision.champion["auprc"] + 0.01
    assert tracking.resolve_model(NAME).version == "1"
    tags = mlflow.MlflowClient().get_model_version(NAME, "1").tags
    assert tags["promotion.decision"] == "promote" and tags["champion.previous"] == "2"
    assert json.loads(tags["champion.reason"])["run_id"] == decision.run_id
    same = promote(NAME, env["root"] / "batch.csv", "is_fraud")
    assert same.decision == "no change" and "same version" in same.reason
    assert same.challenger == same.champion and same.challenger["auprc"] == pytest.approx(decision.challenger["auprc"])
    tags = mlflow.MlflowClient().get_model_version(NAME, "1").tags  # still the record of its promotion
    assert (tags["promotion.decision"], tags["promotion.run_id"]) == ("promote", decision.run_id)
    with pytest.raises(SchemaError, match="label column 'fraud' is not in"):  # checked even with nothing to compare
        promote(NAME, env["root"] / "batch.csv", "fraud")


def test_a_challenger_that_flags_no_labelled_anomaly_is_kept_out_whatever_its_metric():
    flags_nothing = {"auprc": 0.9, "recall": 0.0, "fpr": 0.0}  # a threshold of +inf passes any max_fpr
    decision, reason = _policy("auprc", 0.0, 0.02, flags_nothing, {"auprc": 0.3, "recall": 0.4, "fpr": 0.01})
    assert decision == "keep" and "catch none of the labelled anomalies (recall 0, the champion's 0.4000)" in reason
    assert _policy("auprc", 0.0, None, flags_nothing, {**flags_nothing, "auprc": 0.3})[0] == "promote"  # neither flags
    with pytest.raises(ValueError, match=r"max_fpr must be a rate in \[0, 1\], got 5"):
        promote(NAME, "labelled.csv", "is_fraud", max_fpr=5)


def test_champion_set_by_hand_rolls_back_and_takes_challenger_with_it(env, weak):
    client = mlflow.MlflowClient()
    tracking.move_alias(NAME, "champion", "2", {"decision": "test setup: version 2 was promoted"})
    client.set_registered_model_alias(NAME, "challenger", "2")
    # The emergency path checks that the version loads: a champion without its files would fail every night.
    files = next((env["root"] / "mlartifacts").rglob(client.get_model_version(NAME, "1").model_id))
    files.rename(files.with_name("moved"))
    try:
        with pytest.raises(tracking.ModelNotFoundError, match="is registered, but its files are not in the artifact"):
            set_champion(NAME, "1")
        assert str(client.get_registered_model(NAME).aliases["champion"]) == "2"
    finally:
        files.with_name("moved").rename(files)
    rolled = set_champion(NAME, "1", note="version 2 flags too much")
    assert (rolled.decision, rolled.challenger_version, rolled.champion_version) == ("set", "1", "2")
    beyond = [c for c in FEATURES if c not in ("home_country", "customer_typical_amount")]  # version 2 reads these two
    assert rolled.reason == (f"champion set by hand to version 1 (was 2): version 2 flags too much; version 1 reads "
                             f"column(s) {beyond} that version 2 did not: a batch exported for version 2 without them "
                             f"will fail; challenger moved from version 2 with it, so that no comparison promotes it "
                             f"again")
    assert {k: str(v) for k, v in client.get_registered_model(NAME).aliases.items()} == {"champion": "1",
                                                                                          "challenger": "1"}
    assert json.loads(client.get_model_version(NAME, "1").tags["champion.reason"])["note"] == "version 2 flags too much"
    assert json.loads(client.get_model_version(NAME, "2").tags["champion.rolled_back"])["to"] == "1"
    assert promote(NAME, env["root"] / "batch.csv", "is_fraud").decision == "no change"
    assert set_champion(NAME, "01").reason == "version 1 is champion already"  # MLflow reads "01" as 1
    with pytest.raises(tracking.ModelNotFoundError, match="has no version '9'"):
        set_champion(NAME, "9")
    # Restoring the version rolled back says why it was
    restored = set_champion(NAME, "2")
    assert "; version 2 was rolled back to version 1 before (version 2 flags too much)" in restored.reason


def test_a_rollback_stopped_before_champion_moved_is_finished_by_a_rerun(env, weak, monkeypatch):
    client = mlflow.MlflowClient()
    tracking.move_alias(NAME, "champion", "2", {"decision": "test setup: version 2 was promoted"})
    client.set_registered_model_alias(NAME, "challenger", "2")
    move = tracking.move_alias

    def stopped_at_champion(model_name, alias, version, record):
        if alias == "champion":
            raise KeyboardInterrupt  # the operator's Ctrl-C, after challenger moved
        move(model_name, alias, version, record)

    monkeypatch.setattr(tracking, "move_alias", stopped_at_champion)
    with pytest.raises(KeyboardInterrupt):
        set_champion(NAME, "1")

    def aliases():
        return {k: str(v) for k, v in client.get_registered_model(NAME).aliases.items()}

    assert aliases() == {"champion": "2", "challenger": "1"}  # the old champion still serves
    monkeypatch.setattr(tracking, "move_alias", move)
    assert set_champion(NAME, "1").decision == "set"
    assert aliases() == {"champion": "1", "challenger": "1"}


def test_labels_strategy_never_evaluates_its_threshold_on_the_rows_it_chose_it_on(env, first):
    result = train(config(env["root"] / "train.csv", calibration={"strategy": "labels", "level": None}))
    validation = first.known_anomalies_set_aside + round(0.2 * (first.rows_read - first.known_anomalies_set_aside))
    assert result.rows_validation == math.ceil(validation / 2)  # the other half chose the threshold
    assert "validation_auprc" in result.metrics and "threshold" in result.metrics
    tags = mlflow.MlflowClient().get_model_version(NAME, result.version).tags
    assert tags["calibration.strategy"] == "labels"


def test_unseen_values_stay_bounded_on_a_column_of_new_ids(monkeypatch):
    import pipeline.screen

    monkeypatch.setattr(pipeline.screen, "UNSEEN_KEPT", 10)  # keeps the most frequent tenth past 10 values
    unseen = UnseenValues()
    unseen.add({"merchant": Counter({"big": 50, **{f"id{i}": 1 for i in range(20)}})})
    unseen.add({"merchant": Counter({"big": 1, "id0": 1}), "country": Counter({"XK": 2})})
    assert unseen.totals == Counter({"merchant": 72, "country": 2})  # exact, whatever was dropped
    assert unseen.values["merchant"] == Counter({"big": 51, "id0": 1}) and unseen.pruned == {"merchant"}


def test_labels_read_as_flags_and_as_the_review_outcome_words():
    column = pd.Series(["1", "No", " fraud", "legitimate", "", None, "DEFECT", "good"], name="is_fraud")
    y, known = scoring.anomaly_labels(column)
    assert y.tolist() == [1, 0, 1, 0, 0, 0, 1, 0] and known.tolist() == [True] * 4 + [False] * 2 + [True] * 2
    with pytest.raises(ValueError, match=r"label column 'is_fraud': 'maybe' is not a label \(1 record holds a value that is not one\); use 1/0, .*fraud/legit"):
        scoring.anomaly_labels(pd.Series(["1", "maybe"], name="is_fraud"))
