"""Entry points: Prefect flows wrapping the pipeline steps, their deployments, and the ``maskae``
command line. Flows stay thin: each task is one business step of ``pipeline/`` plus retries,
logging and Prefect artifacts.
"""

import os

# Nothing this project starts may try to reach the internet; set before prefect/mlflow import.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
# The temporary local API creates its database on first use; on 2 busy cores that can exceed
# Prefect's 20 s default and fail the very first `maskae` command on a fresh machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
