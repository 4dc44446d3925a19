"""The real VITAL exports (../shared/vital) migrated end to end for both tenants, with the
real embedding model: verify passes, and similarity search finds the right agent."""

from __future__ import annotations

import psycopg
import pytest
from pgvector.psycopg import register_vector
from test_vital_dry_run import MANIFEST

from core.identity import tenant_id
from core.settings import model_spec
from flows.migrate import migrate_tenant
from flows.verify import verify_tenant
from tasks.model import encode

from conftest import SHARED_VITAL, bootstrap
from test_migrate_sample import contents

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_VITAL.is_dir(), reason="../shared/vital is not beside this checkout"),
]


@pytest.fixture(scope="module")
def migrated(pg_server, prefect_harness):
    dsn = pg_server.dsn("vital_e2e")
    bootstrap(dsn)
    mp = pytest.MonkeyPatch()
    mp.setenv("VITAL_TARGET_DSN", dsn)
    runs = {t: migrate_tenant(tenant=t, manifest=str(MANIFEST)) for t in ("pharma", "digital-health")}
    yield dsn, runs
    mp.undo()


def test_both_tenants_migrate_and_verify(migrated):
    dsn, runs = migrated
    for tenant, summary in runs.items():
        assert summary["reconciled"], tenant
        assert summary["verify"]["passed"], [c for c in summary["verify"]["checks"] if not c["passed"]]
        assert verify_tenant(tenant=tenant)["passed"]
    assert runs["pharma"]["entities"]["agents"]["loaded"] == 8 + 253  # the legacy database's agents too
    assert runs["digital-health"]["entities"]["agents"]["loaded"] == 11
    assert runs["pharma"]["entities"]["prompts"]["loaded"] == 1000
    # the second tenant's texts were already in the content-addressed cache
    assert runs["digital-health"]["entities"]["prompts"]["embedded"] == 0
    assert runs["digital-health"]["entities"]["prompts"]["reused"] == 1000
    for tenant, summary in runs.items():  # k-NN under RLS as a non-owner role vs an exact scan
        recall = {t: r["recall"] for t, r in summary["verify"]["search"].items() if r["queries"]}
        assert {"agents", "prompts", "jobs_to_be_done"} <= set(recall), (tenant, recall)
        assert all(r >= 0.95 for r in recall.values()), (tenant, recall)
        assert not any(r["short"] for r in summary["verify"]["search"].values()), tenant
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM jobs_to_be_done WHERE functional_area IS NULL").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM knowledge_chunks").fetchone()[0] > 1000
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%embedding_hnsw'").fetchone()[0] == 7


def test_knn_finds_a_pharmacovigilance_agent_for_pharma(migrated):
    dsn, _ = migrated
    query = encode(model_spec(), ["pharmacovigilance signal detection in adverse event reports"])[0]
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        rows = conn.execute(
            """SELECT display_name, description, functional_area FROM agents WHERE tenant_id = %s
               ORDER BY embedding <=> %s LIMIT 3""",
            (str(tenant_id("pharma")), query),
        ).fetchall()
    name, description, area = rows[0]
    text = f"{name} {description}".lower()
    assert any(w in text for w in ("pharmacovigilance", "signal", "safety", "adverse")), rows
    assert area == "Regulatory"


def test_a_second_run_embeds_nothing_and_changes_nothing(migrated):
    dsn, _ = migrated
    before = contents(dsn, "pharma")
    again = migrate_tenant(tenant="pharma", manifest=str(MANIFEST))
    assert sum(c["embedded"] for c in again["entities"].values()) == 0
    assert contents(dsn, "pharma") == before


def test_what_the_target_holds_is_what_the_sources_say(migrated):
    """Issue 12 in the target itself: legacy metadata beside the loader's provenance, raw enum
    spellings, typed metadata, byte-identical prompt bodies, unresolved codes on their row."""
    dsn, _ = migrated
    pharma = str(tenant_id("pharma"))
    with psycopg.connect(dsn) as conn:

        def one(sql: str):
            return conn.execute(sql, (pharma,)).fetchone()[0]

        # the 127 JTBDs of the library in both tenants: 145 rows, each with its legacy source
        assert (
            conn.execute(
                "SELECT count(*) FROM jobs_to_be_done WHERE metadata->>'source' IN "
                "('Persona Master Catalogue v6.0', 'Digital Health JTBD Library Complete.md') "
                "AND metadata->'_etl'->>'source' LIKE '%jtbd_library.json'"
            ).fetchone()[0]
            == 145
        )
        assert one("SELECT count(*) FROM prompts WHERE tenant_id = %s AND right(body, 1) = E'\\n'") == 159
        assert (
            one(
                "SELECT count(*) FROM prompts WHERE tenant_id = %s AND jsonb_typeof(metadata->'usage_count') = 'number' "
                "AND metadata->'rag_enabled' = 'false'::jsonb AND metadata ? 'legacy_complexity'"
            )
            == 1000
        )
        assert (
            one(
                "SELECT sum(jsonb_array_length(metadata->'_etl'->'unresolved'->'Mapped_to_Responsibilities')) "
                "FROM org_roles WHERE tenant_id = %s"
            )
            == 430
        )
        assert one("SELECT count(*) FROM org_departments WHERE tenant_id = %s AND metadata ? 'Department_ID'") == 31
        assert one("SELECT count(*) FROM knowledge_documents WHERE tenant_id = %s AND title !~ '[[:alnum:]]'") == 0


def test_a_plan_of_the_real_data_names_each_change_and_writes_nothing(migrated, monkeypatch):
    """Issue 15: after a full run, a plan with one tool edited, one removed and one added names
    exactly those, with 2 texts to embed, and leaves every table as it was."""
    import polars as pl
    from test_prune import db_hashes, slice_run

    from core.identity import row_id
    from tasks.plan import plan_changes

    dsn, _ = migrated
    monkeypatch.setenv("VITAL_TARGET_DSN", dsn)
    before = db_hashes(dsn)
    run = slice_run("pharma", str(MANIFEST), decide=True)
    same = plan_changes.fn(run.part, run.decided, run.complete)
    assert (same["totals"]["insert"], same["totals"]["update"], same["totals"]["remove"]) == (0, 0, 0)
    assert same["embed"]["texts"] == 0 and not (same["decisions"]["insert"] or same["decisions"]["update"])
    tools = run.part.entities["tools"]
    with psycopg.connect(dsn) as conn:
        linked = {
            r[0]
            for r in conn.execute("SELECT DISTINCT t.legacy_key FROM agent_tools a JOIN tools t ON t.id = a.tool_id")
        }
    edited, removed = [k for k in tools.rows["legacy_key"].to_list() if k not in linked][:2]
    new = tools.rows.filter(pl.col("legacy_key") == edited).with_columns(
        legacy_key=pl.lit("plan-test-tool"),
        id=pl.lit(str(row_id(run.part.tenant.id, "tools", "plan-test-tool"))),
        name=pl.lit("Plan Test Tool"),
        slug=pl.lit("plan-test-tool"),
    )
    tools.rows = pl.concat(
        [
            tools.rows.filter(pl.col("legacy_key") != removed).with_columns(
                description=pl.when(pl.col("legacy_key") == edited)
                .then(pl.lit("Edited for the plan test."))
                .otherwise(pl.col("description"))
            ),
            new,
        ]
    )
    plan = plan_changes.fn(run.part, run.decided, run.complete, True, 1.0)
    t = plan["tables"]["tools"]
    assert t["insert"] == ["plan-test-tool"] and t["remove"] == [removed]
    assert t["update"] == {edited: ["content_sha256", "description", "embedding"]}
    assert (plan["totals"]["insert"], plan["totals"]["update"], plan["totals"]["remove"]) == (1, 1, 1)
    assert plan["embed"]["texts"] == 2
    assert db_hashes(dsn) == before
