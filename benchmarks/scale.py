"""Scale benchmark: screening Parquet files of 1M and 10M rows in constant memory, and on Dask.

Generates mixed-type Parquet files (30 columns: an id, 20 numbers, 7 categories, 2 booleans; a few
planted anomalies), trains one model on a 50,000-row file of the same kind, then screens each file in
a fresh subprocess and records its wall time, rows/s and peak resident memory (``ru_maxrss`` of that
process). The Dask run screens the 1M file through the ``maskae screen --dask-workers N`` flow
(a local cluster); its memory is the driver's (the workers are separate processes, not measured).

    python benchmarks/scale.py                       # writes benchmarks/results/scale.{json,md}
    python benchmarks/scale.py --rows 100000 1000000 --dask-workers 2 --workdir /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
NUMBERS, CATEGORIES, FLAGS = 20, 7, 2
GROUP = 250_000  # rows per generated row group


def generate(path: Path, rows: int, seed: int) -> None:
    """Mixed-type rows with structure (numbers driven by 4 latent factors and the first category),
    0.1 % of them anomalies (one number far off, or a category the others contradict)."""
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    loadings = np.random.default_rng(0).normal(size=(4, NUMBERS))
    tmp = path.with_suffix(".tmp")
    writer = None
    for start in range(0, rows, GROUP):
        n = min(GROUP, rows - start)
        segment = rng.integers(0, 5, size=n)
        numbers = rng.normal(size=(n, 4)) @ loadings + segment[:, None] * 0.8 + rng.normal(0, 0.3, size=(n, NUMBERS))
        odd = rng.random(n) < 0.001
        numbers[odd, rng.integers(0, NUMBERS, size=odd.sum())] += 12.0
        columns = {"txn_id": [f"T{start + i:09d}" for i in range(n)]}
        columns |= {f"x{j:02d}": numbers[:, j] for j in range(NUMBERS)}
        columns["segment"] = np.char.add("s", segment.astype(str))
        shuffled = np.where(odd, rng.integers(0, 5, size=n), segment)
        for j in range(1, CATEGORIES):
            columns[f"c{j}"] = np.char.add(f"k{j}_", ((shuffled + j) % 5).astype(str)) if j < 3 else \
                np.char.add(f"k{j}_", rng.integers(0, 12, size=n).astype(str))
        for j in range(FLAGS):
            columns[f"b{j}"] = (segment + j) % 2 == 0
        table = pa.table(columns)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    writer.close()
    tmp.rename(path)


def child(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command`` (a Python ``-c`` program printing JSON last) and return its JSON."""
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{command[:3]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


SCREEN = """
import json, resource, sys, time
from pathlib import Path
from pipeline.screen import screen
start = time.perf_counter()
summary = screen(sys.argv[1], sys.argv[3], Path(sys.argv[2])).summary
print(json.dumps({"seconds": time.perf_counter() - start, "rows": summary["rows_in"], "flagged": summary["rows_flagged"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

SCREEN_DASK = """
import json, resource, sys, time
from flows.screening import screen_flow
if __name__ == "__main__":
    start = time.perf_counter()
    summary = screen_flow(sys.argv[1], sys.argv[5], sys.argv[2], workdir=sys.argv[3], dask_workers=int(sys.argv[4]))["summary"]
    print(json.dumps({"seconds": time.perf_counter() - start, "rows": summary["rows_in"], "flagged": summary["rows_flagged"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

TRAIN = """
import json, sys
from pipeline.config import PipelineConfig
from pipeline.train import train
config = PipelineConfig.model_validate({"data": {"path": sys.argv[1], "id_column": "txn_id"},
    "model": {"max_steps": int(sys.argv[2]), "random_state": 0}, "mlflow": {"model_name": "scale"},
    "calibration": {"strategy": "fpr", "level": 0.01}})
print(json.dumps({"version": train(config).version}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=300, help="training budget (scoring cost does not depend on it)")
    parser.add_argument("--workdir", default="/tmp/maskae-scale", help="where data, model store and outputs go")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale"))
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE",
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    generate(work / "train.parquet", 50_000, seed=1)
    print("training", flush=True)
    # Screen the version just trained, by number: the workdir's registry keeps earlier runs' versions
    # and its champion alias stays on the first of them.
    model = "scale/" + child([sys.executable, "-c", TRAIN, str(work / "train.parquet"), str(args.max_steps)], env)["version"]
    records = []
    for rows in args.rows:
        data = work / f"rows-{rows}.parquet"
        started = time.perf_counter()
        generate(data, rows, seed=rows)
        print(f"{rows:,} rows generated in {time.perf_counter() - started:.0f} s; screening", flush=True)
        out = work / f"screen-{rows}-{time.time_ns()}"
        result = child([sys.executable, "-c", SCREEN, str(data), str(out), model], env)
        records.append({"run": "single process", "rows": rows, **result, "rows_per_s": rows / result["seconds"]})
        print(records[-1], flush=True)
    smallest = min(args.rows)
    out = work / f"screen-dask-{time.time_ns()}"
    result = child([sys.executable, "-c", SCREEN_DASK, str(work / f"rows-{smallest}.parquet"), str(out), str(work),
                    str(args.dask_workers), model], env)
    records.append({"run": f"Dask, {args.dask_workers} local workers", "rows": smallest, **result,
                    "rows_per_s": smallest / result["seconds"]})
    print(records[-1], flush=True)
    single = {r["rows"]: r for r in records if r["run"] == "single process"}
    largest = max(args.rows)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "records": records,
        "peak_rss_ratio_largest_to_smallest": single[largest]["peak_rss_mb"] / single[smallest]["peak_rss_mb"],
        "dask_to_single_seconds_ratio": records[-1]["seconds"] / single[smallest]["seconds"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2))
    table = pd.DataFrame(records)[["run", "rows", "seconds", "rows_per_s", "peak_rss_mb", "flagged"]]
    Path(f"{args.out}.md").write_text(
        f"Screening Parquet files (30 mixed columns), one process each, {os.cpu_count()} CPUs.\n\n"
        + table.to_markdown(index=False, floatfmt=",.0f")
        + f"\n\nPeak RSS {largest:,} rows / {smallest:,} rows: {report['peak_rss_ratio_largest_to_smallest']:.2f}. "
        f"Dask / single process wall time on {smallest:,} rows: {report['dask_to_single_seconds_ratio']:.2f}.\n")
    print(Path(f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
