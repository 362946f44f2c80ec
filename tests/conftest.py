"""Shared fixtures: small tables with known structure, so tests are fast and can fail for real."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads its OpenMP runtime

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

FAST = dict(max_steps=300, hidden_size=64, latent_size=16, random_state=0)


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
