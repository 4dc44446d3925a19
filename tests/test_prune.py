"""Pruning rows the sources no longer have (tasks/prune.py), on the bundled sample migrated
once for real: hard delete with links and chunks, soft delete under Row Level Security and
back, the guard against a truncated export, and what is never removed."""

from __future__ import annotations

import json
import shutil
import uuid
from types import SimpleNamespace

import psycopg
import pytest
from prefect import flow
from psycopg import sql

from core.catalogue import ENTITY_NAMES, JUNCTIONS
from core.errors import PruneRefused
from core.identity import tenant_id
from sources import sample
from sources.manifest import DEFAULT_MANIFEST
from tasks.prune import (
    check_guard,
    deletions,
    guard_prune,
    load_max_delete_ratio,
    planned_deletions,
    prune_rows,
    source_ids,
    totals,
)

from conftest import bootstrap

TENANT = "pharma"
TID = str(tenant_id(TENANT))
_BASE: dict = {}


def db_hashes(dsn: str) -> dict[str, str]:
    """md5 of every table of the public and etl schemas, rows in a fixed order."""
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN ('public', 'etl') ORDER BY 1, 2"
        ).fetchall()
        return {
            f"{s}.{t}": conn.execute(
                sql.SQL("SELECT md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) FROM {}.{} x").format(
                    sql.Identifier(s), sql.Identifier(t)
                )
            ).fetchone()[0]
            for s, t in tables
        }


def rows_of(dsn: str, table: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT x::text FROM {} x WHERE tenant_id = %s").format(sql.Identifier(table)), (TID,)
            )
        }


def _manifest(folder) -> str:
    path = folder / "manifest.yaml"
    path.write_text(DEFAULT_MANIFEST.read_text().replace("${VITAL_HOME}/sample", str(folder)))
    return str(path)


def migrated_base(pg_server, tmp_path_factory) -> dict:
    """The sample (files, legacy database) and a target that migrate-tenant loaded once for
    pharma; made once per test session, copied by each test (sample_copy)."""
    if _BASE:
        return _BASE
    from flows.migrate import migrate_tenant

    folder = tmp_path_factory.mktemp("prune-sample")
    s = sample.generate()
    sample.write_files(s, folder)
    source, target = pg_server.dsn("prune_src_base"), pg_server.dsn("prune_tgt_base")
    sample.build_legacy_db(s, source)
    bootstrap(target)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VITAL_SOURCE_DSN", source)
        mp.setenv("VITAL_TARGET_DSN", target)
        summary = migrate_tenant(tenant=TENANT, manifest=_manifest(folder))
    assert summary["verify"]["passed"]
    _BASE.update(folder=folder, source="prune_src_base", target="prune_tgt_base")
    return _BASE


def _copy_db(pg_server, template: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (template,),
        )
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return name


@pytest.fixture
def sample_copy(pg_server, prefect_harness, tmp_path_factory, tmp_path, monkeypatch):
    """The migrated sample for one test: copies of the legacy database and the target; the
    files in their place (the rows' provenance names their paths), restored afterwards."""
    base = migrated_base(pg_server, tmp_path_factory)
    names = [_copy_db(pg_server, base["source"]), _copy_db(pg_server, base["target"])]
    folder, saved = base["folder"], tmp_path / "saved-sample"
    shutil.copytree(folder, saved)
    source, target = pg_server.dsn(names[0]), pg_server.dsn(names[1])
    monkeypatch.setenv("VITAL_SOURCE_DSN", source)
    monkeypatch.setenv("VITAL_TARGET_DSN", target)
    yield SimpleNamespace(source=source, target=target, folder=folder, manifest=str(folder / "manifest.yaml"))
    shutil.rmtree(folder)
    shutil.copytree(saved, folder)
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@flow(name="test-slice", persist_result=False)
def slice_run(tenant: str, manifest: str, entities: list[str] | None = None, decide: bool = False):
    """The first steps of migrate-tenant, as the flow runs them: the tenant's slice, its
    decisions (with plan_vectors: read from the cache, stored nowhere) and whether the run
    covers the whole manifest."""
    from tasks.decide import decide_slice
    from tasks.extract import DEFAULT_BATCH_ROWS, load_inputs, read_tenant_labels, stage_folder
    from tasks.normalize.resolve import slice_tenant
    from tasks.pipeline import extract_and_normalize
    from tasks.plan import plan_vectors
    from tasks.review import load_overrides

    m, rules, wanted = load_inputs(manifest, tenant, entities)
    with stage_folder(None) as folder:
        normalized, _ = extract_and_normalize(m, wanted, rules, read_tenant_labels(m), DEFAULT_BATCH_ROWS, folder)
    part = slice_tenant(normalized, rules.tenants.by_slug(tenant), rules.create_missing)
    decided = decide_slice(part, rules, plan_vectors(), overrides=load_overrides(tenant)) if decide else None
    return SimpleNamespace(part=part, decided=decided, complete=set(wanted) == set(m.entities))


def _linked_agent(dsn: str) -> tuple[str, str]:
    """(id, legacy key) of the legacy database's agent with the most junction rows."""
    with psycopg.connect(dsn) as conn:
        refs = sql.SQL(" + ").join(
            sql.SQL("(SELECT count(*) FROM {} x WHERE x.{} = a.id)").format(sql.Identifier(j.name), sql.Identifier(col))
            for j in JUNCTIONS
            for end, col in ((j.a, j.a_col), (j.b, j.b_col))
            if end == "agents"
        )
        return conn.execute(
            sql.SQL(
                "SELECT id::text, legacy_key FROM agents a WHERE tenant_id = %s "
                "AND metadata -> '_etl' ->> 'source' = 'postgres:public.agents' ORDER BY {} DESC, legacy_key LIMIT 1"
            ).format(refs),
            (TID,),
        ).fetchone()


def _chunked_document(dsn: str) -> tuple[str, str]:
    """(id, legacy key) of the Markdown document with the most chunks."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT d.id::text, d.legacy_key FROM knowledge_documents d JOIN knowledge_chunks c ON c.document_id = d.id
               WHERE d.tenant_id = %s AND d.legacy_key NOT LIKE 'legacy/%%'
               GROUP BY 1, 2 ORDER BY count(*) DESC, 2 LIMIT 1""",
            (TID,),
        ).fetchone()


def _remove_agent_and_document(env) -> tuple[tuple[str, str], tuple[str, str]]:
    agent, doc = _linked_agent(env.target), _chunked_document(env.target)
    with psycopg.connect(env.source) as conn:
        assert conn.execute("DELETE FROM agents WHERE id::text = %s", (agent[1],)).rowcount == 1
    (env.folder / "knowledge" / doc[1]).unlink()
    return agent, doc


def _referencing(dsn: str, agent_id: str, doc_id: str) -> dict[str, set[str]]:
    """Rows (as text) of every junction and of knowledge_chunks that point at the agent or document."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for j in JUNCTIONS:
            cols = [c for end, c in ((j.a, j.a_col), (j.b, j.b_col)) if end == "agents"]
            if cols:
                where = sql.SQL(" OR ").join(sql.SQL("x.{} = %s").format(sql.Identifier(c)) for c in cols)
                out[j.name] = {
                    r[0]
                    for r in conn.execute(
                        sql.SQL("SELECT x::text FROM {} x WHERE {}").format(sql.Identifier(j.name), where),
                        [agent_id] * len(cols),
                    )
                }
        out["knowledge_chunks"] = {
            r[0] for r in conn.execute("SELECT x::text FROM knowledge_chunks x WHERE document_id = %s", (doc_id,))
        }
    return {t: rows for t, rows in out.items() if rows}


def test_the_default_max_delete_ratio_is_in_the_rules():
    assert load_max_delete_ratio() == 0.1


def test_a_hard_prune_removes_exactly_the_rows_the_sources_lost_with_their_links_and_chunks(sample_copy):
    env = sample_copy
    (agent_id, _), (doc_id, _) = _remove_agent_and_document(env)
    linked = _referencing(env.target, agent_id, doc_id)
    assert len(linked) >= 3 and len(linked["knowledge_chunks"]) >= 2  # links of several junctions, chunks
    tables = [*ENTITY_NAMES, "knowledge_chunks", *(j.name for j in JUNCTIONS)]
    before = {t: rows_of(env.target, t) for t in tables}

    run = slice_run(TENANT, env.manifest)
    with psycopg.connect(env.target, autocommit=True) as conn:
        gone = planned_deletions(conn, TENANT, TID, source_ids(run.part), soft=False, max_ratio=0.2)
        assert {e: ids for e, ids in gone.items() if ids} == {"agents": [agent_id], "knowledge_documents": [doc_id]}
        removed = prune_rows(conn, TID, gone, soft=False)
    assert removed == {"agents": 1, "knowledge_documents": 1} | {t: len(rows) for t, rows in linked.items()}

    after = {t: rows_of(env.target, t) for t in tables}
    for table in tables:
        lost = before[table] - after[table]
        assert after[table] <= before[table], table  # nothing added or changed
        if table == "agents":
            assert len(lost) == 1 and agent_id in lost.pop()
        elif table == "knowledge_documents":
            assert len(lost) == 1 and doc_id in lost.pop()
        else:
            assert lost == linked.get(table, set()), table


def test_a_soft_prune_hides_the_rows_from_rls_readers_keeps_them_for_the_owner_and_a_reload_brings_them_back(
    sample_copy,
):
    from tasks.load import load_rows
    from tasks.prepare import rows_for_load

    env = sample_copy
    with psycopg.connect(env.source) as conn:
        agent_key = _linked_agent(env.target)[1]
        saved = conn.execute("SELECT * FROM agents WHERE id::text = %s", (agent_key,)).fetchone()
        columns = [d.name for d in conn.execute("SELECT * FROM agents LIMIT 0").description]
    (agent_id, _), (doc_id, _) = _remove_agent_and_document(env)
    linked = _referencing(env.target, agent_id, doc_id)
    run = slice_run(TENANT, env.manifest)
    with psycopg.connect(env.target, autocommit=True) as conn:
        gone = planned_deletions(conn, TENANT, TID, source_ids(run.part), soft=True, max_ratio=0.2)
        removed = prune_rows(conn, TID, gone, soft=True)
        assert removed == {"agents": 1, "knowledge_documents": 1} | {t: len(rows) for t, rows in linked.items()}
        # a second soft prune finds nothing left to hide
        assert not any(planned_deletions(conn, TENANT, TID, source_ids(run.part), soft=True).values())
        # the owner (the loader) keeps the rows, marked
        assert conn.execute("SELECT deleted_at IS NOT NULL FROM agents WHERE id = %s", (agent_id,)).fetchone() == (
            True,
        )
        hidden_chunks = conn.execute(
            "SELECT count(*) FROM knowledge_chunks WHERE document_id = %s AND deleted_at IS NOT NULL", (doc_id,)
        ).fetchone()[0]
        assert hidden_chunks == len(linked["knowledge_chunks"])

    def reader_sees(ids: list[str]) -> dict:
        with psycopg.connect(env.target) as conn:
            conn.execute("SET ROLE vital_prune_reader")
            conn.execute("SELECT set_config('app.tenant_id', %s, false)", (TID,))
            return {
                "agents": conn.execute("SELECT count(*) FROM agents WHERE id = ANY(%s::uuid[])", (ids,)).fetchone()[0],
                "all_agents": conn.execute("SELECT count(*) FROM agents").fetchone()[0],
                "links": conn.execute(
                    "SELECT count(*) FROM agent_capabilities WHERE agent_id = ANY(%s::uuid[])", (ids,)
                ).fetchone()[0],
                "document": conn.execute(
                    "SELECT count(*) FROM knowledge_documents WHERE id = %s", (doc_id,)
                ).fetchone()[0],
                "chunks": conn.execute(
                    "SELECT count(*) FROM knowledge_chunks WHERE document_id = %s", (doc_id,)
                ).fetchone()[0],
            }

    with psycopg.connect(env.target, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS vital_prune_reader")
        conn.execute("CREATE ROLE vital_prune_reader NOLOGIN")
        conn.execute("GRANT USAGE ON SCHEMA public TO vital_prune_reader")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO vital_prune_reader")
    try:
        seen = reader_sees([agent_id])
        assert seen == {"agents": 0, "all_agents": 35, "links": 0, "document": 0, "chunks": 0}

        # the agent is in the sources again: the loader's upsert (deleted_at NULL) brings it back, links too
        with psycopg.connect(env.source) as conn:
            conn.execute(
                sql.SQL("INSERT INTO agents ({}) VALUES ({})").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)),
                    sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                ),
                saved,
            )
        again = slice_run(TENANT, env.manifest)
        agents = [r | {"deleted_at": None} for r in rows_for_load(again.part.entities["agents"].rows)]
        links = [r | {"deleted_at": None} for r in again.part.junctions["agent_capabilities"].to_dicts()]
        assert any(r["id"] == agent_id for r in agents)
        load_rows(env.target, "agents", agents)
        load_rows(env.target, "agent_capabilities", links)
        seen = reader_sees([agent_id])
        assert seen["agents"] == 1 and seen["all_agents"] == 36
        assert seen["links"] == len(linked["agent_capabilities"])
    finally:
        with psycopg.connect(env.target, autocommit=True) as conn:
            conn.execute("DROP OWNED BY vital_prune_reader")
            conn.execute("DROP ROLE vital_prune_reader")


def test_a_hard_prune_also_removes_what_a_soft_prune_hid(sample_copy):
    env = sample_copy
    (agent_id, _), (doc_id, _) = _remove_agent_and_document(env)
    run = slice_run(TENANT, env.manifest)
    ids = source_ids(run.part)
    with psycopg.connect(env.target, autocommit=True) as conn:
        prune_rows(conn, TID, planned_deletions(conn, TENANT, TID, ids, soft=True, max_ratio=0.2), soft=True)
        gone = planned_deletions(conn, TENANT, TID, ids, soft=False, max_ratio=0.2)
        assert {e: v for e, v in gone.items() if v} == {"agents": [agent_id], "knowledge_documents": [doc_id]}
        removed = prune_rows(conn, TID, gone, soft=False)
        assert removed["agents"] == removed["knowledge_documents"] == 1
        assert (
            conn.execute("SELECT count(*) FROM knowledge_chunks WHERE document_id = %s", (doc_id,)).fetchone()[0] == 0
        )


def test_an_export_cut_to_half_its_rows_is_refused_before_anything_is_written(sample_copy):
    env = sample_copy
    csv_file = env.folder / "exports" / "prompts_dashboard.csv"
    with psycopg.connect(env.target) as conn:
        total = conn.execute("SELECT count(*) FROM prompts WHERE tenant_id = %s", (TID,)).fetchone()[0]
    with psycopg.connect(env.source) as conn:
        legacy = conn.execute("SELECT count(*) FROM prompts").fetchone()[0]
        conn.execute("DELETE FROM prompts WHERE ctid IN (SELECT ctid FROM prompts ORDER BY 1 LIMIT %s)", (legacy // 2,))
    before = db_hashes(env.target)
    run = slice_run(TENANT, env.manifest)
    with psycopg.connect(env.target, autocommit=True) as conn:
        lost = len(deletions(conn, TENANT, TID, source_ids(run.part))["prompts"])
    assert lost >= total * 0.3
    needed = -(-lost * 100 // total) / 100  # the ratio rounded up to a hundredth
    with pytest.raises(PruneRefused) as refused:
        guard_prune.fn(TENANT, TID, source_ids(run.part), soft=False)
    assert str(refused.value) == (
        f"prune refused: the run would remove prompts {lost} of {total} rows ({lost / total:.0%}) of pharma, "
        "more than max_delete_ratio 0.1 allows (rules/prune.yaml). Nothing was written. If the sources really no "
        f"longer have these rows, run again with max_delete_ratio={needed:g} (vital-etl migrate --max-delete-ratio "
        f"{needed:g}); otherwise check the sources of prompts (an empty or truncated export?)"
    )
    assert refused.value.over == {"prompts": (lost, total)} and refused.value.max_ratio == 0.1
    assert db_hashes(env.target) == before
    # the override named in the message lets it through
    assert len(guard_prune.fn(TENANT, TID, source_ids(run.part), soft=False, max_ratio=needed)["prompts"]) == lost
    assert csv_file.exists()


def test_rows_vital_etl_did_not_make_and_rows_that_failed_validation_are_never_removed(sample_copy):
    env = sample_copy
    tools_file = env.folder / "exports" / "tools.json"
    tools = json.loads(tools_file.read_text())
    tools[1]["name"] = None  # still in the export, now quarantined: not gone
    tools_file.write_text(json.dumps(tools))
    stranger = str(uuid.uuid4())
    with psycopg.connect(env.target) as conn:  # a row someone else put into the tenant: not in etl.id_map
        conn.execute(
            "INSERT INTO tools (id, tenant_id, legacy_key, name) VALUES (%s, %s, 'hand-made', 'Hand made')",
            (stranger, TID),
        )
    run = slice_run(TENANT, env.manifest)
    assert run.part.entities["tools"].quarantined["legacy_key"].to_list() == [tools[1]["slug"]]
    with psycopg.connect(env.target, autocommit=True) as conn:
        gone = deletions(conn, TENANT, TID, source_ids(run.part))
        assert not any(gone.values())
        assert totals(conn, TID, ["tools"]) == {"tools": 6}


@pytest.mark.parametrize(
    ("gone", "total", "ratio", "refused"),
    [
        ({"tools": ["a"]}, {"tools": 10}, 0.1, False),  # exactly the ratio passes
        ({"tools": ["a", "b"]}, {"tools": 10}, 0.1, True),
        ({"tools": ["a"]}, {"tools": 1}, 1.0, False),
        ({"tools": ["a"]}, {"tools": 10}, 0.0, True),
        ({"tools": []}, {"tools": 0}, 0.0, False),
    ],
)
def test_the_guard_compares_each_entity_with_its_rows(gone, total, ratio, refused):
    if refused:
        with pytest.raises(PruneRefused):
            check_guard(gone, total, ratio)
    else:
        check_guard(gone, total, ratio)
