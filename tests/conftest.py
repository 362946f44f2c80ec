"""Shared fixtures: small tables with known structure, so tests are fast and can fail for real."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads its OpenMP runtime

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

# 600 steps: training spends its second half without the contamination share, so each half needs
# the 300 steps in which this table's relationships are learnt well enough for `explain` to name them.
FAST = dict(max_steps=600, hidden_size=64, latent_size=16, random_state=0)


def card_like(n: int, seed: int) -> pd.DataFrame:
    """Card-like rows: the amount depends on the merchant category, country on the channel."""
    rng = np.random.default_rng(seed)
    category = rng.choice(["grocery", "fuel", "travel"], size=n)
    typical = {"grocery": 40.0, "fuel": 60.0, "travel": 900.0}
    amount = np.array([typical[c] for c in category]) * rng.lognormal(0, 0.2, size=n)
    channel = rng.choice(["pos", "online"], size=n, p=[0.7, 0.3])
    country = np.where(channel == "pos", "GB", rng.choice(["GB", "FR"], size=n))
    hour = rng.normal(14, 3, size=n).round()
    return pd.DataFrame({
        "amount": amount, "hour": hour, "category": category, "channel": channel,
        "country": country, "card_present": channel == "pos",
    })


@pytest.fixture(scope="session")
def mixed_frame() -> pd.DataFrame:
    return card_like(600, seed=0)


@pytest.fixture(scope="session")
def fitted(mixed_frame):
    from maskae import MaskedAutoencoderDetector

    return MaskedAutoencoderDetector(**FAST).fit(mixed_frame)


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect API for the whole session (starting one costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


@pytest.fixture(autouse=True)
def prefect_logs_follow_capture():
    """Prefect's console log handler keeps the ``sys.stderr`` it first saw; pytest swaps that
    object per test and closes the old one. Point the handlers at the current stream."""
    import logging
    import sys

    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import PrefectConsoleHandler

        loggers = [logging.getLogger()] + [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]
        for handler in {h for logger in loggers for h in getattr(logger, "handlers", [])}:
            if isinstance(handler, PrefectConsoleHandler):
                handler.stream = sys.stderr  # not setStream(): it flushes the closed one
                handler.console.file = sys.stderr
    yield


@pytest.fixture(autouse=True)
def mlflow_tracking_is_per_test():
    """``mlflow.set_tracking_uri`` is process-wide and also sets ``MLFLOW_TRACKING_URI``: undo it
    after each test, so no test logs into another test's store."""
    import sys

    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)  # forgets the global and unsets the variable
    if before is not None:
        os.environ["MLFLOW_TRACKING_URI"] = before


SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"


@pytest.fixture(scope="session")
def screening_run(tmp_path_factory):
    """A real screening run for the report and review tests: model ``fraud`` v1 trained for 30 steps on
    two days of generated card transactions (an MLflow store of its own), then a third day screened
    into ``root/runs/day``. Flagged rows carry a ``<script>`` and an ``<img onerror>`` merchant name,
    a quarantined row another; ``batch`` holds the screened rows with their ``is_fraud`` truth.
    Tests that use MLflow take :func:`screened`, which points the tracking URI at the store."""
    from data.transactions import generate_transactions
    from pipeline.config import PipelineConfig
    from pipeline.screen import screen
    from pipeline.train import train

    root = tmp_path_factory.mktemp("screening-run")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    generate_transactions(n_customers=300, days=2, fraud_rate=0.03, seed=0).to_csv(root / "train.csv", index=False)
    batch = generate_transactions(n_customers=300, days=2, fraud_rate=0.03, seed=1).astype({"amount": object})
    batch.loc[50, ["merchant", "amount"]] = [SCRIPT, 1_000_000.0]
    batch.loc[60, ["merchant", "amount"]] = [IMG, 2_000_000.0]
    batch.loc[70, ["merchant", "amount"]] = [IMG, "twelve"]  # quarantined: not a number
    batch.to_csv(root / "batch.csv", index=False)
    features = ["amount", "merchant_category", "country", "channel", "card_present", "hour", "home_country",
                "customer_typical_amount"]
    config = PipelineConfig.model_validate({
        "data": {"path": str(root / "train.csv"), "id_column": "transaction_id", "label_column": "is_fraud",
                 "columns": features},
        "model": {"max_steps": 30, "random_state": 0}, "mlflow": {"model_name": "fraud"},
        "calibration": {"strategy": "fpr", "level": 0.05}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        train(config)
        run = screen(root / "batch.csv", "fraud", root / "runs" / "day")
    return {"root": root, "tracking_uri": uri, "run": run.out_dir, "batch": batch, "config": config}


@pytest.fixture
def screened(screening_run, monkeypatch):
    """:func:`screening_run`, with MLflow pointed at its store for this test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", screening_run["tracking_uri"])
    return screening_run
