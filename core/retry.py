"""Which failures are worth retrying: transient ones (connection lost, serialization failure,
deadlock), never data or configuration errors. Used as Prefect's retry_condition_fn."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from core.errors import TerminalError, TransientError

TRANSIENT_PG = (
    psycopg.OperationalError,
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.AdminShutdown,
    pg_errors.CannotConnectNow,
)


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


# Prefect task options for every step that does I/O: backoff with jitter, transient errors only
IO_RETRIES = dict(
    retries=3, retry_delay_seconds=[2, 8, 30], retry_jitter_factor=0.5, retry_condition_fn=retry_transient
)
