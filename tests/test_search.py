"""Vector search per tenant under Row Level Security: a tenant that owns 2% of a table still gets
k rows with good recall (pgvector's iterative scan, set by schema/0012_search.sql), per-tenant
partial indexes for small tenants, and the RLS policies in the initplan form."""

from __future__ import annotations

import shutil
import uuid

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql

from core.identity import tenant_id
from core.settings import SCHEMA_DIR
from tasks.search import SearchRules, build_vector_indexes, search_recall

from conftest import bootstrap

ROLE = "vital_search_app"
BIG, SMALL = "pharma", "digital-health"
RULES = SearchRules(below_share=0.2, min_rows=10, sample=20, k=10, min_recall=0.95)


def _clustered(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors around 30 centres, like embeddings of a catalogue's topics."""
    centres = rng.normal(size=(30, 384))
    v = centres[rng.integers(0, 30, n)] + 0.35 * rng.normal(size=(n, 384))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def small_tenant_table(target_dsn):
    """tools: 2,450 rows of pharma, 50 (2%) of digital-health, an HNSW index, a non-owner role."""
    rng = np.random.default_rng(7)
    owners = [BIG] * 2450 + [SMALL] * 50
    vectors = _clustered(len(owners), rng)
    with psycopg.connect(target_dsn) as conn:
        register_vector(conn)
        with (
            conn.cursor() as cur,
            cur.copy("COPY tools (id, tenant_id, legacy_key, name, embedding) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["uuid", "uuid", "text", "text", "vector"])
            for i, (slug, vec) in enumerate(zip(owners, vectors, strict=True)):
                copy.write_row([uuid.uuid4(), tenant_id(slug), f"t{i}", f"tool {i}", vec])
        conn.execute(f"DROP ROLE IF EXISTS {ROLE}")
        conn.execute(f"CREATE ROLE {ROLE} NOLOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
        conn.execute(f"GRANT SELECT ON tools TO {ROLE}")
    build_vector_indexes(target_dsn, ["tools"], SearchRules(1.0, 10**9, 1, 10, 0.9))  # the shared index only
    yield target_dsn
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {ROLE}")
        conn.execute(f"DROP ROLE {ROLE}")


def test_a_tenant_with_two_percent_of_a_table_gets_k_rows_with_high_recall(small_tenant_table):
    with psycopg.connect(small_tenant_table) as conn:
        assert conn.execute("SHOW hnsw.iterative_scan").fetchone()[0] == "relaxed_order"
        result = search_recall(conn, "tools", str(tenant_id(SMALL)), ROLE, RULES)
    assert result["queries"] == 20 and result["short"] == 0
    assert result["recall"] >= 0.95


def test_without_the_search_settings_the_small_tenant_falls_short(small_tenant_table):
    """The failure the settings fix: the scan's candidates are mostly another tenant's rows."""
    with psycopg.connect(small_tenant_table) as conn:
        conn.execute("SET hnsw.iterative_scan = off")
        conn.execute("SET hnsw.ef_search = 40")
        result = search_recall(conn, "tools", str(tenant_id(SMALL)), ROLE, RULES)
    assert result["short"] >= 15
    assert result["recall"] < 0.5


def test_a_small_tenant_gets_its_own_partial_index_used_by_queries_naming_it(small_tenant_table):
    made = build_vector_indexes(small_tenant_table, ["tools"], RULES)
    small = str(tenant_id(SMALL))
    assert made == [f"tools_embedding_hnsw_{small[:8]}"]
    assert build_vector_indexes(small_tenant_table, ["tools"], RULES) == []  # kept, not rebuilt
    with psycopg.connect(small_tenant_table) as conn:
        vec = conn.execute("SELECT embedding FROM tools WHERE tenant_id = %s LIMIT 1", (small,)).fetchone()[0]
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                sql.SQL("EXPLAIN SELECT id FROM tools WHERE tenant_id = {} ORDER BY embedding <=> %s LIMIT 10").format(
                    sql.Literal(small)
                ),
                (vec,),
            )
        )
    assert f"tools_embedding_hnsw_{small[:8]}" in plan


def test_the_policy_migration_upgrades_a_database_bootstrapped_before_it(fresh_dsn, tmp_path):
    older = tmp_path / "schema"
    older.mkdir()
    for path in SCHEMA_DIR.glob("*.sql"):
        if int(path.name[:4]) < 12:
            shutil.copy(path, older / path.name)
    bootstrap(fresh_dsn, migrations_dir=older)
    with psycopg.connect(fresh_dsn) as conn:
        before = [r[0] for r in conn.execute("SELECT qual FROM pg_policies WHERE qual LIKE '%current_tenant_id()%'")]
    assert before and not any("SELECT current_tenant_id()" in q for q in before)

    applied, _ = bootstrap(fresh_dsn)
    assert [a["file"] for a in applied][0] == "0012_search.sql"  # and the files after it
    with psycopg.connect(fresh_dsn) as conn:
        after = dict(
            conn.execute(
                "SELECT schemaname || '.' || tablename || '.' || policyname, qual FROM pg_policies "
                "WHERE qual LIKE '%current_tenant_id()%'"
            )
        )
        conn.execute(f"CREATE ROLE {ROLE} NOLOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
        conn.execute(f"GRANT SELECT ON agents TO {ROLE}")
        conn.execute(f"SET ROLE {ROLE}")  # the owner bypasses RLS: plan as an application role
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT * FROM agents"))
        conn.rollback()
    assert len(after) == len(before)
    assert all("SELECT current_tenant_id()" in q for q in after.values()), after
    assert "InitPlan" in plan
