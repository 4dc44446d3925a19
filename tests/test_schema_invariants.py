"""The schema's promises, read back from the catalog of a bootstrapped database."""

from __future__ import annotations

import psycopg

from core import catalogue
from core.settings import model_spec

JUNCTIONS = {j.name for j in catalogue.JUNCTIONS}
CATALOGUE = set(catalogue.CATALOGUE_TABLES)
SEARCHABLE = set(catalogue.SEARCHABLE)


def _columns(conn, table):
    return {
        name: (typ, notnull)
        for name, typ, notnull in conn.execute(
            """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
               FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped""",
            (table,),
        )
    }


def test_every_catalogue_and_junction_table_is_tenant_scoped(target_dsn):
    with psycopg.connect(target_dsn) as conn:
        public = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert CATALOGUE | JUNCTIONS | {"tenants"} == public
        for table in CATALOGUE | JUNCTIONS:
            cols = _columns(conn, table)
            assert cols["tenant_id"] == ("uuid", True), table
            fk = conn.execute(
                """SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'
                   AND confrelid = 'tenants'::regclass""",
                (table,),
            ).fetchone()[0]
            assert fk == 1, f"{table} has no foreign key to tenants"
        for table in CATALOGUE:
            cols = _columns(conn, table)
            assert cols["legacy_key"] == ("text", True), table
            assert cols["metadata"] == ("jsonb", True), table
            assert cols["id"] == ("uuid", True), table


def test_jtbd_functional_area_is_a_required_enum(target_dsn):
    with psycopg.connect(target_dsn) as conn:
        assert _columns(conn, "jobs_to_be_done")["functional_area"] == ("functional_area_type", True)
        labels = [r[0] for r in conn.execute("SELECT unnest(enum_range(NULL::functional_area_type))::text")]
    assert labels == [
        "Commercial",
        "Medical Affairs",
        "Market Access",
        "Clinical",
        "Regulatory",
        "Research & Development",
        "Manufacturing",
        "Quality",
        "Operations",
        "IT/Digital",
        "Legal",
        "Finance",
        "HR",
        "Business Development",
    ]


def test_exact_enum_labels_from_the_design(target_dsn):
    with psycopg.connect(target_dsn) as conn:

        def labels(t):
            return [r[0] for r in conn.execute(f"SELECT unnest(enum_range(NULL::{t}))::text")]

        assert labels("agent_status") == ["development", "testing", "active", "maintenance", "deprecated", "archived"]
        assert labels("mapping_source_type") == ["manual", "automated", "ml_model", "expert_review"]


def test_vector_columns_have_the_model_dimension(target_dsn):
    dim = model_spec().dim
    assert dim == 384
    with psycopg.connect(target_dsn) as conn:
        for table in SEARCHABLE:
            cols = _columns(conn, table)
            assert cols["embedding"] == (f"vector({dim})", False), table
            assert cols["embedding_model"][0] == "text"
            assert cols["content_sha256"][0] == "text"
        assert _columns(conn, "etl.embedding_cache")["embedding"] == (f"vector({dim})", True)


def test_rls_is_enabled_with_a_policy_on_every_tenant_scoped_table(target_dsn):
    with psycopg.connect(target_dsn) as conn:
        rows = conn.execute(
            """SELECT c.relname, c.relrowsecurity, count(p.oid)
               FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid
               WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
               GROUP BY c.relname, c.relrowsecurity"""
        ).fetchall()
    for name, rls, policies in rows:
        assert rls and policies == 1, name


def test_etl_bookkeeping_tables_exist(target_dsn):
    with psycopg.connect(target_dsn) as conn:
        etl = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'etl'")}
    assert etl == {"schema_migrations", "runs", "quarantine", "embedding_cache", "id_map", "decisions"}
