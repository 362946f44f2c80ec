"""Wall time of ``maskae demo`` end to end (the pipeline issue's target: under 90 s on 2 cores).

Runs the command in a fresh temporary working folder with a fresh Prefect home, so the
temporary Prefect API creates its database as on a new machine, and records the seconds.

    python benchmarks/demo_time.py        # writes benchmarks/results/demo_time.{json,md}
"""

from __future__ import annotations

import os

from cli_runs import fresh_workdir, run_maskae, write_measures


def main() -> None:
    with fresh_workdir() as (workdir, env):
        seconds = run_maskae(["demo"], workdir, env)
    write_measures("demo_time", {"command": "maskae demo", "seconds": seconds, "cpus": os.cpu_count(), "target_s": 90})


if __name__ == "__main__":
    main()
