"""Rehearse on a copy: the real VITAL Supabase dump restored into the embedded PostgreSQL and
migrated together with the exports; what the compatibility layer cannot handle is reported."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import psycopg
import pytest

from sources.manifest import load_manifest
from sources.supabase_dump import RestoreError, restore, restored_copy
from tasks.extract import extract_entity, read_labels
from tasks.normalize import SHAPES
from tasks.normalize.base import normalize_frame
from tasks.normalize.resolve import slice_tenant
from tasks.normalize.rules import load_rules

from conftest import SHARED_VITAL

ROOT = Path(__file__).resolve().parents[1]
DUMP = SHARED_VITAL / "legacy-db"
needs_vital = pytest.mark.skipif(not SHARED_VITAL.is_dir(), reason="../shared/vital is not beside this checkout")


@needs_vital
def test_restore_the_real_dump(pg_server):
    result = restore(pg_server.dsn("postgres"), "restore_check", DUMP / "schema.sql", DUMP / "data.sql")
    assert result.complete, result.describe()
    assert len(result.tables) == 52
    assert {t: n for t, n in result.tables.items() if n} == {
        "agent_categories": 9,
        "agents": 8,
        "business_functions": 6,
        "icons": 30,
        "jobs": 3,
        "jtbd_categories": 5,
        "jtbd_core": 3,
        "role_permissions": 64,
        "roles": 6,
        "tools": 6,
    }
    assert sorted(s.split("CREATE EXTENSION ")[1].split(" ")[0] for s in result.skipped) == [
        "pg_graphql",
        "pg_net",
        "pg_stat_statements",
        "pgcrypto",
        "supabase_vault",
        "uuid-ossp",
    ]
    with psycopg.connect(pg_server.dsn("restore_check")) as conn:
        assert conn.execute("SELECT count(*) FROM pg_policies WHERE schemaname = 'public'").fetchone()[0] == 111
        assert conn.execute("SELECT extensions.uuid_generate_v4() IS NOT NULL").fetchone()[0]


@needs_vital
def test_migrating_from_the_copy_and_the_exports_reconciles(pg_server, monkeypatch):
    monkeypatch.setenv("VITAL_DUMP_SCHEMA", str(DUMP / "schema.sql"))
    monkeypatch.setenv("VITAL_DUMP_DATA", str(DUMP / "data.sql"))
    manifest = load_manifest(ROOT / "sources" / "manifests" / "vital-rehearsal.yaml")
    dsn, _ = restored_copy(DUMP / "schema.sql", DUMP / "data.sql")
    assert restored_copy(DUMP / "schema.sql", DUMP / "data.sql") == (dsn, None)  # restored once, then reused
    rules = load_rules()
    labels = {e: read_labels(s, manifest) for e, s in manifest.tenant_labels.items()}
    normalized = {
        e: normalize_frame(e, extract_entity(manifest, e).frame, rules, SHAPES[e], labels=labels.get(e)) for e in SHAPES
    }
    assert (normalized["agents"].read, normalized["tools"].read, normalized["jobs_to_be_done"].read) == (262, 100, 130)
    part = slice_tenant(normalized, rules.tenants.by_slug("pharma"), rules.create_missing)
    for entity, s in part.entities.items():
        assert s.read + s.created == s.loaded + s.quarantined.height + s.skipped, entity
    with psycopg.connect(dsn) as conn:
        legacy_agents = {str(r[0]) for r in conn.execute("SELECT id FROM agents")}
        legacy_jtbd = {str(r[0]) for r in conn.execute("SELECT id FROM jtbd_core")}
    agents = part.entities["agents"].rows.filter(pl.col("legacy_key").is_in(list(legacy_agents)))
    assert agents.height == 8
    caps = part.junctions["agent_capabilities"].filter(pl.col("agent_id").is_in(agents["id"].to_list()))
    assert caps.height >= 16  # every legacy agent has two or more capabilities
    jobs = part.entities["jobs_to_be_done"].rows.filter(pl.col("legacy_key").is_in(list(legacy_jtbd)))
    assert jobs.height == 3
    personas = part.junctions["jtbd_personas"].filter(pl.col("jtbd_id").is_in(jobs["id"].to_list()))
    assert personas.height == 9  # {physicians,nurses,clinical_specialists}, ... : 3 per legacy JTBD
    created = part.entities["personas"].rows.filter(pl.col("legacy_key").str.starts_with("ref:"))
    assert "physicians" in created["name"].to_list()


def test_a_statement_the_compatibility_layer_cannot_handle_is_reported(pg_server, tmp_path):
    schema = tmp_path / "schema.sql"
    schema.write_text(
        'CREATE EXTENSION IF NOT EXISTS "pg_net" WITH SCHEMA "extensions";\n'
        'CREATE EXTENSION IF NOT EXISTS "postgis" WITH SCHEMA "extensions";\n'
        "CREATE TABLE public.sites (id uuid DEFAULT extensions.uuid_generate_v4() PRIMARY KEY, name text);\n"
        "CREATE TABLE public.shapes (id int, area extensions.geometry);\n"
        "GRANT ALL ON TABLE public.sites TO anon;\n"
    )
    data = tmp_path / "data.sql"
    data.write_text("INSERT INTO public.sites (name) VALUES ('a'), ('b');\n")
    result = restore(pg_server.dsn("postgres"), "restore_bad", schema, data)
    assert not result.complete
    assert [(f["line"], f["error"]) for f in result.failed] == [
        (2, 'extension "postgis" is not available'),
        (4, 'type "extensions.geometry" does not exist'),
    ]
    assert result.tables == {"sites": 2}
    text = result.describe()
    assert "the copy is INCOMPLETE" in text and "FAILED schema.sql:2" in text and "skipped: schema.sql:1" in text


def test_a_dump_with_copy_blocks_is_a_clear_error(pg_server, tmp_path):
    schema = tmp_path / "schema.sql"
    schema.write_text("CREATE TABLE t (id int);\nCOPY public.t (id) FROM stdin;\n1\n\\.\n")
    with pytest.raises(RestoreError, match=r"has COPY \.\.\. FROM stdin blocks; dump the data with --inserts"):
        restore(pg_server.dsn("postgres"), "restore_copy", schema)
