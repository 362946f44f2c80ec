"""MVTec bottle through the pipeline: ``maskae train`` on ``train/good``, ``maskae screen`` on ``test/``.

The commands a user runs, at their defaults but for the seed (0) and the level (the fpr rule at 0.05: bottle's 42
calibration images are too few for 0.01), in a fresh temporary working folder. Reports what an
inspector gets: AUROC / AUPRC of the screening's scores (every kind but ``good`` is a defect), the
images flagged per kind, and the seconds of each command (Prefect's temporary API included).

    python benchmarks/image_pipeline.py [--root ../shared/datasets/images/mvtec_bottle] [--level 0.05]
    # writes benchmarks/results/image_pipeline.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from cli_runs import ROOT, fresh_workdir, run_maskae, write_measures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT.parent / "shared" / "datasets" / "images" / "mvtec_bottle"))
    parser.add_argument("--level", default="0.05")
    parser.add_argument("--seed", default="0")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    with fresh_workdir() as (workdir, env):
        train_s = run_maskae(["train", "--data", str(root / "train" / "good"), "--model-name", "bottle",
                              "--level", args.level, "--seed", args.seed], workdir, env)
        screen_s = run_maskae(["screen", "--data", str(root / "test"), "--model", "bottle", "--out", "screened"],
                              workdir, env)
        out = Path(workdir) / "screened"
        scores = pd.read_parquet(out / "scores.parquet")
        summary = json.loads((out / "summary.json").read_text())
        first = pd.read_csv(out / "flagged.csv", nrows=1)
    kind = scores["path"].str.split("/").str[0]
    defect = (kind != "good").to_numpy()
    flagged = scores.groupby(kind)["flagged"].agg(["sum", "count"])
    result = {
        "dataset": root.name, "level": float(args.level), "seed": int(args.seed),
        "images_screened": summary["rows_scored"], "images_quarantined": summary["rows_quarantined"],
        "auroc": round(100 * roc_auc_score(defect, scores["anomaly_score"]), 1),
        "auprc": round(100 * average_precision_score(defect, scores["anomaly_score"]), 1),
        **{f"flagged_{k}": f"{int(r['sum'])} of {int(r['count'])}" for k, r in flagged.iterrows()},
        "threshold": round(summary["calibration"]["threshold"], 3),
        "most_anomalous": first["path"].iloc[0], "its_reasons": first["reasons"].iloc[0],
        "train_s": train_s, "screen_s": screen_s, "cpus": os.cpu_count(),
    }
    write_measures("image_pipeline", result)


if __name__ == "__main__":
    main()
