"""Wall time of ``maskae demo`` end to end (the pipeline issue's target: under 90 s on 2 cores).

Runs the command in a fresh temporary working folder with a fresh Prefect home, so the
temporary Prefect API creates its database as on a new machine, and records the seconds.

    python benchmarks/demo_time.py        # writes benchmarks/results/demo_time.{json,md}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(Path(workdir) / "prefect-home")}
        env.pop("MLFLOW_TRACKING_URI", None)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "flows.cli", "demo"], cwd=workdir, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    result = {"command": "maskae demo", "seconds": round(seconds, 1), "cpus": os.cpu_count(), "target_s": 90}
    out = ROOT / "benchmarks" / "results" / "demo_time"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    table = "| measure | value |\n|---|---:|\n" + "".join(f"| {k} | {v} |\n" for k, v in result.items())
    out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
