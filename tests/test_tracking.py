"""MLflow tracking and registry on a throwaway SQLite store: versions, aliases, loading, no pickle."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from maskae import MaskedAutoencoderDetector  # noqa: E402
from maskae.calibration import Calibration  # noqa: E402
from tests.conftest import card_like  # noqa: E402

mlflow = pytest.importorskip("mlflow")
tracking = pytest.importorskip("pipeline.tracking")

NAME = "fraud-test"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Two versions of one model logged into a fresh SQLite store (the slow part, done once)."""
    workdir = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.chdir(workdir)  # anything MLflow writes to the current directory stays in here
        uri = tracking.tracking_uri(workdir)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        frame = card_like(200, seed=1)
        detector = MaskedAutoencoderDetector(max_steps=30, hidden_size=16, latent_size=4,
                                             calibration_fraction=0.3, random_state=0).fit(frame)
        calibration = Calibration.fit(detector.calibration_scores_, strategy="fpr", level=0.1)
        config = workdir / "config.toml"
        config.write_text("[mlflow]\nmodel_name = 'fraud-test'\n")
        log = dict(detector=detector, calibration=calibration, model_name=NAME, experiment="fraud",
                   params=detector.get_params(), metrics={"train_seconds": 1.5},
                   input_example=frame.head(5))
        first = tracking.log_trained_model(**log, artifacts={"config": config})
        second = tracking.log_trained_model(**log)
        yield dict(workdir=workdir, uri=uri, frame=frame, detector=detector, first=first, second=second, log=log)


def test_tracking_uri_default_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path / "w") == f"sqlite:///{(tmp_path / 'w').resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.internal:5000")
    assert tracking.tracking_uri(tmp_path) == "http://tracking.internal:5000"


def test_first_version_is_challenger_and_champion(registry):
    first = registry["first"]
    assert (first.name, first.version, set(first.aliases)) == (NAME, "1", {"challenger", "champion"})
    version = mlflow.MlflowClient().get_model_version(NAME, "1")
    assert version.tags["calibration.strategy"] == "fpr"
    assert float(version.tags["calibration.level"]) == 0.1
    assert version.tags["champion.previous"] == "none"


def test_second_version_moves_only_challenger(registry):
    assert (registry["second"].version, registry["second"].aliases) == ("2", ("challenger",))
    aliases = mlflow.MlflowClient().get_registered_model(NAME).aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "1", "challenger": "2"}
    assert tracking.resolve_model(NAME) == (NAME, "1", "champion")
    assert tracking.resolve_model(f"models:/{NAME}@challenger") == (NAME, "2", "challenger")
    assert tracking.resolve_model(f"{NAME}/2") == (NAME, "2", None)


def test_a_later_version_is_not_made_champion_when_the_alias_was_removed(registry):
    log = {**registry["log"], "model_name": "orphan", "experiment": "orphans"}
    tracking.log_trained_model(**log)
    mlflow.MlflowClient().delete_registered_model_alias("orphan", "champion")  # by hand, or its version deleted
    with pytest.warns(UserWarning, match="'orphan' has no champion .* version 2 is its challenger, not made champion "
                                         "untested; set one with `maskae promote --model orphan --version N`"):
        second = tracking.log_trained_model(**log)
    assert second.aliases == ("challenger",)
    assert "champion" not in mlflow.MlflowClient().get_registered_model("orphan").aliases


def test_a_version_that_reads_columns_its_champion_does_not_is_warned_of(registry):
    log = {**registry["log"], "model_name": "columns", "experiment": "columns"}
    tracking.log_trained_model(**log, schema={"id_column": "id", "features": {"amount": "numeric"}})
    with pytest.warns(UserWarning, match=r"'columns' version 2 reads column\(s\) \['V1'\] that its champion, version 1, "
                                         r"does not: a batch exported for the champion lacks them"):
        tracking.log_trained_model(**log, schema={"id_column": "id", "features": {"amount": "numeric", "V1": "numeric"}})


def test_logging_a_budget_model_does_not_warn_about_its_five_row_example(registry):
    import warnings

    from maskae.calibration import SmallBatchWarning

    budget = Calibration.fit(registry["detector"].calibration_scores_, strategy="budget", level=0.02)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracking.log_trained_model(**{**registry["log"], "calibration": budget, "model_name": "budget",
                                      "experiment": "budgets"})
    assert not [w for w in caught if issubclass(w.category, SmallBatchWarning)]
    with pytest.warns(SmallBatchWarning):  # a caller's small batch still warns
        tracking.load_model("models:/budget@champion").predict(registry["frame"].head(5))


def test_a_request_finds_the_version_it_registered(registry):
    log = {**registry["log"], "model_name": "o'brien", "experiment": "requests"}  # a quote, which MLflow's search filter cannot escape
    info = tracking.log_trained_model(**log, request_id="task-run-1")
    assert tracking.registered_for("o'brien", "task-run-1") == info
    assert tracking.registered_for("o'brien", "task-run-2") is None
    assert tracking.registered_for(NAME, "task-run-1") is None


def test_run_holds_params_metrics_and_files(registry):
    run = mlflow.get_run(registry["first"].run_id)
    assert run.data.params["max_steps"] == "30" and run.data.metrics["train_seconds"] == 1.5
    assert [f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id, "config")] == ["config/config.toml"]


def test_champion_scores_like_the_detector(registry):
    path = list(sys.path)
    model = tracking.load_model(f"models:/{NAME}@champion")
    assert sys.path == path  # the model's copy of maskae is not put before the one this process uses
    batch = registry["frame"].iloc[50:90]
    out = model.predict(batch)
    assert list(out.columns) == ["anomaly_score", "p_value", "flagged"]
    assert model.metadata.get_input_schema().input_names() == list(batch.columns)
    assert (out.index == batch.index).all() and out["flagged"].dtype == bool
    np.testing.assert_allclose(out["anomaly_score"], registry["detector"].anomaly_score(batch), rtol=1e-6)
    assert ((out["p_value"] > 0) & (out["p_value"] <= 1)).all()


# Run with ``python -S``: without the site module the editable install of maskae (a .pth file in
# site-packages) is not on the path, as on a serving machine built from the model's requirements.
LOAD_ELSEWHERE = """
import importlib.util, json, sys
assert importlib.util.find_spec("maskae") is None, "maskae is importable: the check would prove nothing"
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
import maskae
batch = pd.read_json(sys.argv[2], orient="split")
batch = batch.astype({c: float for c in batch.select_dtypes("integer")})  # the signature's numbers are double
print(json.dumps({"maskae": maskae.__file__, "scores": model.predict(batch)["anomaly_score"].tolist()}))
"""


def test_a_logged_model_loads_where_maskae_is_not_installed(registry, tmp_path):
    """The model carries the maskae code it was trained with, and its requirements take torch's CPU build."""
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(tmp_path / "model")))
    requirements = (local / "requirements.txt").read_text().splitlines()
    assert tracking.TORCH_CPU_INDEX in requirements and any(line.startswith("torch==") for line in requirements)
    assert "+" not in " ".join(requirements)  # no local version such as +cpu: the index supplies the build
    batch = registry["frame"].iloc[:8]
    (tmp_path / "batch.json").write_text(batch.to_json(orient="split"))
    done = subprocess.run([sys.executable, "-S", "-c", LOAD_ELSEWHERE, str(local), str(tmp_path / "batch.json")],
                          env={**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["maskae"]).is_relative_to(local / "code")
    np.testing.assert_allclose(out["scores"], registry["detector"].anomaly_score(batch), rtol=1e-6)


def test_artifacts_stay_in_workdir_and_hold_no_pickle(registry):
    artifacts = registry["workdir"] / "mlartifacts"
    mlmodels = list((artifacts / "fraud").rglob("MLmodel"))
    assert len(mlmodels) == 2  # one logged model per version of the experiment, under <workdir>/mlartifacts
    assert all((m.parent / "artifacts" / "detector" / "weights.safetensors").is_file() for m in mlmodels)
    assert not [p for p in artifacts.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
    assert not (registry["workdir"] / "mlruns").exists()


def test_missing_model_or_alias_is_a_clear_error(registry):
    with pytest.raises(tracking.ModelNotFoundError, match=f"{NAME!r} has no alias 'retired'"):
        tracking.load_model(f"models:/{NAME}@retired")
    with pytest.raises(tracking.ModelNotFoundError, match=f"no registered model 'nope' at .* \\(registered: .*{NAME!r}"):
        tracking.resolve_model("nope")
    with pytest.raises(tracking.ModelNotFoundError, match=f"did you mean {NAME!r}"):
        tracking.resolve_model(NAME[:-1] + "@champion")  # one letter short
    with pytest.raises(tracking.ModelNotFoundError, match=r"has no version '9' \(versions: \['1', '2'\]\)"):
        tracking.move_alias(NAME, "champion", 9, {"decision": "promote"})


def test_a_sqlite_store_that_does_not_exist_is_not_created_to_say_the_model_is_missing(registry, tmp_path):
    store, previous = tmp_path / "typo" / "mlflow.db", mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    try:
        for find in (lambda: tracking.resolve_model(NAME), lambda: tracking.load_model(f"models:/{NAME}/1")):
            with pytest.raises(tracking.ModelNotFoundError, match=f"no model '.*{NAME}.*' here: no MLflow store at "
                                                                  f"{store}; run the command in the folder where"):
                find()
        assert not store.exists() and not store.parent.exists()
    finally:
        mlflow.set_tracking_uri(previous)


def test_a_relative_store_path_works_and_a_model_whose_files_were_deleted_is_named(registry, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri("sqlite:///relative.db")  # as MLFLOW_TRACKING_URI=sqlite:///relative.db gives it
    try:
        tracking.log_trained_model(**{**registry["log"], "model_name": "here", "experiment": "relative"})
        assert (tmp_path / "mlartifacts" / "relative").is_dir()  # beside the database, not in ./mlruns
        shutil.rmtree(tmp_path / "mlartifacts")
        with pytest.raises(tracking.ModelNotFoundError, match=r"models:/here/1 is registered, but its files are not "
                                                              r"in the artifact store .*mlartifacts/ in "):
            tracking.load_model("models:/here@champion")
        with pytest.raises(tracking.ModelNotFoundError, match="registered model 'here' has no version '9'"):
            tracking.load_model("models:/here/9")  # missing from the registry, not from the artifact store
    finally:
        mlflow.set_tracking_uri(previous)


def test_move_alias_records_the_decision(registry):
    # Runs last: it moves champion, which the other tests read.
    previous = tracking.move_alias(NAME, "champion", "2", {"decision": "promote", "auprc_gain": 0.03})
    version = mlflow.MlflowClient().get_model_version(NAME, "2")
    assert previous == "1" and set(version.aliases) == {"champion", "challenger"}
    assert version.tags["champion.previous"] == "1"
    assert '"decision": "promote"' in version.tags["champion.reason"]
