"""``maskae serve``: the nightly screening deployment.

Serves ``screen_incoming`` on a cron schedule (default 02:00 every night): each run screens the
files of the incoming folder, and its folders of images, that have no completed output folder yet. Schedules fire only
against a real Prefect server — start one on loopback first (``prefect server start --host
127.0.0.1``) and point ``PREFECT_API_URL`` at it; Prefect's temporary local API cannot schedule.

Example
-------
>>> # serve_nightly("incoming/", "fraud@champion", "maskae-runs/screening", cron="0 2 * * *")
"""

from __future__ import annotations

import flows  # noqa: F401  (sets the no-telemetry environment before prefect loads)
from prefect import serve

from flows.screening import screen_incoming

DEPLOYMENT = "nightly-screening"


def serve_nightly(incoming: str, model: str, out_root: str, *, cron: str = "0 2 * * *",
                  every_seconds: float | None = None, id_column: str | None = None,
                  workdir: str | None = None, dask_address: str | None = None) -> None:
    """Block, serving the deployment; every scheduled run screens the new files of ``incoming``.
    ``every_seconds`` replaces the cron schedule with a fixed interval (tests, catch-up)."""
    schedule = {"interval": every_seconds} if every_seconds else {"cron": cron}
    deployment = screen_incoming.to_deployment(
        name=DEPLOYMENT, **schedule,
        parameters={"incoming": incoming, "model": model, "out_root": out_root,
                    "id_column": id_column, "workdir": workdir, "dask_address": dask_address},
        description="screen each new file of the incoming folder once",
    )
    serve(deployment)
