"""``maskae demo``: the whole pipeline on generated card transactions, on the embedded defaults.

Generates a week of transactions (``data/transactions.py``), trains on the first six days through
the training flow (confirmed fraud set aside by the label column, as a bank would), registers the
model in MLflow, screens the seventh day through the screening flow, and prints the most anomalous
transactions with their reasons and where the outputs are.

Example
-------
>>> # python -m flows.cli demo --customers 500
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from data.transactions import generate_transactions
from flows.screening import screen_flow
from flows.training import train_flow
from pipeline.screening_output import read_output_csv

MODEL_NAME = "card-fraud-demo"
FEATURES = ["amount", "merchant_category", "country", "channel", "card_present", "hour",
            "home_country", "customer_typical_amount"]


def run_demo(out: Path, n_customers: int = 3000, top: int = 10, seed: int = 0) -> dict:
    """Returns the screening summary; prints the top flagged records and the output locations."""
    week = generate_transactions(n_customers=n_customers, days=7, fraud_rate=0.005, seed=seed)
    out.mkdir(parents=True, exist_ok=True)  # after the arguments are known to be good: no empty folder
    day = week["timestamp"].dt.normalize()
    history, today = out / "history.csv", out / "today.csv"
    week[day < day.max()].to_csv(history, index=False)
    week[day == day.max()].to_csv(today, index=False)
    print(f"generated {len(week):,} transactions: {history} (6 days) and {today} (the day to screen)")

    config = {
        "data": {"path": str(history), "id_column": "transaction_id", "label_column": "is_fraud",
                 "columns": FEATURES},
        "model": {"random_state": seed},
        "calibration": {"strategy": "fpr", "level": 0.01},
        "mlflow": {"model_name": MODEL_NAME},
    }
    workdir = str(Path.cwd())
    train_flow(config, workdir=workdir)
    screening = screen_flow(str(today), f"{MODEL_NAME}@champion", str(out / "screening" / "today"),
                            workdir=workdir)
    summary, folder = screening["summary"], Path(screening["out_dir"])

    # flagged.csv keeps every column of the input, the generator's fraud labels included
    flagged = read_output_csv(folder / "flagged.csv").fillna({"fraud_pattern": ""})
    frauds_today = int(pd.read_csv(today, usecols=["is_fraud"])["is_fraud"].sum())
    print(f"\n{summary['rows_flagged']} of {summary['rows_in']:,} transactions flagged "
          f"(strategy {summary['calibration']['strategy']} at {summary['calibration']['level']}); "
          f"the {min(top, len(flagged))} most anomalous:\n")
    for i, row in enumerate(flagged.head(top).itertuples(), start=1):
        label = row.fraud_pattern or "legitimate"
        print(f"{i:>3}. {row.transaction_id}  score {row.anomaly_score:6.2f}  {row.amount:>10,.2f} "
              f"{row.merchant_category:<14} {row.country} {row.channel:<6} [{label}]\n       {row.reasons}")
    caught = int((flagged["fraud_pattern"] != "").sum())
    print(f"\n{caught} of the {len(flagged)} flagged are fraud; the day held {frauds_today}.")
    print(f"\nflagged records: {folder / 'flagged.csv'}\nreport:          {folder / 'report.html'}\n"
          f"summary:         {folder / 'summary.json'}\n"
          f"MLflow UI:       mlflow ui --backend-store-uri sqlite:///{Path(workdir) / 'mlflow.db'}")
    return json.loads((folder / "summary.json").read_text())
