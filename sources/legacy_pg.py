"""The legacy PostgreSQL database: a table or a query, streamed through a server-side cursor
in batches of `batch_rows` (memory holds one batch, whatever the table's size). uuid[],
text[], jsonb and vector columns arrive as JSON text, like every other source.

Every read happens in a READ ONLY transaction that is rolled back, with the session's
TimeZone set from the manifest (default UTC), so timestamps read the same on any server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl
import psycopg
from psycopg import sql as pgsql

from core.connections import connect, mask_dsn
from core.retry import is_transient
from sources.files import SourceError, frame_of


class UnknownTimeZone(ValueError):
    """The legacy database does not know the manifest's `timezone`."""


@contextmanager
def read_only(dsn: str, timezone: str = "UTC", **connect_args) -> Iterator[psycopg.Connection]:
    """A connection inside a READ ONLY transaction (rolled back on exit), TimeZone set."""
    with connect(dsn, **connect_args) as conn:
        conn.read_only = True
        with conn.transaction(force_rollback=True):
            try:
                conn.execute("SELECT set_config('TimeZone', %s, false)", (timezone,))
            except psycopg.errors.InvalidParameterValue:
                raise UnknownTimeZone(timezone) from None
            yield conn


class Unreadable(ValueError):
    """A manifest's `table:` or `query:` cannot be read; the message says why and what to write."""


ONE_QUERY = "`query:` must be exactly one read-only SELECT (or WITH ... SELECT, VALUES, TABLE) statement"


def check_statement(conn: psycopg.Connection, statement: pgsql.Composable, relation: tuple[str, ...] = ()) -> None:
    """Refuse what cannot be read, running nothing: a `relation` that does not exist, a
    statement the server cannot plan (EXPLAIN, sent with the extended protocol: one statement
    only), or one that is not a query (wrapped as a subquery, only SELECT, WITH ... SELECT,
    VALUES or TABLE parse; it reads no row: LIMIT 0). Call it inside `read_only`."""
    if relation:
        name = pgsql.Identifier(*relation).as_string(conn)
        if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
            raise Unreadable(
                f'relation "{".".join(relation)}" does not exist; write `table:` as schema.table, '
                "as the name is written in the database"
            )
    try:
        conn.execute(pgsql.SQL("EXPLAIN ") + statement, prepare=True)
    except psycopg.Error as exc:
        raise Unreadable(_message(exc) + (f"; {ONE_QUERY}" if exc.sqlstate == "42601" else "")) from None
    try:
        conn.execute(pgsql.SQL("SELECT * FROM (\n{}\n) AS vital_etl_check LIMIT 0").format(statement), prepare=True)
    except psycopg.Error as exc:
        if exc.sqlstate in ("42601", "0A000", "25006"):
            raise Unreadable(f"it is one statement, but not a query that only reads; {ONE_QUERY}") from None
        raise Unreadable(_message(exc)) from None


def _message(exc: psycopg.Error) -> str:
    return " ".join((exc.diag.message_primary or str(exc)).split())


def read_postgres(
    dsn: str,
    sql: str | pgsql.Composable,
    batch_rows: int,
    detected: dict | None = None,
    timezone: str = "UTC",
    label: str = "a postgres source",
    relation: tuple[str, ...] = (),
) -> Iterator[pl.DataFrame]:
    """Stream `sql`. batch_rows trades memory for round trips: each fetch holds that many rows.
    relation: the table `sql` reads whole; when it has a primary key, rows come in key order, so
    a row's number (`_row`, its provenance) does not move when other rows are updated. The
    database refusing the statement (not a lost connection, which is retried) is a SourceError
    naming the source (`label`)."""
    try:
        yield from _stream(dsn, sql, batch_rows, detected, timezone, relation)
    except psycopg.Error as exc:
        if is_transient(exc):
            raise
        msg = _message(exc)
        hint = "; a manifest source only reads: its statement may not write" if exc.sqlstate == "25006" else ""
        raise SourceError(f"{label} on {mask_dsn(dsn)}: the legacy database refused the read: {msg}{hint}") from None


def primary_key(conn: psycopg.Connection, relation: tuple[str, ...]) -> list[str]:
    """The primary key's columns of a table, in key order; [] for none (or not a table)."""
    name = pgsql.Identifier(*relation).as_string(conn)
    return [
        r[0]
        for r in conn.execute(
            """SELECT a.attname FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
               WHERE i.indrelid = to_regclass(%s) AND i.indisprimary
               ORDER BY array_position(i.indkey::int2[], a.attnum)""",
            (name,),
        )
    ]


def _stream(
    dsn, sql, batch_rows: int, detected: dict | None, timezone: str, relation: tuple[str, ...] = ()
) -> Iterator[pl.DataFrame]:
    with read_only(dsn, timezone) as conn, conn.cursor(name="vital_etl_extract") as cur:
        cur.itersize = batch_rows
        key = primary_key(conn, relation) if relation else []
        if key:
            whole = pgsql.SQL(sql) if isinstance(sql, str) else sql
            sql = pgsql.SQL("{} ORDER BY {}").format(whole, pgsql.SQL(", ").join(map(pgsql.Identifier, key)))
        cur.execute(sql)
        columns = [d.name for d in cur.description]
        start, total = 1, 0
        while True:
            rows = cur.fetchmany(batch_rows)
            if not rows:
                break
            frame = frame_of([dict(zip(columns, r)) for r in rows], columns)
            yield frame.with_columns(pl.Series("_row", range(start, start + len(rows)), dtype=pl.Int64))
            start += len(rows)
            total += len(rows)
        if detected is not None:
            detected.update({"rows": total, "format": "postgres", "batches_of": batch_rows})
