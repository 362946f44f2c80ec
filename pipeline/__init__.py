"""Batch steps of the screening pipeline, orchestration-free plain functions.

``config`` (validated TOML), ``ingest`` (read, schema, quarantine), ``train`` (split, fit,
calibrate, evaluate, register), ``screen`` (streamed scoring into the screening output folder),
``promote`` (challenger against champion), ``tracking`` / ``mlflow_model`` (MLflow runs, registry,
the pyfunc). ``flows/`` wraps them in Prefect tasks; they may import ``maskae`` but never
``flows`` or ``prefect``.
"""
