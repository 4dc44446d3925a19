"""Row Level Security as a non-owner role: one tenant's rows only, and none without a tenant."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from core import catalogue
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
    assert set(tables) == {*catalogue.CATALOGUE_TABLES, *(j.name for j in catalogue.JUNCTIONS)}
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


# Issue 13 (#15, #16): etl holds tenant data too; the JWT claim chooses the tenant.


@pytest.fixture
def etl_rows(two_tenant_rows):
    """A run, a quarantined row and an id-map row per tenant, one shared embedding, and a role
    `vital_etl_reader` granted SELECT on every etl table."""
    from tasks.runs import quarantine, record_ids, start_run

    dsn, _ = two_tenant_rows
    with psycopg.connect(dsn, autocommit=True) as conn:
        for tenant in TENANTS:
            run_id = start_run(conn, "migrate-tenant", tenant, {})
            quarantine(conn, run_id, tenant, "agents", [(f"q-{tenant}", "refused", {"name": tenant})])
            record_ids(conn, tenant, "agents", [(f"k-{tenant}", str(row_id(tenant_id(tenant), "agents", "k")))])
        conn.execute(
            "INSERT INTO etl.embedding_cache (model, content_sha256, embedding) VALUES ('m', 'h', array_fill(0.5, ARRAY[384])::vector)"
        )
        conn.execute("DROP ROLE IF EXISTS vital_etl_reader")
        conn.execute("CREATE ROLE vital_etl_reader NOLOGIN")
        conn.execute("GRANT USAGE ON SCHEMA etl TO vital_etl_reader")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA etl TO vital_etl_reader")
    yield dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP OWNED BY vital_etl_reader")
        conn.execute("DROP ROLE vital_etl_reader")


def _etl_visible(conn) -> dict:
    return {
        table: sorted(r[0] for r in conn.execute(f"SELECT {col} FROM etl.{table}"))
        for table, col in [("runs", "tenant_slug"), ("quarantine", "tenant_slug"), ("id_map", "tenant_slug")]
    }


def test_an_etl_reader_sees_only_its_tenant(etl_rows):
    with psycopg.connect(etl_rows) as conn:
        assert _etl_visible(conn) == {t: sorted(TENANTS) for t in ("runs", "quarantine", "id_map")}  # the loader
        conn.execute("SET ROLE vital_etl_reader")
        assert _etl_visible(conn) == {"runs": [], "quarantine": [], "id_map": []}
        for tenant in TENANTS:
            conn.execute("SELECT set_config('app.tenant_id', %s, false)", (str(tenant_id(tenant)),))
            assert _etl_visible(conn) == {"runs": [tenant], "quarantine": [tenant], "id_map": [tenant]}
            payloads = [r[0] for r in conn.execute("SELECT payload FROM etl.quarantine")]
            assert payloads == [{"name": tenant}]
        # shared, holding no tenant data
        assert conn.execute("SELECT count(*) FROM etl.embedding_cache").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM etl.schema_migrations").fetchone()[0] > 0


def test_the_jwt_claim_wins_over_app_tenant_id(two_tenant_rows):
    dsn, _ = two_tenant_rows
    with psycopg.connect(dsn) as conn:
        conn.execute("SET ROLE vital_app")
        conn.execute("SELECT set_config('app.tenant_id', %s, false)", (str(tenant_id("digital-health")),))
        claims = json.dumps({"sub": "x", "tenant_id": str(tenant_id("pharma"))})
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))
        assert _visible(conn, "agents") == {tenant_id("pharma"): 1}
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": "x"}),))
        assert _visible(conn, "agents") == {tenant_id("digital-health"): 1}  # no claim: app.tenant_id


@pytest.fixture
def jwt_only_app(two_tenant_rows):
    """vital_app made a member of vital_tenant_from_jwt: it reads the tenant from the JWT only."""
    dsn, _ = two_tenant_rows
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'vital_tenant_from_jwt'").fetchone():
            conn.execute("CREATE ROLE vital_tenant_from_jwt NOLOGIN")
        conn.execute("GRANT vital_tenant_from_jwt TO vital_app")
    yield dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE vital_tenant_from_jwt")


def test_an_application_role_set_to_jwt_only_cannot_choose_its_tenant(jwt_only_app):
    with psycopg.connect(jwt_only_app) as conn:
        conn.execute("SET ROLE vital_app")
        conn.execute("SELECT set_config('app.tenant_id', %s, false)", (str(tenant_id("pharma")),))
        assert _visible(conn, "agents") == {}
        assert conn.execute("SELECT count(*) FROM tenants").fetchone()[0] == 0
        claims = json.dumps({"sub": "x", "tenant_id": str(tenant_id("digital-health"))})
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))
        assert _visible(conn, "agents") == {tenant_id("digital-health"): 1}
