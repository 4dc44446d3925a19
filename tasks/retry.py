"""Which failures are worth retrying: transient ones (connection lost, serialization failure,
deadlock), never data or configuration errors. Used as Prefect's retry_condition_fn."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from tasks.errors import TerminalError, TransientError

TRANSIENT_PG = (psycopg.OperationalError, pg_errors.SerializationFailure, pg_errors.DeadlockDetected,
                pg_errors.AdminShutdown, pg_errors.CannotConnectNow)


def is_transient(exc: BaseException | None) -> bool:
    if exc is None or isinstance(exc, TerminalError):
        return False
    return isinstance(exc, (TransientError, *TRANSIENT_PG))


def retry_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry only when the task failed for a transient reason."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by Prefect
        return is_transient(exc)
    return False
