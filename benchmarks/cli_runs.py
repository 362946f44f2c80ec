"""What the benchmarks that run the ``maskae`` command share: a fresh working folder, a timed
command in it, and a measure/value table written beside its JSON in ``benchmarks/results/``.

A fresh folder has a fresh Prefect home, so the temporary Prefect API creates its database as on
a new machine, and no ``MLFLOW_TRACKING_URI``, so MLflow uses the embedded SQLite store there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def fresh_workdir() -> Iterator[tuple[str, dict[str, str]]]:
    """A temporary working folder and the environment to run the command in it."""
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(Path(workdir) / "prefect-home")}
        env.pop("MLFLOW_TRACKING_URI", None)
        yield workdir, env


def run_maskae(args: list[str], workdir: str, env: dict[str, str]) -> float:
    """Run ``maskae <args>`` in ``workdir``; its wall seconds, to one decimal."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=workdir, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - start, 1)


def write_measures(name: str, result: dict[str, Any]) -> None:
    """``benchmarks/results/<name>.json`` and a measure/value table in ``<name>.md`` (printed too)."""
    path = ROOT / "benchmarks" / "results" / name
    path.with_suffix(".json").write_text(json.dumps(result, indent=2))
    table = "| measure | value |\n|---|---:|\n" + "".join(f"| {k} | {v} |\n" for k, v in result.items())
    path.with_suffix(".md").write_text(table)
    print(table)
