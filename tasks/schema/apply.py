"""Applying schema/: under an advisory lock, the vector extension first, then each pending
file in its own transaction together with its row in the ledger etl.schema_migrations.

The failure this prevents (from the VITAL team's history): a reset that used VECTOR(1536)
before CREATE EXTENSION vector and died half-way, leaving the database inconsistent.
Here a failing file rolls back whole, the ledger is unchanged, and nothing starts unless
preflight says the target is fit.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from psycopg import sql

from core.connections import connect, target_dsn
from core.errors import MigrationError, PreflightError
from tasks.schema.files import Migration

if TYPE_CHECKING:
    from tasks.schema.preflight import Plan

_LOCK_KEY = 0x5649_5441  # "VITA": one bootstrap at a time per database

LEDGER_DDL = """
CREATE SCHEMA IF NOT EXISTS etl;
CREATE TABLE IF NOT EXISTS etl.schema_migrations (
    version     integer PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    params      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    duration_ms integer,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str
    params: dict
    applied_at: str


def applied(conn: psycopg.Connection) -> list[Applied]:
    """The ledger's rows; empty when the ledger does not exist yet."""
    if conn.execute("SELECT to_regclass('etl.schema_migrations')").fetchone()[0] is None:
        return []
    rows = conn.execute(
        "SELECT version, name, checksum, params, applied_at::text FROM etl.schema_migrations ORDER BY version"
    ).fetchall()
    return [Applied(*r) for r in rows]


def ensure_vector(conn: psycopg.Connection, schema: str | None) -> str:
    """CREATE EXTENSION vector before anything uses it; make its schema visible on this connection."""
    conn.execute(
        sql.SQL("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA {}").format(sql.Identifier(schema))
        if schema
        else sql.SQL("CREATE EXTENSION IF NOT EXISTS vector")
    )
    ext_schema = conn.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'"
    ).fetchone()[0]
    include_schema(conn, ext_schema)
    return ext_schema


def include_schema(conn: psycopg.Connection, schema: str) -> None:
    """Append `schema` to the connection's search_path (e.g. Supabase's `extensions`)."""
    visible = conn.execute("SELECT current_schemas(false)").fetchone()[0]
    if schema not in visible:
        path = conn.execute("SHOW search_path").fetchone()[0]
        conn.execute(
            sql.SQL("SELECT set_config('search_path', {}, false)").format(
                sql.Literal(f"{path}, {sql.Identifier(schema).as_string(conn)}")
            )
        )


def apply_plan(conn: psycopg.Connection, plan: Plan, on_applied=None) -> list[dict]:
    """Apply the plan's pending files, each with its ledger row in one transaction.

    `conn` must be in autocommit mode (each file gets its own BEGIN/COMMIT)."""
    if not conn.autocommit:
        raise ValueError("apply_plan needs an autocommit connection")
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()[0]
    if not got:
        raise PreflightError("another bootstrap-schema is running on this database; try again when it ends")
    try:
        ensure_vector(conn, plan.vector_schema)
        conn.execute(LEDGER_DDL)
        done = []
        for m in plan.pending:
            # Re-check under the lock: another process may have applied it meanwhile.
            if conn.execute("SELECT 1 FROM etl.schema_migrations WHERE version = %s", (m.version,)).fetchone():
                continue
            started = time.monotonic()
            _apply_one(conn, m, plan.params, started)
            entry = {"version": m.version, "file": m.filename, "ms": int((time.monotonic() - started) * 1000)}
            done.append(entry)
            if on_applied:
                on_applied(entry)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _apply_one(conn: psycopg.Connection, m: Migration, params: dict, started: float) -> None:
    statements = m.statements(params)
    with conn.transaction():
        for i, stmt in enumerate(statements, start=1):
            try:
                conn.execute(stmt.text, prepare=False)
            except psycopg.Error as exc:
                first = stmt.text.splitlines()[0][:120]
                cause = (exc.diag.message_primary or str(exc)).strip()
                raise MigrationError(
                    f"{m.filename}: statement {i} of {len(statements)} (line {stmt.line}) failed: {cause}\n"
                    f"    {first}\n"
                    "The file's transaction was rolled back: nothing of it was applied and the ledger is "
                    "unchanged. Fix the file and run bootstrap-schema again.",
                    file=m.filename,
                    statement=stmt.text,
                    line=stmt.line,
                    cause=cause,
                ) from None
        conn.execute(
            "INSERT INTO etl.schema_migrations (version, name, checksum, params, duration_ms) "
            "VALUES (%s, %s, %s, %s, %s)",
            (m.version, m.name, m.checksum, json.dumps(params), int((time.monotonic() - started) * 1000)),
        )


@task(name="apply-schema", cache_policy=NO_CACHE)
def apply_schema(plan: Plan) -> list[dict]:
    logger = get_run_logger()
    with connect(target_dsn(), autocommit=True) as conn:
        return apply_plan(conn, plan, on_applied=lambda e: logger.info("applied %s in %d ms", e["file"], e["ms"]))
