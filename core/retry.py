"""Which failures are worth retrying: transient ones (connection lost, serialization failure,
deadlock, server shutting down or starting), never data or configuration errors. Used as
Prefect's retry_condition_fn and by the loader's tenacity loop.

A database error is classified by its SQLSTATE, not by its Python class: psycopg raises
"index row size exceeds maximum" (54000) as an OperationalError, like a lost connection, yet
retrying it can never help."""

from __future__ import annotations

import psycopg

from core.errors import TerminalError, TransientError

# SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html)
TRANSIENT_CLASSES = ("08", "40")  # connection exception; transaction rollback (serialization, deadlock)
TRANSIENT_CODES = frozenset({"57P01", "57P02", "57P03"})  # admin / crash shutdown, cannot connect now
DATA_CLASSES = ("22", "23", "54")  # data exception; integrity violation; program limit (index row size)
DATA_CODES = frozenset({"P0001"})  # a trigger's or function's plain RAISE EXCEPTION


def sqlstate(exc: BaseException | None) -> str | None:
    return getattr(exc, "sqlstate", None) if isinstance(exc, psycopg.Error) else None


def is_transient(exc: BaseException | None) -> bool:
    """The same call may succeed later: a TransientError, a database error of SQLSTATE class 08
    or 40 or 57P01-57P03, or a connection that failed without a SQLSTATE (closed, refused)."""
    if exc is None or isinstance(exc, TerminalError):
        return False
    if isinstance(exc, TransientError):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = sqlstate(exc)
    if state is None:  # no server answer: the connection itself broke
        return isinstance(exc, psycopg.OperationalError)
    return state[:2] in TRANSIENT_CLASSES or state in TRANSIENT_CODES


def is_data_error(exc: BaseException | None) -> bool:
    """The database refused the rows themselves (SQLSTATE class 22, 23, 54 or P0001): isolate
    and quarantine them, never retry."""
    state = sqlstate(exc)
    return state is not None and (state[:2] in DATA_CLASSES or state in DATA_CODES)


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


def call_with_retries(fn, *args, attempts: int = 4, **kwargs):
    """fn(*args, **kwargs), again with backoff while it fails for a transient reason (for the
    steps a flow runs itself, outside a task with IO_RETRIES; fn opens its own connection)."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

    for attempt in Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(initial=1, max=15),
        reraise=True,
    ):
        with attempt:
            return fn(*args, **kwargs)
