"""The promotion flow: challenger against champion on labelled outcomes, then the registry decision.

Example
-------
>>> # promote_flow("fraud", "labelled.csv", "is_fraud", metric="auprc", margin=0.01)
>>> # promote_flow("fraud", verdicts_from="maskae-runs/nightly")  # analysts' verdicts as the labels
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import flows  # noqa: F401  (sets the no-telemetry environment before prefect loads)
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.retries import transient
from pipeline.promote import MIN_ANOMALIES, PromotionDecision, promote
from pipeline.tracking import use_tracking


@task(name="evaluate-and-decide", retries=2, retry_delay_seconds=5, retry_condition_fn=transient)
def evaluate_and_decide(model_name: str, data_path: str | None, label_column: str | None, verdicts_from: str | None,
                        metric: str, margin: float, max_fpr: float | None, min_anomalies: int) -> PromotionDecision:
    return promote(model_name, data_path, label_column, verdicts_from=verdicts_from, metric=metric, margin=margin,
                   max_fpr=max_fpr, min_anomalies=min_anomalies)


@flow(name="maskae-promote", log_prints=True)
def promote_flow(model_name: str, data_path: str | None = None, label_column: str | None = None,
                 metric: str = "auprc", margin: float = 0.0, max_fpr: float | None = None,
                 workdir: str | None = None, verdicts_from: str | None = None,
                 min_anomalies: int = MIN_ANOMALIES) -> dict[str, Any]:
    """Move ``champion`` to the challenger only when the policy says so; the decision is recorded.

    The labelled records are ``data_path`` (with ``label_column``) or the analysts' verdicts in the
    screening runs under ``verdicts_from``."""
    use_tracking(Path(workdir or Path.cwd()))
    decision = evaluate_and_decide(model_name, data_path, label_column, verdicts_from, metric, margin, max_fpr,
                                   min_anomalies)
    create_markdown_artifact(
        f"## {model_name}: {decision.decision}\n\n{decision.reason}\n\n"
        f"challenger v{decision.challenger_version}: {decision.challenger}\n\n"
        f"champion v{decision.champion_version}: {decision.champion}",
        key="maskae-promotion", description="promotion decision")
    print(decision_line(asdict(decision)))
    return asdict(decision)


def decision_line(decision: dict[str, Any]) -> str:
    """One line on a promotion decision (the dict :func:`promote_flow` returns)."""
    return f"{decision['decision']}: {decision['reason']}"
