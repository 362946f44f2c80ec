"""Which failures a task retries: those a second try can mend (a tracking server or a file system
briefly unavailable), not those it would meet again (a batch that lacks a column, an unreadable
file, an unknown model, a taken output folder), which a retry only delays and logs twice.

Example
-------
>>> # @task(retries=2, retry_delay_seconds=5, retry_condition_fn=transient)
"""

from __future__ import annotations

from typing import Any

# Every error the pipeline raises for bad input or a bad request is one of these (IngestError,
# SchemaError, VerdictError and configuration errors are ValueErrors; ModelNotFoundError a LookupError).
PERMANENT = (ValueError, LookupError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError,
             NotADirectoryError, PermissionError)


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: retry unless the task failed with a :data:`PERMANENT` error."""
    return not isinstance(state.result(raise_on_failure=False), PERMANENT)
