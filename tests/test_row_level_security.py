"""Row Level Security as a non-owner role: one tenant's rows only, and none without a tenant."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from core.identity import row_id, tenant_id

TENANTS = ("digital-health", "pharma")
CHECKED_TEXT = {"relation_type": "compatible", "dependency_type": "depends_on"}


def _insert_order(conn) -> list[str]:
    """Tenant-scoped tables, referenced tables first."""
    tables = [
        r[0]
        for r in conn.execute(
            """SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
           WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' ORDER BY 1"""
        )
    ]
    deps = {
        t: {
            r[0]
            for r in conn.execute(
                """SELECT confrelid::regclass::text FROM pg_constraint
           WHERE conrelid = %s::regclass AND contype = 'f' AND confrelid <> conrelid""",
                (t,),
            )
        }
        - {"tenants"}
        for t in tables
    }
    ordered: list[str] = []
    while len(ordered) < len(tables):
        for t in tables:
            if t not in ordered and deps[t] <= set(ordered):
                ordered.append(t)
    return ordered


def _fill_row(conn, table: str, tenant: str, ids: dict) -> None:
    """One row with every required column filled by type; foreign keys point at this tenant's rows."""
    cols = conn.execute(
        """SELECT a.attname, t.typname, t.typtype, a.atttypid
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
           WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
             AND a.attnotnull AND NOT a.atthasdef""",
        (table,),
    ).fetchall()
    fks = dict(
        conn.execute(
            """SELECT a.attname, c.confrelid::regclass::text FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
           WHERE c.conrelid = %s::regclass AND c.contype = 'f' AND a.attname <> 'tenant_id'""",
            (table,),
        ).fetchall()
    )
    values = {}
    for name, typ, typtype, oid in cols:
        if name == "tenant_id":
            values[name] = tenant_id(tenant)
        elif name in fks:
            values[name] = ids[(fks[name], tenant)]
        elif name == "id":
            values[name] = row_id(tenant_id(tenant), table, "rls-test")
        elif typtype == "e":
            values[name] = conn.execute(
                "SELECT enumlabel FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder LIMIT 1", (oid,)
            ).fetchone()[0]
        elif typ in ("int4", "int2", "int8"):
            values[name] = 0
        elif name in CHECKED_TEXT:
            values[name] = CHECKED_TEXT[name]
        elif typ == "text":
            values[name] = f"{table}-{tenant}"
        else:
            raise AssertionError(f"no filler for {table}.{name} ({typ})")
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)),
    )
    conn.execute(query, list(values.values()))
    if "id" in values:
        ids[(table, tenant)] = values["id"]


@pytest.fixture
def two_tenant_rows(target_dsn):
    with psycopg.connect(target_dsn) as conn:
        tables = _insert_order(conn)
        ids: dict = {}
        for table in tables:
            for tenant in TENANTS:
                _fill_row(conn, table, tenant, ids)
        conn.execute("DROP ROLE IF EXISTS vital_app")
        conn.execute("CREATE ROLE vital_app NOLOGIN")
        conn.execute("GRANT USAGE ON SCHEMA public TO vital_app")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO vital_app")
    yield target_dsn, tables
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute("DROP OWNED BY vital_app")
        conn.execute("DROP ROLE vital_app")


def _visible(conn, table: str) -> dict:
    return dict(
        conn.execute(sql.SQL("SELECT tenant_id, count(*) FROM {} GROUP BY 1").format(sql.Identifier(table))).fetchall()
    )


def test_non_owner_sees_only_the_current_tenant(two_tenant_rows):
    dsn, tables = two_tenant_rows
    assert len(tables) == 24
    with psycopg.connect(dsn) as conn:
        for table in tables:  # the owner (the loader) sees both tenants
            assert set(_visible(conn, table)) == {tenant_id(t) for t in TENANTS}, table
        conn.execute("SET ROLE vital_app")
        for tenant in TENANTS:
            conn.execute("SELECT set_config('app.tenant_id', %s, false)", (str(tenant_id(tenant)),))
            for table in tables:
                assert _visible(conn, table) == {tenant_id(tenant): 1}, (table, tenant)
            assert [r[0] for r in conn.execute("SELECT slug FROM tenants")] == [tenant]


def test_non_owner_without_a_tenant_sees_nothing(two_tenant_rows):
    dsn, tables = two_tenant_rows
    with psycopg.connect(dsn) as conn:
        conn.execute("SET ROLE vital_app")
        for table in tables:
            assert _visible(conn, table) == {}, table
        assert conn.execute("SELECT count(*) FROM tenants").fetchone()[0] == 0


def test_supabase_jwt_claim_selects_the_tenant(two_tenant_rows):
    dsn, _ = two_tenant_rows
    with psycopg.connect(dsn) as conn:
        conn.execute("SET ROLE vital_app")
        claims = json.dumps({"sub": "x", "tenant_id": str(tenant_id("pharma"))})
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))
        assert _visible(conn, "agents") == {tenant_id("pharma"): 1}
