"""What every tabular benchmark shares: the datasets, the splits of DESIGN.md, the command-line
options and the resumable JSON record file.

* one-class — per seed, shuffle the normal rows, train on half of them, test on the other half
  plus every anomaly;
* contaminated — stratified 70/30 split, training labels ignored (unlabelled anomalies in training).

Datasets come from ``MASKAE_DATASETS`` (default ``../shared/datasets``): the ADBench ``.npz`` files
and the credit-card sample (label column ``Class``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Before torch loads its OpenMP runtime: idle threads that spin slow small fits many times over.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: `python benchmarks/<name>.py`
DATASETS = Path(os.environ.get("MASKAE_DATASETS", ROOT.parent / "shared" / "datasets"))


def load_datasets(only: list[str] | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Name -> (X, y) for every dataset found (or those named in ``only``); exits if none is."""
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
    if not sets:
        sys.exit(f"no datasets found under {DATASETS} (set MASKAE_DATASETS)")
    return sets


def split(X: np.ndarray, y: np.ndarray, protocol: str, seed: int):
    """(X_train, X_test, y_test) of one protocol and seed."""
    if protocol == "one-class":
        rng = np.random.default_rng(seed)
        normal = rng.permutation(np.flatnonzero(y == 0))
        half = len(normal) // 2
        test = np.concatenate([normal[half:], np.flatnonzero(y == 1)])
        return X[normal[:half]], X[test], y[test]
    X_train, X_test, _, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    return X_train, X_test, y_test


def parse_arguments(description: str, default_out: str, extra=None) -> argparse.Namespace:
    """The options every benchmark takes; ``extra(parser)`` adds its own. Sets torch's threads."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="dataset names (e.g. cardio creditcard); default all")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="*", default=["one-class", "contaminated"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / default_out),
                        help="output path without suffix: writes .json and .md")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


class RecordFile:
    """The benchmark's JSON output, rewritten atomically after every result so a run can resume."""

    def __init__(self, out: str):
        self.json_path = Path(out).with_suffix(".json")
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = (
            json.loads(self.json_path.read_text())["records"] if self.json_path.exists() else []
        )

    def has(self, **key) -> bool:
        return any(all(r.get(k) == v for k, v in key.items()) for r in self.records)

    def add(self, new: list[dict]) -> None:
        self.records += new
        tmp = self.json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"records": self.records}, indent=1, allow_nan=False))
        tmp.replace(self.json_path)

    def write_markdown(self, text: str) -> None:
        self.json_path.with_suffix(".md").write_text(text)
        print(text)
