"""Identifier-column benchmark: what a column with a new value in every row costs a fit.

A table of 10 numbers, fitted with and without a timestamp column (a distinct text value per row, as
a CSV holds it), at ``max_categories=None`` (every value its own category, as before the bound) and
at the default 256. Each fit runs in a fresh process, which reports its wall time and peak resident
memory (``ru_maxrss``); the ratio to the same rows without the column is what the column costs.

    python benchmarks/identifier_column.py     # writes benchmarks/results/identifier_column.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from scale import child  # the same subprocess runner as the scale benchmark

ROOT = Path(__file__).resolve().parents[1]

FIT = """
import json, resource, sys, time
import numpy as np, pandas as pd, torch
from maskae import MaskedAutoencoderDetector
torch.set_num_threads(2)
rows, cap, with_column = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
rng = np.random.default_rng(0)
table = pd.DataFrame(rng.normal(size=(rows, 10)), columns=[f"x{j}" for j in range(10)])
if with_column:
    table["timestamp"] = pd.date_range("2026-01-01", periods=rows, freq="s").astype(str)
start = time.perf_counter()
MaskedAutoencoderDetector(max_steps=200, max_categories=None if cap == "none" else int(cap), random_state=0).fit(table)
print(json.dumps({"fit_s": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000, 10_000, 20_000])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "identifier_column"))
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}
    records = []
    for rows in args.rows:
        base = child([sys.executable, "-c", FIT, str(rows), "256", "0"], env)
        for cap in ("none", "256"):
            result = child([sys.executable, "-c", FIT, str(rows), cap, "1"], env)
            records.append({"rows": rows, "max_categories": cap, **result,
                            "rss_ratio_to_no_column": result["peak_rss_mb"] / base["peak_rss_mb"],
                            "fit_ratio_to_no_column": result["fit_s"] / base["fit_s"]})
            print(records[-1], flush=True)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"records": records}, indent=2))
    table = pd.DataFrame(records).round({"fit_s": 1, "peak_rss_mb": 0, "rss_ratio_to_no_column": 2,
                                          "fit_ratio_to_no_column": 2})
    out.with_suffix(".md").write_text(
        "Fitting 10 numeric columns plus a timestamp column (a distinct text value per row), 200 steps, "
        "2 torch threads, each fit in a fresh process; ratios are to the same rows without the column.\n\n"
        + table.to_markdown(index=False) + "\n")


if __name__ == "__main__":
    main()
