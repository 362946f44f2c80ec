"""Calibration benchmark: do maskae's calibrated thresholds keep their stated error rates on real data?

For every dataset, protocol and seed (the splits of ``benchmarks/tabular.py``), maskae is fitted
with ``calibration_fraction=0.2``: a fifth of the training rows is held out, never trained on, and
scored as the calibration set. The test rows are then flagged by

* ``fpr`` at alpha in {0.001, 0.01, 0.05} — claim: realised false-positive rate on the test normals <= alpha;
* ``fdr`` (Benjamini–Hochberg on conformal p-values) at q in {0.05, 0.1, 0.2} — claim: share of
  normal records among the flagged (FDR) <= q in each batch; we also report recall. BH can flag a
  lone record only when its smallest possible p-value 1 / (n_cal + 1) is <= q / m, so the test rows
  are screened in random batches of m = floor(q * (n_cal + 1)) — the largest batch this calibration
  set supports — and the realised FDR is the mean false-discovery proportion over the batches;
* the anchor, PyOD's contamination rule — the (1 - c) quantile of the detector's own training scores
  (``training_scores_``) with c = the dataset's overall anomaly rate: no stated guarantee.

one-class: the calibration rows are clean normals, exchangeable with the test normals, so the claims
should hold (up to sampling noise). contaminated: the training rows, hence the calibration rows, hold
unlabelled anomalies; this is the robustness check (extra high calibration scores make thresholds
conservative, so FPR should stay <= alpha, at some cost in recall).

    python benchmarks/calibration.py                       # 21 datasets x 3 seeds x 2 protocols
    python benchmarks/calibration.py --only wbc glass --seeds 0

Writes ``benchmarks/results/calibration.json`` (one record per dataset/protocol/seed/rule/level,
resumable like tabular.py) and ``calibration.md``.
"""

from __future__ import annotations

import time
import warnings

from protocols import load_datasets, parse_arguments, RecordFile, split  # sets OMP_WAIT_POLICY first

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from maskae import MaskedAutoencoderDetector
from maskae.calibration import Calibration

ALPHAS = (0.001, 0.01, 0.05)
QS = (0.05, 0.1, 0.2)


def realised(flagged: np.ndarray, y_test: np.ndarray) -> dict:
    """Realised error rates of one set of flags: FPR on the normals, FDR (FDP), recall."""
    false = int((flagged & (y_test == 0)).sum())
    return {
        "fpr": false / max(int((y_test == 0).sum()), 1),
        "fdr": false / max(int(flagged.sum()), 1),  # no flags: no false discoveries
        "recall": float(flagged[y_test == 1].mean()) if (y_test == 1).any() else float("nan"),
        "n_flagged": int(flagged.sum()),
    }


def batched_fdr_flags(calibration: Calibration, scores: np.ndarray, y_test: np.ndarray, rng) -> tuple[np.ndarray, float, int]:
    """BH flags over random batches of the largest size the calibration set supports;
    returns (flags, mean false-discovery proportion over batches, batch size)."""
    size = max(1, int(calibration.level * (len(calibration.calibration_scores) + 1)))
    order = rng.permutation(len(scores))
    flagged, proportions = np.zeros(len(scores), dtype=bool), []
    for start in range(0, len(scores), size):
        batch = order[start : start + size]
        flagged[batch] = calibration.apply(scores[batch]).flagged
        proportions.append(realised(flagged[batch], y_test[batch])["fdr"])
    return flagged, float(np.mean(proportions)), size


def run_one(X_train, X_test, y_test, anomaly_rate: float, seed: int) -> list[dict]:
    """One fit, every rule: a list of records (rule, level, realised rates, warned)."""
    start = time.perf_counter()
    det = MaskedAutoencoderDetector(random_state=seed, calibration_fraction=0.2).fit(X_train)
    fit_s = time.perf_counter() - start
    scores = det.anomaly_score(X_test)
    common = {"n_train": len(X_train), "n_cal": len(det.calibration_scores_), "n_test": len(X_test),
              "n_test_anomalies": int(y_test.sum()), "auroc": float(roc_auc_score(y_test, scores)), "fit_s": fit_s}
    records = []
    for alpha in ALPHAS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = Calibration.fit(det.calibration_scores_, "fpr", alpha).apply(scores)
        warned = any("too small" in str(w.message) for w in caught)
        records.append({"rule": "fpr", "level": alpha, **realised(result.flagged, y_test),
                        "threshold": result.threshold, "warned": warned, "batch_size": len(scores), **common})
    for q in QS:
        calibration = Calibration.fit(det.calibration_scores_, "fdr", q)
        flagged, fdr, size = batched_fdr_flags(calibration, scores, y_test, np.random.default_rng(seed))
        records.append({"rule": "fdr", "level": q, **realised(flagged, y_test), "fdr": fdr,
                        "threshold": float("nan"), "warned": False, "batch_size": size, **common})
    threshold = float(np.quantile(det.training_scores_, 1 - anomaly_rate))
    records.append({"rule": "anchor", "level": anomaly_rate, **realised(scores > threshold, y_test),
                    "threshold": threshold, "warned": False, "batch_size": len(scores), **common})
    return records


def jsonable(record: dict) -> dict:
    """Infinite thresholds (nothing flagged) as the strings "inf"/"-inf": strict JSON has no Infinity."""
    threshold = float(record["threshold"])
    return {**record, "threshold": threshold if np.isfinite(threshold) else str(threshold)}  # "nan" for batched BH


def markdown(records: list[dict]) -> str:
    frame = pd.DataFrame(records)
    frame["fpr_ok"] = np.where(frame["rule"] == "fpr", frame["fpr"] <= frame["level"], np.nan)
    frame["fdr_ok"] = np.where(frame["rule"] == "fdr", frame["fdr"] <= frame["level"], np.nan)
    frame["fpr_unwarned"] = frame["fpr"].where(~frame["warned"].astype(bool))
    # What conformal theory expects of the fpr rule for each run's calibration size: slightly
    # under alpha, since the threshold is an order statistic of n_cal scores.
    n_cal, alpha = frame["n_cal"], frame["level"]
    expected = 1 - np.ceil((n_cal + 1) * (1 - alpha)) / (n_cal + 1)
    frame["fpr_expected"] = expected.where((frame["rule"] == "fpr") & ~frame["warned"].astype(bool))
    frame.loc[frame["rule"] == "anchor", "level"] = np.nan  # per-dataset rate: not one level
    n_sets, seeds = frame["dataset"].nunique(), sorted(int(s) for s in frame["seed"].unique())
    table = frame.groupby(["protocol", "rule", "level"], sort=False, dropna=False).agg(
        mean_FPR=("fpr", "mean"), FPR_not_warned=("fpr_unwarned", "mean"), FPR_se=("fpr_unwarned", "sem"),
        FPR_expected=("fpr_expected", "mean"), FPR_le_alpha=("fpr_ok", "mean"),
        mean_FDR=("fdr", "mean"), batch=("batch_size", "median"),
        FDR_le_q=("fdr_ok", "mean"), mean_recall=("recall", "mean"), warned=("warned", "mean"), runs=("fpr", "size"),
    ).reset_index()
    table["level"] = table["level"].map(lambda v: "c = anomaly rate" if pd.isna(v) else f"{v:g}")
    lines = [
        f"Realised error rates of maskae's calibrated thresholds ({n_sets} datasets, seeds {seeds}; "
        "calibration_fraction=0.2). `fpr`: level = alpha, claim FPR <= alpha per normal record. "
        "`fdr`: Benjamini-Hochberg, level = q, claim FDR <= q per batch, test rows screened in random "
        "batches of floor(q (n_cal + 1)) rows (`batch`: median size), FDR = mean false-discovery proportion "
        "over batches. `anchor`: (1 - c) quantile of "
        "the training scores, c = the dataset's anomaly rate (PyOD's contamination rule). Means are over "
        "dataset-seed runs; `FPR_le_alpha` / `FDR_le_q` = share of runs meeting the level; `warned` = share of "
        "runs whose calibration set was too small for the level (threshold +inf, nothing flagged); "
        "`FPR_not_warned` = mean FPR over the other runs, `FPR_se` its standard error, `FPR_expected` = "
        "the mean over the same runs of what conformal theory expects for its calibration size, "
        "1 - ceil((n_cal + 1)(1 - alpha)) / (n_cal + 1).", "",
        table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".4f", missingval="-"), "",
    ]
    fpr = frame[frame["rule"] == "fpr"].groupby(["protocol", "dataset", "level"])["fpr"].mean().unstack("level")
    fpr.columns = [f"FPR @ alpha={a:g}" for a in fpr.columns]
    fpr = fpr.map(lambda v: f"{v:.4f}")
    fpr["n_cal"] = frame.groupby(["protocol", "dataset"])["n_cal"].mean().round().astype(int)
    lines += ["**Realised FPR per dataset (mean over seeds)**", "", fpr.reset_index().to_markdown(index=False, disable_numparse=True), ""]
    return "\n".join(lines)


def main() -> None:
    args = parse_arguments(__doc__, "calibration")
    results = RecordFile(args.out)
    for name, (X, y) in load_datasets(args.only).items():
        for protocol in args.protocols:
            for seed in args.seeds:
                if results.has(dataset=name, protocol=protocol, seed=seed):
                    continue
                X_train, X_test, y_test = split(X, y, protocol, seed)
                new = [jsonable(dict(dataset=name, protocol=protocol, seed=seed, **r))
                       for r in run_one(X_train, X_test, y_test, float(y.mean()), seed)]
                summary = " ".join(f"{r['rule']}@{r['level']:.3g}:FPR={r['fpr']:.3f}/FDR={r['fdr']:.2f}"
                                   for r in new if r["rule"] != "fpr" or r["level"] == 0.01)
                print(f"{name:>18} {protocol:>12} seed {seed} n_cal {new[0]['n_cal']:>5} "
                      f"fit {new[0]['fit_s']:.1f}s {summary}", flush=True)
                results.add(new)
    results.write_markdown(markdown(results.records))


if __name__ == "__main__":
    main()
