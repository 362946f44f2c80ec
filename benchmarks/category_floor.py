"""Category error floor: what it changes in the demo's transactions, detection and reasons.

A category column that the others all but decide (``card_present`` given ``channel``) is rebuilt
in training with near-zero error; dividing its errors by that let a wobble of its prediction on an
unusual row lead the reasons (``maskae.detector.CATEGORY_ERROR_FLOOR``). For seeds 0-2, the
generated week of ``maskae demo`` (3,000 customers) is fitted on its first six days without the
labelled fraud, with the floor and without it (the numeric floor for every column, as before),
in the same process; the seventh day is scored. Measured: AUROC and AUPRC of the score for fraud,
the frauds among the 100 highest scores, and how many of those 100 records' reasons lead with
``card_present``.

    python benchmarks/category_floor.py     # writes benchmarks/results/category_floor.{json,md}
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

import maskae.detector
from data.transactions import generate_transactions
from flows.demo import FEATURES
from maskae import MaskedAutoencoderDetector

ROOT = Path(__file__).resolve().parents[1]
TOP = 100


def measure(seed: int) -> dict:
    week = generate_transactions(n_customers=3000, days=7, fraud_rate=0.005, seed=seed)
    day = week["timestamp"].dt.normalize()
    history = week[(day < day.max()) & (week["is_fraud"] == 0)]
    today = week[day == day.max()].reset_index(drop=True)
    detector = MaskedAutoencoderDetector(random_state=seed).fit(history[FEATURES])
    scores = detector.anomaly_score(today[FEATURES])
    fraud = today["is_fraud"].to_numpy()
    top = today.iloc[(-scores).argsort()[:TOP]]
    leading = detector.explain(top[FEATURES], top_k=1)["feature"]
    return {"seed": seed, "auroc": roc_auc_score(fraud, scores), "auprc": average_precision_score(fraud, scores),
            f"fraud_in_top_{TOP}": int(top["is_fraud"].sum()), "fraud_that_day": int(fraud.sum()),
            "led_by_card_present": int((leading == "card_present").sum())}


def main() -> None:
    torch.set_num_threads(2)
    floor = maskae.detector.CATEGORY_ERROR_FLOOR
    records = []
    try:
        for variant, value in (("category floor (default)", floor),
                               ("no category floor", maskae.detector.ERROR_SCALE_FLOOR)):
            maskae.detector.CATEGORY_ERROR_FLOOR = value
            records += [{"variant": variant, **measure(seed)} for seed in (0, 1, 2)]
            print(records[-3:], flush=True)
    finally:
        maskae.detector.CATEGORY_ERROR_FLOOR = floor
    table = pd.DataFrame(records)
    means = table.drop(columns="seed").groupby("variant", sort=False).mean().round(4).reset_index()
    path = ROOT / "benchmarks" / "results" / "category_floor"
    path.with_suffix(".json").write_text(json.dumps({"records": records, "means": means.to_dict("records")}, indent=2))
    markdown = (f"Seeds 0-2; the seventh day of the demo's generated week, top {TOP} scores.\n\n"
                + table.round(4).to_markdown(index=False) + "\n\n**Means**\n\n" + means.to_markdown(index=False) + "\n")
    path.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
