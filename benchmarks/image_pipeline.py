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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], workdir: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=workdir, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT.parent / "shared" / "datasets" / "images" / "mvtec_bottle"))
    parser.add_argument("--level", default="0.05")
    parser.add_argument("--seed", default="0")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(Path(workdir) / "prefect-home")}
        env.pop("MLFLOW_TRACKING_URI", None)
        train_s = _run(["train", "--data", str(root / "train" / "good"), "--model-name", "bottle",
                        "--level", args.level, "--seed", args.seed], workdir, env)
        screen_s = _run(["screen", "--data", str(root / "test"), "--model", "bottle", "--out", "screened"],
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
    path = ROOT / "benchmarks" / "results" / "image_pipeline"
    path.with_suffix(".json").write_text(json.dumps(result, indent=2))
    table = "| measure | value |\n|---|---:|\n" + "".join(f"| {k} | {v} |\n" for k, v in result.items())
    path.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
