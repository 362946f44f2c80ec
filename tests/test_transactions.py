import doctest

import numpy as np
import pandas as pd
import pytest

import data.transactions as transactions
from data.transactions import generate_transactions

COLUMNS = ["transaction_id", "customer_id", "timestamp", "amount", "merchant", "merchant_category",
           "country", "channel", "card_present", "hour", "home_country", "customer_typical_amount",
           "is_fraud", "fraud_pattern"]
PATTERNS = ["card_testing", "account_takeover", "skimming", "unusual_category_spike"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """~20k rows with 2% fraud: about 400 fraud rows, so every pattern shows up many times."""
    return generate_transactions(n_customers=1500, days=7, fraud_rate=0.02, seed=3)


def test_columns_and_dtypes(frame):
    assert list(frame.columns) == COLUMNS
    for col in ["transaction_id", "customer_id", "merchant", "merchant_category", "country", "channel",
                "home_country", "fraud_pattern"]:
        assert pd.api.types.is_string_dtype(frame[col]), col
    assert pd.api.types.is_datetime64_dtype(frame["timestamp"])
    assert frame["amount"].dtype == np.float64 and frame["customer_typical_amount"].dtype == np.float64
    assert frame["card_present"].dtype == bool
    assert frame["hour"].dtype == np.int64 and frame["is_fraud"].dtype == np.int64
    assert set(frame["is_fraud"]) == {0, 1}


def test_deterministic_per_seed():
    a = generate_transactions(n_customers=300, days=3, fraud_rate=0.02, seed=7)
    pd.testing.assert_frame_equal(a, generate_transactions(n_customers=300, days=3, fraud_rate=0.02, seed=7))
    b = generate_transactions(n_customers=300, days=3, fraud_rate=0.02, seed=8)
    assert len(a) != len(b) or not a.equals(b)


@pytest.mark.parametrize("rate", [0.005, 0.02, 0.1])
def test_fraud_rate_matches_request(rate):
    # The fraud row count is round(rate * n_legit / (1 - rate)), split into per-pattern budgets
    # that add up exactly, so the only error is rounding to a whole row: at most half a row.
    df = generate_transactions(n_customers=1000, days=5, fraud_rate=rate, seed=1)
    assert abs(df["is_fraud"].mean() - rate) <= 1 / len(df)
    assert (df["fraud_pattern"] != "").equals(df["is_fraud"] == 1)


def test_no_fraud_when_rate_is_zero():
    df = generate_transactions(n_customers=100, days=2, fraud_rate=0.0)
    assert df["is_fraud"].sum() == 0 and (df["fraud_pattern"] == "").all()


def test_every_pattern_appears_and_looks_like_itself(frame):
    counts = frame["fraud_pattern"].value_counts()
    assert all(counts.get(p, 0) >= 20 for p in PATTERNS), counts
    legit = frame[frame["is_fraud"] == 0]
    legit_countries = set(zip(legit["customer_id"], legit["country"]))
    legit_categories = set(zip(legit["customer_id"], legit["merchant_category"]))

    ct = frame[frame["fraud_pattern"] == "card_testing"]
    assert (ct["channel"] == "online").all() and ct["amount"].between(0.5, 3.0).all()
    ato = frame[frame["fraud_pattern"] == "account_takeover"]
    assert (ato["channel"] == "online").all() and ato["merchant_category"].isin(["travel", "electronics"]).all()
    assert (ato["country"] != ato["home_country"]).all() and (ato["hour"] < 6).all()
    sk = frame[frame["fraud_pattern"] == "skimming"]
    assert (sk["channel"] == "atm").all() and sk["card_present"].all()
    assert not any(pair in legit_countries for pair in zip(sk["customer_id"], sk["country"]))
    assert (sk["country"] != sk["home_country"]).all()
    spike = frame[frame["fraud_pattern"] == "unusual_category_spike"]
    assert not any(pair in legit_categories for pair in zip(spike["customer_id"], spike["merchant_category"]))
    assert (spike["amount"] > 5 * spike["customer_typical_amount"]).all()


def test_time_hour_channel_and_ids_are_consistent(frame):
    assert frame["timestamp"].is_monotonic_increasing
    assert frame["timestamp"].min() >= pd.Timestamp("2026-01-01")
    assert frame["timestamp"].max() < pd.Timestamp("2026-01-08")
    assert (frame["hour"] == frame["timestamp"].dt.hour).all() and frame["hour"].between(0, 23).all()
    assert set(frame["channel"]) == {"pos", "online", "atm"}
    assert (frame["card_present"] == (frame["channel"] != "online")).all()
    assert ((frame["channel"] == "atm") == (frame["merchant_category"] == "atm")).all()
    assert frame["transaction_id"].is_unique and frame["transaction_id"].str.fullmatch(r"tx\d{9}").all()


def test_amounts_positive_with_two_decimals(frame):
    assert (frame["amount"] > 0).all() and (frame["customer_typical_amount"] > 0).all()
    cents = frame["amount"] * 100
    np.testing.assert_allclose(cents, cents.round(), atol=1e-6)


def test_no_single_column_is_a_fraud_flag(frame):
    legit, fraud = frame[frame["is_fraud"] == 0], frame[frame["is_fraud"] == 1]
    # Trips and foreign web shops: country != home_country flags more legit rows than fraud rows.
    foreign = frame["country"] != frame["home_country"]
    assert (foreign & (frame["is_fraud"] == 0)).sum() > (foreign & (frame["is_fraud"] == 1)).sum()
    assert ((legit["country"] != legit["home_country"]) & (legit["channel"] == "atm")).any()
    assert (legit["hour"] < 6).any()  # night owls
    assert (legit["amount"] <= 3.0).any()  # app-store prices look like card testing
    ratio = legit["amount"] / legit["customer_typical_amount"]
    assert (ratio > 12).any()  # legitimate big-ticket purchases
    assert (fraud["country"] == fraud["home_country"]).any()


def test_account_takeover_amounts_dwarf_the_customer_profile(frame):
    ratio = frame["amount"] / frame["customer_typical_amount"]
    ato_mean = ratio[frame["fraud_pattern"] == "account_takeover"].mean()
    assert ato_mean > 10 and ato_mean > 5 * ratio[frame["is_fraud"] == 0].mean()


def test_docstring_example_runs():
    assert doctest.testmod(transactions).failed == 0


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        generate_transactions(fraud_rate=1.0)
    with pytest.raises(ValueError):
        generate_transactions(n_customers=0)
