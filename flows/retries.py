"""Which failures a task retries: those a second try can mend (a tracking server or a file system
briefly unavailable), not those it would meet again (a batch that lacks a column, an unreadable
file, an unknown model, a taken output folder), which a retry only delays and logs twice.

Example
-------
>>> # @task(retries=2, retry_delay_seconds=5, retry_condition_fn=transient)
"""

from __future__ import annotations

import errno
from typing import Any

from pipeline.ingest import FileChangedError

# Every error the pipeline raises for bad input or a bad request is one of these (IngestError,
# SchemaError, VerdictError and configuration errors are ValueErrors; ModelNotFoundError a LookupError),
# but for a file that changed while it was read: it was still being written, and may be complete now.
PERMANENT = (ValueError, LookupError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError,
             NotADirectoryError, PermissionError)


# A read-only file system, a full disk or a spent quota: not mended in the seconds a retry waits.
PERMANENT_OS_ERRORS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT)

# MLflow's answers to a bad request (a mistyped store URI, a model or artifact that does not
# exist), by MlflowException.error_code; an unreachable server or a locked database is retried.
PERMANENT_MLFLOW_ERRORS = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED", "UNAUTHENTICATED"}


async def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn`` (awaited by the sync and the async task engines alike):
    retry unless the task failed with a :data:`PERMANENT` error."""
    error = await state.aresult(raise_on_failure=False)
    if isinstance(error, OSError) and error.errno in PERMANENT_OS_ERRORS:
        return False
    if getattr(error, "error_code", None) in PERMANENT_MLFLOW_ERRORS:  # duck-typed: no MLflow import here
        return False
    return isinstance(error, FileChangedError) or not isinstance(error, PERMANENT)
