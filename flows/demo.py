"""``maskae demo``: fraud screening end to end on generated card transactions.

Generates a week of transactions, trains on the first six days (confirmed fraud left out, as a
bank would), screens the seventh, and prints the most anomalous transactions with the features
that made them stand out. It needs nothing but the installed package.

Example
-------
>>> # python -m flows.cli demo --customers 500
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from data.transactions import generate_transactions
from maskae import MaskedAutoencoderDetector

FEATURES = ["amount", "merchant_category", "country", "channel", "card_present", "hour",
            "home_country", "customer_typical_amount"]


def run_demo(n_customers: int = 3000, top: int = 10, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Train on six days, screen day seven; returns the screened day with scores, most anomalous first."""
    week = generate_transactions(n_customers=n_customers, days=7, fraud_rate=0.005, seed=seed)
    last_day = week["timestamp"].dt.normalize() == week["timestamp"].dt.normalize().max()
    history, today = week[~last_day], week[last_day].reset_index(drop=True)
    train = history[history["is_fraud"] == 0]
    print(f"training on {len(train):,} transactions from {history['timestamp'].min():%Y-%m-%d} "
          f"to {history['timestamp'].max():%Y-%m-%d} ({len(history) - len(train)} confirmed frauds left out)")
    detector = MaskedAutoencoderDetector(random_state=seed, progress=progress).fit(train[FEATURES])

    today["anomaly_score"] = detector.anomaly_score(today[FEATURES])
    today = today.sort_values("anomaly_score", ascending=False).reset_index(drop=True)
    print(f"\nscreened {len(today):,} transactions of {today['timestamp'].max():%Y-%m-%d}; "
          f"the {top} most anomalous, with the features that made them stand out:\n")
    reasons = detector.explain(today.head(top)[FEATURES], top_k=2)
    for i, row in today.head(top).iterrows():
        why = "; ".join(
            f"{r.feature} {_fmt(r.observed)} where ~{_fmt(r.expected)} was expected ({r.share:.0%})"
            for r in reasons[reasons["row"] == i].itertuples()
        )
        label = row["fraud_pattern"] or "legitimate"
        print(f"{i + 1:>3}. {row['transaction_id']}  score {row['anomaly_score']:6.2f}  "
              f"{row['amount']:>9,.2f} {row['merchant_category']:<14} {row['country']} {row['channel']:<6} "
              f"[{label}]\n       {why}")
    y, s = today["is_fraud"].to_numpy(), today["anomaly_score"].to_numpy()
    hits = int(y[:top].sum())
    print(f"\nday 7 holds {int(y.sum())} frauds: AUROC {roc_auc_score(y, s):.3f}, "
          f"AUPRC {average_precision_score(y, s):.3f}, {hits} of the top {top} are fraud")
    return today


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:,.2f}"
    return str(value)
