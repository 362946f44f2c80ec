"""Tabular benchmark: maskae against IsolationForest, PyOD KNN, PyOD AutoEncoder and ECOD.

Protocols (DESIGN.md):
* one-class — per seed, shuffle the normal rows, train on half of them, test on the other half
  plus every anomaly;
* contaminated — stratified 70/30 split, training labels ignored.
Every detector sees the same splits; baselines get a StandardScaler fitted on the training rows,
maskae gets the raw training rows and scales them itself (also on the training rows only).

    python benchmarks/tabular.py                      # full run: 21 datasets x 3 seeds x 2 protocols
    python benchmarks/tabular.py --only cardio wbc --seeds 0 --detectors maskae iforest
    python benchmarks/tabular.py --detectors maskae-clean   # the settings for clean training data

Writes ``benchmarks/results/tabular.json`` (one record per dataset/seed/protocol/detector) and
``tabular.md`` (mean AUROC/AUPRC x100 per dataset, means, mean rank, seconds). Finished records
are reused when the same configuration is run again, so an interrupted run resumes.
"""

from __future__ import annotations

import time

from protocols import load_datasets, parse_arguments, RecordFile, split  # sets OMP_WAIT_POLICY first

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from maskae import MaskedAutoencoderDetector

BASELINES = ["iforest", "knn", "pyod-ae", "ecod"]
# The ablation reuses maskae's fit: each variant scores with a subset of its evidence terms.
ABLATIONS = {
    "maskae-reconstruction-only": ("reconstruction",),
    "maskae-neighbours-only": ("neighbours",),
    "maskae-nearest-only": ("nearest",),
    "maskae-tails-only": ("tails",),
    "maskae-without-reconstruction": ("neighbours", "nearest", "tails"),
    "maskae-without-nearest": ("reconstruction", "neighbours", "tails"),
}
# Other settings of maskae, each its own fit: the recipe for training data vetted to be clean
# (README): fine-grained neighbour samples, next to nothing left out as contamination.
CONFIGURATIONS = {
    "maskae-clean": dict(neighbour_sample_sizes=(256, 1024), contamination=0.01),
}
MAIN = ["maskae", *BASELINES]  # the main table and its ranks; variants get a table of their own


def make_detector(name: str, seed: int):
    """Returns (detector, wants_standardised_input, anomaly-score function)."""
    if name == "maskae" or name in CONFIGURATIONS:
        det = MaskedAutoencoderDetector(random_state=seed, **CONFIGURATIONS.get(name, {}))
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


def summary(frame: pd.DataFrame, detectors: list[str]) -> str:
    """One row per protocol and detector: mean AUROC / AUPRC x100, mean ranks, total seconds."""
    rows = []
    for protocol, part in frame.groupby("protocol", sort=False):
        means = part.groupby(["dataset", "detector"])[["auroc", "auprc", "fit_s", "score_s"]].mean()
        ranks = {m: means[m].unstack("detector")[detectors].rank(axis=1, ascending=False).mean() for m in ("auroc", "auprc")}
        for detector in detectors:
            own = means.xs(detector, level="detector")
            rows.append({"protocol": protocol, "detector": detector,
                         "AUROC": round(100 * own["auroc"].mean(), 1), "AUPRC": round(100 * own["auprc"].mean(), 1),
                         "rank AUROC": round(ranks["auroc"][detector], 2), "rank AUPRC": round(ranks["auprc"][detector], 2),
                         "fit s": round(own["fit_s"].sum(), 1), "score s": round(own["score_s"].sum(), 1)})
    return pd.DataFrame(rows).to_markdown(index=False)


def markdown(records: list[dict]) -> str:
    frame = pd.DataFrame(records)
    variants = frame[frame["detector"].isin(["maskae", *ABLATIONS, *CONFIGURATIONS])]
    detectors = [d for d in MAIN if d in set(frame["detector"])]
    frame = frame[frame["detector"].isin(detectors)]
    lines = ["### Summary: means over datasets of the per-dataset means over seeds", "", summary(frame, detectors), ""]
    for protocol, part in frame.groupby("protocol", sort=False):
        means = part.groupby(["dataset", "detector"])[["auroc", "auprc", "fit_s", "score_s"]].mean()
        lines += [f"### {protocol}", ""]
        for metric in ("auroc", "auprc"):
            values = means[metric].unstack("detector")[detectors] * 100
            table = values.round(1)  # the means and ranks are of the unrounded values, as in the summary
            table.loc["**mean**"] = values.mean().round(1)
            table.loc["**mean rank**"] = values.rank(axis=1, ascending=False).mean().round(2)
            lines += [f"**{metric.upper()} x100** (mean over seeds {sorted(int(x) for x in part['seed'].unique())})", ""]
            lines += [table.to_markdown(), ""]
        seconds = means[["fit_s", "score_s"]].groupby("detector").sum().loc[detectors].round(1)
        lines += ["**Seconds, summed over datasets (mean over seeds)**", "", seconds.T.to_markdown(), ""]
    if variants["detector"].nunique() > 1:
        lines += ["### Variants of maskae: ablations (same fits, a subset of the evidence) and other settings", "",
                  "Means x100 over datasets and seeds; the rank is the mean rank the variant would have in maskae's "
                  "place among the baselines of the main table.", "", variant_table(variants, frame), ""]
    return "\n".join(lines)


def variant_table(variants: pd.DataFrame, main: pd.DataFrame) -> str:
    """Per protocol and variant: mean AUROC / AUPRC x100, and the mean rank it would have in
    maskae's place among the baselines, over the datasets it ran on."""
    rows = []
    for (protocol, variant), part in variants.groupby(["protocol", "detector"]):
        baselines = main[(main["protocol"] == protocol) & main["detector"].isin(BASELINES)]
        means = pd.concat([part, baselines]).groupby(["dataset", "detector"])[["auroc", "auprc"]].mean()
        row = {"protocol": protocol, "variant": variant}
        for metric in ("auroc", "auprc"):
            table = means[metric].unstack("detector").dropna()  # datasets the variant ran on
            row[metric.upper()] = round(100 * table[variant].mean(), 1)
            row[f"rank {metric.upper()}"] = round(table.rank(axis=1, ascending=False)[variant].mean(), 2)
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def main() -> None:
    args = parse_arguments(__doc__, "tabular", lambda parser: parser.add_argument(
        "--detectors", nargs="*", default=MAIN, help=f"default {' '.join(MAIN)}; also: {' '.join(CONFIGURATIONS)}"))
    results = RecordFile(args.out)
    for name, (X, y) in load_datasets(args.only).items():
        for protocol in args.protocols:
            for seed in args.seeds:
                X_train, X_test, y_test = split(X, y, protocol, seed)
                for detector in args.detectors:
                    if results.has(dataset=name, protocol=protocol, seed=seed, detector=detector):
                        continue
                    new = []
                    for variant, result in run_one(detector, X_train, X_test, y_test, seed).items():
                        new.append(dict(dataset=name, protocol=protocol, seed=seed, detector=variant, **result))
                        print(f"{name:>18} {protocol:>12} seed {seed} {variant:>29}: "
                              f"AUROC {result['auroc']:.3f} AUPRC {result['auprc']:.3f} "
                              f"fit {result['fit_s']:.1f}s score {result['score_s']:.2f}s", flush=True)
                    results.add(new)
    results.write_markdown(markdown(results.records))


if __name__ == "__main__":
    main()
