"""Batch steps of the screening pipeline (config, ingest, train, calibrate, score, track, report).

Orchestration-free plain functions that ``flows/`` wraps in Prefect tasks; they may import
``maskae`` but never ``flows`` or ``prefect``. The steps arrive with the pipeline issue; today the
``maskae demo`` command (``flows/demo.py``) drives the library directly.
"""
