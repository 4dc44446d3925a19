"""Rehearse on a copy: the real VITAL Supabase dump restored into the embedded PostgreSQL and
migrated together with the exports; the same database dumped as plain SQL with COPY blocks and
as a pg_dump -Fc archive restores and migrates to the same rows; what the compatibility layer
cannot handle is reported with its line or archive entry."""

from __future__ import annotations

import hashlib
import re
import subprocess
import uuid
from pathlib import Path

import polars as pl
import psycopg
import pytest

from sources import supabase_dump
from sources.manifest import ManifestError, load_manifest
from sources.supabase_dump import RestoreError, pg_tool, restore, restored_copy
from tasks.extract import extract_entity, read_labels
from tasks.normalize import SHAPES
from tasks.normalize.base import normalize_frame
from tasks.normalize.resolve import slice_tenant
from tasks.normalize.rules import load_rules

from conftest import SHARED_VITAL, bootstrap

ROOT = Path(__file__).resolve().parents[1]
DUMP = SHARED_VITAL / "legacy-db"
REHEARSAL = ROOT / "sources" / "manifests" / "vital-rehearsal.yaml"
needs_vital = pytest.mark.skipif(not SHARED_VITAL.is_dir(), reason="../shared/vital is not beside this checkout")

# 140 rows in 10 of the 52 tables of public (../shared/vital/README.md, section 2)
ROWS = {
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


def pg_dump(dsn: str, out: Path, *options: str) -> Path:
    subprocess.run([str(pg_tool("pg_dump")), *options, "-d", dsn, "-f", str(out)], check=True, timeout=120)
    return out


def fingerprint(dsn: str) -> dict[str, str]:
    """Every table of schema public as a hash of its rows in text form, in a fixed order."""
    with psycopg.connect(dsn) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        query = "SELECT md5(coalesce(string_agg(r::text, chr(10) ORDER BY r::text), '')) FROM {} r"
        return {
            t: conn.execute(psycopg.sql.SQL(query).format(psycopg.sql.Identifier("public", t))).fetchone()[0]
            for t in tables
        }


@needs_vital
def test_restore_the_real_dump(pg_server):
    result = restore(pg_server.dsn("postgres"), "restore_check", DUMP / "schema.sql", DUMP / "data.sql")
    assert result.complete, result.describe()
    assert len(result.tables) == 52 and sum(result.tables.values()) == 140
    assert {t: n for t, n in result.tables.items() if n} == ROWS
    assert result.files == ["schema.sql (plain SQL, psql)", "data.sql (plain SQL, psql)"]
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
    manifest = load_manifest(REHEARSAL)
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


@pytest.fixture(scope="module")
def dumps(pg_server, tmp_path_factory) -> dict[str, tuple[Path, Path | None]]:
    """(a) the real dump (schema.sql + data.sql, INSERTs), and that database as restored here
    dumped again: (b) with plain pg_dump (one file, COPY blocks), (c) with pg_dump -Fc, (d) with
    pg_dump -Fc in two files, --schema-only and --data-only."""
    folder = tmp_path_factory.mktemp("dumps")
    assert restore(pg_server.dsn("postgres"), "rehearse_a", DUMP / "schema.sql", DUMP / "data.sql").complete
    copy = pg_server.dsn("rehearse_a")
    return {
        "a": (DUMP / "schema.sql", DUMP / "data.sql"),
        "b": (pg_dump(copy, folder / "vital.sql"), None),
        "c": (pg_dump(copy, folder / "vital.dump", "-Fc"), None),
        "d": (
            pg_dump(copy, folder / "schema.dump", "-Fc", "--schema-only"),
            pg_dump(copy, folder / "data.dump", "-Fc", "--data-only"),
        ),
    }


@needs_vital
def test_the_same_database_dumped_with_copy_blocks_or_as_an_archive_restores_the_same(pg_server, dumps):
    assert "COPY public.agents " in dumps["b"][0].read_text()
    assert dumps["c"][0].read_bytes()[:5] == b"PGDMP"
    results, prints = {}, {}
    for fmt, (schema, data) in dumps.items():
        results[fmt] = restore(pg_server.dsn("postgres"), f"restore_{fmt}", schema, data)
        prints[fmt] = fingerprint(pg_server.dsn(f"restore_{fmt}"))
    for fmt, result in results.items():
        assert result.complete, result.describe()
        assert len(result.tables) == 52 and sum(result.tables.values()) == 140, fmt
        assert {t: n for t, n in result.tables.items() if n} == ROWS, fmt
        assert prints[fmt] == prints["a"], fmt
        with psycopg.connect(pg_server.dsn(f"restore_{fmt}")) as conn:
            assert conn.execute("SELECT count(*) FROM pg_policies WHERE schemaname = 'public'").fetchone()[0] == 111
            assert conn.execute("SELECT extensions.uuid_generate_v4() IS NOT NULL").fetchone()[0]
    assert results["b"].files == ["vital.sql (plain SQL, psql)"]
    assert results["c"].files == ["vital.dump (custom archive, pg_restore)"]
    assert results["d"].files == ["schema.dump (custom archive, pg_restore)", "data.dump (custom archive, pg_restore)"]
    # dumped from a copy, they define the auth / extensions stubs themselves: nothing is left out
    assert results["b"].skipped == results["c"].skipped == results["d"].skipped == []
    assert "the copy is COMPLETE" in results["c"].describe()


@needs_vital
@pytest.mark.slow
def test_the_migration_from_each_format_gives_the_same_rows(pg_server, prefect_harness, dumps, monkeypatch):
    """migrate-tenant (pharma, the rehearsal manifest) from the copy of each dump, each into its
    own target: the targets hold the same rows. Without embeddings (embed=False): the vectors
    come from the same texts, and the model would triple the runtime."""
    from flows.migrate import migrate_tenant

    from test_migrate_sample import contents

    hashes = {}
    for fmt in "abc":
        schema, data = dumps[fmt]
        monkeypatch.setenv("VITAL_DUMP_SCHEMA", str(schema))
        monkeypatch.setenv("VITAL_DUMP_DATA", str(data or ""))  # empty: the dump is one file
        target = pg_server.dsn(f"target_{fmt}_{uuid.uuid4().hex[:6]}")
        bootstrap(target)
        monkeypatch.setenv("VITAL_TARGET_DSN", target)
        summary = migrate_tenant(tenant="pharma", manifest=str(REHEARSAL), embed=False)
        assert summary["reconciled"] and summary["verify"]["passed"], fmt
        assert summary["entities"]["agents"]["loaded"] == 8 + 253, fmt
        rows = contents(target, "pharma")
        assert sum(len(r) for r in rows.values()) > 1000
        hashes[fmt] = {t: hashlib.sha256(repr(r).encode()).hexdigest() for t, r in rows.items()}
    assert hashes["b"] == hashes["a"]
    assert hashes["c"] == hashes["a"]


def test_a_statement_the_compatibility_layer_cannot_handle_is_reported(pg_server, tmp_path):
    schema = tmp_path / "schema.sql"
    schema.write_text(
        'CREATE EXTENSION IF NOT EXISTS "pg_net" WITH SCHEMA "extensions";\n'
        'CREATE EXTENSION IF NOT EXISTS "postgis" WITH SCHEMA "extensions";\n'
        "CREATE TABLE public.sites (id uuid DEFAULT extensions.uuid_generate_v4() PRIMARY KEY, name text);\n"
        "-- a comment\n"
        "CREATE TABLE public.shapes (\n"
        "    id int,\n"
        "    area extensions.geometry\n"
        ");\n"
        "GRANT ALL ON TABLE public.sites TO anon;\n"
    )
    data = tmp_path / "data.sql"
    data.write_text("INSERT INTO public.sites (name) VALUES ('a'), ('b');\n")
    result = restore(pg_server.dsn("postgres"), "restore_bad", schema, data)
    assert not result.complete
    assert [(f["file"], f["line"], f["statement"], f["error"]) for f in result.failed] == [
        (
            "schema.sql",
            2,
            'CREATE EXTENSION IF NOT EXISTS "postgis" WITH SCHEMA "extensions";',
            'extension "postgis" is not available',
        ),
        (
            "schema.sql",
            5,
            "CREATE TABLE public.shapes (\n    id int,\n    area extensions.geometry\n);",
            'type "extensions.geometry" does not exist',
        ),
    ]
    assert result.tables == {"sites": 2}
    text = result.describe()
    assert "the copy is INCOMPLETE" in text and "FAILED schema.sql:2" in text and "skipped: schema.sql:1" in text


def test_copy_blocks_restore_and_a_bad_row_is_reported_with_its_line(pg_server, tmp_path):
    dump = tmp_path / "dump.sql"
    dump.write_text(
        "CREATE TABLE public.t (id int PRIMARY KEY, name text);\n"  # 1
        "COPY public.t (id, name) FROM stdin;\n"  # 2
        "1\ta;b 'quoted\n"
        "2\t\\N\n"
        "\\.\n"
        "CREATE TABLE public.u (id int);\n"  # 6
        "COPY public.u (id) FROM stdin;\n"  # 7
        "1\n"
        "x\n"  # 9: not an integer
        "\\.\n"
        "INSERT INTO public.t VALUES (3, 'c');\n"
    )
    result = restore(pg_server.dsn("postgres"), "restore_copy", dump)
    assert result.tables == {"t": 3, "u": 0}
    assert result.failed == [
        {
            "file": "dump.sql",
            "line": 7,
            "statement": "COPY public.u (id) FROM stdin;",
            "error": 'invalid input syntax for type integer: "x" (the row on line 9)',
        }
    ]
    assert (result.statements, result.applied) == (5, 4)
    with psycopg.connect(pg_server.dsn("restore_copy")) as conn:
        assert conn.execute("SELECT name FROM public.t ORDER BY id").fetchall() == [("a;b 'quoted",), (None,), ("c",)]
    assert "FAILED dump.sql:7: invalid input syntax" in result.describe()


def test_the_dumps_own_backslash_commands_are_refused_and_reported(pg_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dump = tmp_path / "dump.sql"
    dump.write_text(
        "CREATE TABLE public.t (id int);\n\\connect postgres\n\\! touch pwned\nINSERT INTO public.t VALUES (1);\n"
    )
    result = restore(pg_server.dsn("postgres"), "restore_meta", dump)
    assert result.tables == {"t": 1}  # restored into the copy, not into database postgres
    assert [(f["line"], f["statement"]) for f in result.failed] == [(2, "\\connect postgres"), (3, "\\! touch pwned")]
    assert {f["error"] for f in result.failed} == {"backslash commands are restricted; only \\unrestrict is allowed"}
    assert not (tmp_path / "pwned").exists()


def test_what_an_archive_cannot_restore_is_reported_with_its_entry(pg_server, tmp_path):
    """A -Fc archive whose owner role is gone and whose rows break a check that changed after
    they were written: each failure names its archive entry, statement and error."""
    source = pg_server.dsn(f"src_{uuid.uuid4().hex[:8]}")
    owner = f"legacy_owner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {owner} NOLOGIN")
        conn.execute("CREATE FUNCTION public.ok(t text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true'")
        conn.execute("CREATE DOMAIN public.name_text AS text CHECK (public.ok(VALUE))")
        conn.execute("CREATE TABLE public.sites (id int PRIMARY KEY, name public.name_text)")
        conn.execute(f"ALTER TABLE public.sites OWNER TO {owner}")
        conn.execute("INSERT INTO public.sites VALUES (1, 'a'), (2, 'bad')")
        conn.execute(
            "CREATE OR REPLACE FUNCTION public.ok(t text) RETURNS boolean LANGUAGE sql IMMUTABLE "
            "AS $$ SELECT t <> 'bad' $$"
        )
    archive = pg_dump(source, tmp_path / "sites.dump", "-Fc")
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(f"REASSIGN OWNED BY {owner} TO postgres")
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP ROLE {owner}")
    result = restore(pg_server.dsn("postgres"), "restore_archive_bad", archive)
    assert not result.complete
    failures = [(f["entry"].split(": ", 1)[1], f["statement"], f["error"]) for f in result.failed]
    assert failures == [
        (
            f"TABLE public sites {owner}",
            f"ALTER TABLE public.sites OWNER TO {owner};",
            f'role "{owner}" does not exist',
        ),
        (
            f"TABLE DATA public sites {owner}",
            f"(data of TABLE DATA public sites {owner})",
            'value for domain public.name_text violates check constraint "name_text_check" '
            '(COPY sites, line 2, column name: "bad")',
        ),
    ]
    assert result.tables == {"sites": 0}
    text = result.describe()
    assert "the copy is INCOMPLETE" in text and "FAILED sites.dump (archive entry " in text


def test_an_archives_supabase_only_extension_is_left_out_of_the_restore_list(pg_server, tmp_path, monkeypatch):
    """pg_restore -l lists the archive and -L restores all but the entries of an extension the
    embedded server lacks. No such extension can be installed here, so `vector` stands in for
    one: it is named Supabase-only for this test."""
    source = pg_server.dsn(f"src_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
        conn.execute("COMMENT ON EXTENSION vector IS 'vectors'")
        conn.execute("CREATE TABLE public.notes (id int, body text)")
        conn.execute("INSERT INTO public.notes VALUES (1, 'x')")
    archive = pg_dump(source, tmp_path / "notes.dump", "-Fc")
    monkeypatch.setattr(supabase_dump, "SKIPPED_EXTENSIONS", supabase_dump.SKIPPED_EXTENSIONS | {"vector"})
    result = restore(pg_server.dsn("postgres"), "restore_archive_skip", archive)
    assert result.complete, result.describe()
    assert [re.sub(r"entry \d+", "entry N", s) for s in result.skipped] == [
        "notes.dump: archive entry N: CREATE EXTENSION vector (Supabase-only; not available here)",
        "notes.dump: archive entry N: COMMENT ON EXTENSION vector (Supabase-only; not available here)",
    ]
    assert result.tables == {"notes": 1}
    with psycopg.connect(pg_server.dsn("restore_archive_skip")) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone()[0] == 0


def test_an_archive_and_a_plain_file_over_the_compatibility_layer(pg_server, tmp_path):
    """Schema and data in two files of different formats: an archive, then plain SQL whose
    Supabase-only extension is left out and whose policy uses auth.uid() of the layer."""
    source = pg_server.dsn(f"src_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.notes (id int, owner uuid, body text)")
        conn.execute("INSERT INTO public.notes VALUES (1, NULL, 'x')")
    archive = pg_dump(source, tmp_path / "notes.dump", "-Fc")
    policy = tmp_path / "policy.sql"
    policy.write_text(
        'CREATE EXTENSION IF NOT EXISTS "pg_net" WITH SCHEMA "extensions";\n'
        "ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;\n"
        "CREATE POLICY mine ON public.notes USING (owner = auth.uid());\n"
    )
    result = restore(pg_server.dsn("postgres"), "restore_two_formats", archive, policy)
    assert result.complete, result.describe()
    assert result.skipped == ["policy.sql:1: CREATE EXTENSION pg_net (Supabase-only; not available here)"]
    assert result.tables == {"notes": 1}
    assert result.files == ["notes.dump (custom archive, pg_restore)", "policy.sql (plain SQL, psql)"]


def test_a_missing_dump_and_a_lost_connection_are_one_line_errors_without_the_password(pg_server, tmp_path):
    with pytest.raises(RestoreError, match=r"nowhere\.sql: dump file not found$"):
        restore(pg_server.dsn("postgres"), "restore_missing", tmp_path / "nowhere.sql")
    dump = tmp_path / "dump.sql"
    dump.write_text("CREATE TABLE public.t (id int);\nSELECT pg_terminate_backend(pg_backend_pid());\n")
    # the embedded server trusts its socket, so the password is accepted and ignored
    admin = pg_server.dsn("postgres").replace("postgres:@", "postgres:s3cret@", 1)
    with pytest.raises(RestoreError) as info:
        restore(admin, "restore_lost", dump)
    message = str(info.value)
    assert message.startswith(f"{dump}: psql failed on postgresql://postgres:***@/restore_lost?host=")
    assert message.endswith(
        ": line 2: terminating connection due to administrator command; line 2: connection to server was lost"
    )
    assert "s3cret" not in message and "\n" not in message


def test_a_one_file_dump_in_the_manifest(tmp_path, monkeypatch):
    manifest = tmp_path / "m.yaml"
    (tmp_path / "legacy.dump").write_bytes(b"PGDMP")
    manifest.write_text(
        "entities:\n  agents:\n"
        '    - {kind: supabase_dump, schema: legacy.dump, data: "${VITAL_DUMP_DATA}", table: public.agents}\n'
    )
    monkeypatch.setenv("VITAL_DUMP_DATA", "")
    spec = load_manifest(manifest).entities["agents"][0]
    assert (spec.dump_schema, spec.dump_data) == (tmp_path / "legacy.dump", None)
    monkeypatch.setenv("VITAL_DUMP_DATA", str(tmp_path / "gone.sql"))
    with pytest.raises(ManifestError, match=r"dump file '\$\{VITAL_DUMP_DATA\}' does not exist"):
        load_manifest(manifest)
