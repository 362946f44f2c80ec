"""Tabular benchmark: maskae against IsolationForest, PyOD KNN, PyOD AutoEncoder and ECOD.

Protocols (DESIGN.md):
* one-class — per seed, shuffle the normal rows, train on half of them, test on the other half
  plus every anomaly;
* contaminated — stratified 70/30 split, training labels ignored.
Every detector sees the same splits; baselines get a StandardScaler fitted on the training rows,
maskae gets the raw training rows and scales them itself (also on the training rows only).

    python benchmarks/tabular.py                      # full run: 21 datasets x 3 seeds x 2 protocols
    python benchmarks/tabular.py --only cardio wbc --seeds 0 --detectors maskae iforest

Writes ``benchmarks/results/tabular.json`` (one record per dataset/seed/protocol/detector) and
``tabular.md`` (mean AUROC/AUPRC x100 per dataset, means, mean rank, seconds). Finished records
are reused when the same configuration is run again, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from maskae import MaskedAutoencoderDetector  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("MASKAE_DATASETS", ROOT.parent / "shared" / "datasets"))

BASELINES = ["iforest", "knn", "pyod-ae", "ecod"]
# The ablation reuses maskae's fit: each variant scores with a subset of its evidence terms.
ABLATIONS = {
    "maskae-reconstruction-only": ("reconstruction",),
    "maskae-neighbours-only": ("neighbours",),
    "maskae-tails-only": ("tails",),
    "maskae-without-reconstruction": ("neighbours", "tails"),
}


def load_datasets(only: list[str] | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    sets = {}
    for path in sorted((DATASETS / "adbench").glob("*.npz"), key=lambda p: int(p.stem.split("_")[0])):
        name = path.stem.split("_", 1)[1].lower()
        if only and name not in only:
            continue
        data = np.load(path, allow_pickle=True)
        sets[name] = (data["X"].astype(np.float64), data["y"].astype(int))
    card = DATASETS / "creditcard" / "creditcard_sample.csv"
    if card.exists() and (not only or "creditcard" in only):
        frame = pd.read_csv(card)
        sets["creditcard"] = (frame.drop(columns="Class").to_numpy(np.float64), frame["Class"].to_numpy(int))
    return sets


def split(X: np.ndarray, y: np.ndarray, protocol: str, seed: int):
    if protocol == "one-class":
        rng = np.random.default_rng(seed)
        normal = rng.permutation(np.flatnonzero(y == 0))
        half = len(normal) // 2
        test = np.concatenate([normal[half:], np.flatnonzero(y == 1)])
        return X[normal[:half]], X[test], y[test]
    X_train, X_test, _, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    return X_train, X_test, y_test


def make_detector(name: str, seed: int):
    """Returns (detector, wants_standardised_input, anomaly-score function)."""
    if name == "maskae":
        det = MaskedAutoencoderDetector(random_state=seed)
        return det, False, det.anomaly_score
    if name == "iforest":
        det = IsolationForest(random_state=seed)
        return det, True, lambda X: -det.score_samples(X)
    if name == "knn":
        from pyod.models.knn import KNN

        det = KNN()
        return det, True, det.decision_function
    if name == "ecod":
        from pyod.models.ecod import ECOD

        det = ECOD()
        return det, True, det.decision_function
    if name == "pyod-ae":
        from pyod.models.auto_encoder import AutoEncoder

        det = AutoEncoder(random_state=seed, verbose=0, device="cpu")
        return det, True, det.decision_function
    raise ValueError(f"unknown detector {name!r}")


def evaluate(y_test, score, X_test, fit_s: float) -> dict:
    start = time.perf_counter()
    scores = np.asarray(score(X_test), dtype=float)
    score_s = time.perf_counter() - start
    return {
        "auroc": float(roc_auc_score(y_test, scores)),
        "auprc": float(average_precision_score(y_test, scores)),
        "fit_s": fit_s,
        "score_s": score_s,
    }


def run_one(name: str, X_train, X_test, y_test, seed: int) -> dict[str, dict]:
    """Results by detector name: ``name`` itself, plus maskae's ablation variants."""
    det, standardise, score = make_detector(name, seed)
    if standardise:
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    start = time.perf_counter()
    det.fit(X_train)
    fit_s = time.perf_counter() - start
    results = {name: evaluate(y_test, score, X_test, fit_s)}
    if name == "maskae":
        for variant, evidence in ABLATIONS.items():
            results[variant] = evaluate(y_test, det.set_params(evidence=evidence).anomaly_score, X_test, fit_s)
    return results


def markdown(records: list[dict], detectors: list[str]) -> str:
    frame = pd.DataFrame(records)
    ablation = frame[frame["detector"].isin(["maskae", *ABLATIONS])]
    frame = frame[frame["detector"].isin(detectors)]
    lines = []
    for protocol, part in frame.groupby("protocol", sort=False):
        means = part.groupby(["dataset", "detector"])[["auroc", "auprc", "fit_s", "score_s"]].mean()
        lines += [f"### {protocol}", ""]
        for metric in ("auroc", "auprc"):
            table = (means[metric].unstack("detector")[detectors] * 100).round(1)
            ranks = table.rank(axis=1, ascending=False).mean()
            table.loc["**mean**"] = table.mean().round(1)
            table.loc["**mean rank**"] = ranks.round(2)
            lines += [f"**{metric.upper()} x100** (mean over seeds {sorted(int(x) for x in part['seed'].unique())})", ""]
            lines += [table.to_markdown(), ""]
        seconds = means[["fit_s", "score_s"]].groupby("detector").sum().loc[detectors].round(1)
        lines += ["**Seconds, summed over datasets (mean over seeds)**", "", seconds.T.to_markdown(), ""]
    if ablation["detector"].nunique() > 1:
        table = ablation.groupby(["protocol", "detector"])[["auroc", "auprc"]].mean().unstack("protocol") * 100
        table.columns = [f"{protocol} {metric.upper()}" for metric, protocol in table.columns]
        lines += ["### Ablation: which evidence matters (mean x100 over datasets and seeds)", "",
                  table.round(1).to_markdown(), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="dataset names (e.g. cardio creditcard); default all")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="*", default=["one-class", "contaminated"])
    parser.add_argument("--detectors", nargs="*", default=["maskae", *BASELINES])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tabular"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    records = json.loads(json_path.read_text())["records"] if json_path.exists() else []
    done = {(r["dataset"], r["protocol"], r["seed"], r["detector"]) for r in records}
    datasets = load_datasets(args.only)
    if not datasets:
        sys.exit(f"no datasets found under {DATASETS} (set MASKAE_DATASETS)")
    for name, (X, y) in datasets.items():
        for protocol in args.protocols:
            for seed in args.seeds:
                X_train, X_test, y_test = split(X, y, protocol, seed)
                for detector in args.detectors:
                    if (name, protocol, seed, detector) in done:
                        continue
                    for variant, result in run_one(detector, X_train, X_test, y_test, seed).items():
                        records.append(dict(dataset=name, protocol=protocol, seed=seed, detector=variant, **result))
                        print(f"{name:>18} {protocol:>12} seed {seed} {variant:>28}: "
                              f"AUROC {result['auroc']:.3f} AUPRC {result['auprc']:.3f} "
                              f"fit {result['fit_s']:.1f}s score {result['score_s']:.2f}s", flush=True)
                    tmp = json_path.with_suffix(".tmp")
                    tmp.write_text(json.dumps({"records": records}, indent=1))
                    tmp.replace(json_path)
    out.with_suffix(".md").write_text(markdown(records, args.detectors))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
