"""Entry points: Prefect flows wrapping the pipeline steps, their deployments, and the ``maskae``
command line. Flows stay thin: each task is one business step of ``pipeline/`` plus retries,
logging and Prefect artifacts.
"""

import os

# Nothing this project starts may try to reach the internet; set before prefect/mlflow import.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
