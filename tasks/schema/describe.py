"""What exists in the target: tables (rows, RLS), enums, policies, vector columns, the ledger."""

from __future__ import annotations

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import sql

from core.connections import connect, target_dsn
from core.retry import IO_RETRIES
from tasks.schema.apply import applied


def describe(conn: psycopg.Connection) -> dict:
    """A JSON-serializable picture of the schema: tables (rows, RLS), enums, policies, ledger."""
    tables = conn.execute(
        """
        SELECT n.nspname, c.relname, c.relrowsecurity,
               (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid),
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                       AND a.attname = 'tenant_id' AND NOT a.attisdropped)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname IN (current_schema(), 'etl')
        ORDER BY n.nspname DESC, c.relname
        """
    ).fetchall()
    out_tables = []
    for schema, name, rls, policies, tenant_scoped in tables:
        rows = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        ).fetchone()[0]
        qualified = name if schema != "etl" else f"etl.{name}"
        out_tables.append(
            {"table": qualified, "rows": rows, "tenant_scoped": tenant_scoped, "rls": rls, "policies": policies}
        )
    enums = conn.execute(
        """
        SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typnamespace = current_schema()::regnamespace
        GROUP BY t.typname ORDER BY t.typname
        """
    ).fetchall()
    vector_columns = conn.execute(
        """
        SELECT c.relname || '.' || a.attname, a.atttypmod
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
        WHERE t.typname = 'vector' AND NOT a.attisdropped AND c.relkind = 'r'
        ORDER BY 1
        """
    ).fetchall()
    ext = conn.execute(
        "SELECT extversion, extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'"
    ).fetchone()
    return {
        "vector_extension": {"version": ext[0], "schema": ext[1]} if ext else None,
        "applied": [
            {"version": a.version, "file": f"{a.version:04d}_{a.name}.sql", "applied_at": a.applied_at}
            for a in applied(conn)
        ],
        "tables": out_tables,
        "enums": {name: list(labels) for name, labels in enums},
        "policies": sum(t["policies"] for t in out_tables),
        "vector_columns": {name: dim for name, dim in vector_columns},
    }


@task(name="describe-schema", cache_policy=NO_CACHE, **IO_RETRIES)
def describe_schema() -> dict:
    with connect(target_dsn()) as conn:
        return describe(conn)
