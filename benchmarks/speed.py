"""Speed benchmark: maskae's fit time against PyOD's AutoEncoder, and maskae's scoring throughput.

Both detectors fit the same 100,000 x 30 synthetic table (correlated Gaussian columns) at their
default settings, in this process, one after the other, with the same torch thread count — so
the ratio is meaningful even though absolute seconds depend on the machine. Scoring throughput
counts every complementary mask pass and the neighbour search; it is the median of several
scorings of the whole table (``--repeats``), because a shared machine's speed drifts by tens of
per cent from one minute to the next (the slowest and fastest are reported too).

    python benchmarks/speed.py            # writes benchmarks/results/speed.{json,md}
    python benchmarks/speed.py --rows 20000 --skip-pyod
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from maskae import MaskedAutoencoderDetector  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def synthetic_table(rows: int, columns: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(columns, columns)) / np.sqrt(columns)
    return (rng.normal(size=(rows, columns)) @ mixing).astype(np.float32)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--columns", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-pyod", action="store_true")
    parser.add_argument("--repeats", type=int, default=5, help="scorings of the whole table timed")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    X = synthetic_table(args.rows, args.columns)
    result: dict = {"rows": args.rows, "columns": args.columns, "threads": args.threads,
                    "machine": f"{platform.machine()}, {os.cpu_count()} cpus", "torch": torch.__version__}
    detector = MaskedAutoencoderDetector(random_state=0)
    result["maskae_fit_s"] = timed(lambda: detector.fit(X))
    detector.anomaly_score(X[:1000])  # warm-up
    score_s = sorted(timed(lambda: detector.anomaly_score(X)) for _ in range(args.repeats))
    result["maskae_score_s"] = float(np.median(score_s))
    result["maskae_score_rows_per_s"] = args.rows / result["maskae_score_s"]
    result["maskae_score_rows_per_s_slowest"] = args.rows / score_s[-1]
    result["maskae_score_rows_per_s_fastest"] = args.rows / score_s[0]
    if not args.skip_pyod:
        from pyod.models.auto_encoder import AutoEncoder

        pyod_ae = AutoEncoder(random_state=0, verbose=0, device="cpu")
        result["pyod_ae_fit_s"] = timed(lambda: pyod_ae.fit(X))
        result["fit_ratio_maskae_over_pyod_ae"] = result["maskae_fit_s"] / result["pyod_ae_fit_s"]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = ["| measure | value |", "|---|---:|"]
    lines += [f"| {k} | {v:,.2f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in result.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
