"""bootstrap-schema against real PostgreSQL: idempotent, all-or-nothing per file, and it
refuses a target it cannot apply cleanly to, before changing anything."""

from __future__ import annotations

import shutil

import psycopg
import pytest

from core.errors import ChecksumMismatchError, MigrationError, PreflightError
from core.settings import SCHEMA_DIR
from core.sql import split_statements
from tasks import schema

from conftest import bootstrap

PARAMS = {"embedding_dim": 384}


def catalog_snapshot(dsn: str) -> dict:
    """Everything a re-run could change: objects, columns, policies, ledger, tenant rows."""
    with psycopg.connect(dsn) as conn:
        return {
            "objects": conn.execute(
                """SELECT n.nspname, c.relname, c.relkind FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname IN ('public', 'etl') ORDER BY 1, 2"""
            ).fetchall(),
            "columns": conn.execute(
                """SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default
                   FROM information_schema.columns WHERE table_schema IN ('public', 'etl') ORDER BY 1, 2, 3"""
            ).fetchall(),
            "types": conn.execute(
                "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace ORDER BY 1"
            ).fetchall(),
            "policies": conn.execute("SELECT tablename, policyname, qual FROM pg_policies ORDER BY 1").fetchall(),
            "ledger": conn.execute("SELECT * FROM etl.schema_migrations ORDER BY version").fetchall(),
            "tenants": conn.execute("SELECT * FROM tenants ORDER BY slug").fetchall(),
        }


def user_objects(dsn: str) -> list:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
               UNION ALL SELECT 'schema ' || nspname FROM pg_namespace
               WHERE nspname NOT LIKE 'pg_%%' AND nspname NOT IN ('information_schema', 'public')
               UNION ALL SELECT 'type ' || typname FROM pg_type
               WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'b', 'd')
               UNION ALL SELECT 'extension ' || extname FROM pg_extension WHERE extname <> 'plpgsql'
               ORDER BY 1"""
        ).fetchall()


def test_fresh_database_bootstraps_and_a_second_run_changes_nothing(fresh_dsn):
    applied, tenants = bootstrap(fresh_dsn)
    assert [a["file"] for a in applied] == [m.filename for m in schema.discover()]
    assert tenants == {"digital-health": "inserted", "pharma": "inserted"}
    before = catalog_snapshot(fresh_dsn)

    applied, tenants = bootstrap(fresh_dsn)
    assert applied == []
    assert tenants == {"digital-health": "unchanged", "pharma": "unchanged"}
    assert catalog_snapshot(fresh_dsn) == before


def test_vector_extension_is_created_before_any_file(fresh_dsn):
    bootstrap(fresh_dsn)
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()


def _broken_folder(tmp_path):
    folder = tmp_path / "schema"
    folder.mkdir()
    for name in ("0001_etl_bookkeeping.sql", "0002_enums.sql", "0003_tenants.sql"):
        shutil.copy(SCHEMA_DIR / name, folder / name)
    (folder / "0004_broken.sql").write_text(
        "-- a file that fails half-way\n"
        "CREATE TABLE half_done (id int PRIMARY KEY);\n"
        "INSERT INTO half_done VALUES (1);\n"
        "\n"
        "CREATE TABLE needs_missing_type (x no_such_type);\n"
        "CREATE TABLE never_reached (id int);\n"
    )
    return folder


def test_a_file_that_fails_half_way_leaves_no_trace(fresh_dsn, tmp_path):
    folder = _broken_folder(tmp_path)
    with pytest.raises(MigrationError) as err:
        bootstrap(fresh_dsn, migrations_dir=folder)
    e = err.value
    assert e.file == "0004_broken.sql"
    assert e.line == 5
    assert e.statement == "CREATE TABLE needs_missing_type (x no_such_type)"
    assert str(e).startswith(
        '0004_broken.sql: statement 3 of 4 (line 5) failed: type "no_such_type" does not exist\n'
        "    CREATE TABLE needs_missing_type (x no_such_type)\n"
        "The file's transaction was rolled back"
    )
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        ledger = [r[0] for r in conn.execute("SELECT version FROM etl.schema_migrations ORDER BY 1")]
        assert ledger == [1, 2, 3]

    # fixing the file applies exactly the missing one
    (folder / "0004_broken.sql").write_text("CREATE TABLE half_done (id int PRIMARY KEY);\n")
    applied, _ = bootstrap(fresh_dsn, migrations_dir=folder)
    assert [a["file"] for a in applied] == ["0004_broken.sql"]


def test_an_edited_applied_file_is_refused(fresh_dsn, tmp_path):
    folder = _broken_folder(tmp_path)
    (folder / "0004_broken.sql").unlink()
    bootstrap(fresh_dsn, migrations_dir=folder)
    (folder / "0002_enums.sql").write_text((folder / "0002_enums.sql").read_text() + "\n-- edited\n")
    with pytest.raises(ChecksumMismatchError, match=r"^0002_enums.sql was edited after it was applied"):
        bootstrap(fresh_dsn, migrations_dir=folder)


def test_a_foreign_agents_table_is_refused_and_nothing_is_created(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE agents (id serial PRIMARY KEY, agent_name text)")
        conn.execute("CREATE TYPE agent_status AS ENUM ('on', 'off')")
    before = user_objects(fresh_dsn)
    with pytest.raises(PreflightError) as err:
        bootstrap(fresh_dsn)
    message = str(err.value)
    assert message.startswith("the target already has objects that the pending schema files would create")
    assert "  - type agent_status\n" in message
    assert "  - table agents\n" in message
    assert message.endswith("Nothing was changed.")
    assert user_objects(fresh_dsn) == before


def test_dry_run_plans_and_changes_nothing(fresh_dsn):
    before = user_objects(fresh_dsn)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        plan = schema.preflight(conn, schema.discover(), PARAMS)
    assert [m.filename for m in plan.pending] == [m.filename for m in schema.discover()]
    assert f"pending: {len(schema.discover())} file(s)" in plan.describe()
    assert "vector extension: will be created" in plan.describe()
    assert user_objects(fresh_dsn) == before


def test_changed_embedding_dimension_is_refused(fresh_dsn):
    bootstrap(fresh_dsn)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn, pytest.raises(PreflightError) as err:
        schema.preflight(conn, schema.discover(), {"embedding_dim": 768})
    assert "created with 384 dimensions" in str(err.value)
    assert "now gives 768" in str(err.value)


def test_a_ledger_row_without_its_file_is_refused(fresh_dsn, tmp_path):
    folder = _broken_folder(tmp_path)
    (folder / "0004_broken.sql").unlink()
    bootstrap(fresh_dsn, migrations_dir=folder)
    (folder / "0003_tenants.sql").unlink()
    with pytest.raises(PreflightError, match=r"records 0003_tenants.sql .* not in the schema folder"):
        bootstrap(fresh_dsn, migrations_dir=folder)


def test_non_superuser_without_vector_gets_a_privilege_error(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS vital_limited")
        conn.execute("CREATE ROLE vital_limited NOLOGIN")
        conn.execute("GRANT CREATE ON SCHEMA public TO vital_limited")
        conn.execute("SET ROLE vital_limited")
        with pytest.raises(PreflightError) as err:
            schema.preflight(conn, schema.discover(), PARAMS)
        conn.execute("RESET ROLE")
        conn.execute("REVOKE ALL ON SCHEMA public FROM vital_limited")
        conn.execute("DROP ROLE vital_limited")
    assert str(err.value).startswith("role 'vital_limited' lacks privileges the schema needs: CREATE on the database")
    assert "superuser to run CREATE EXTENSION vector" in str(err.value)


@pytest.mark.parametrize(
    "script, expected",
    [
        ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
        ("SELECT ';'; SELECT 2;", ["SELECT ';'", "SELECT 2"]),
        ("-- c; d\nSELECT 1;", ["SELECT 1"]),
        ("DO $$ BEGIN PERFORM 1; END $$; SELECT 2", ["DO $$ BEGIN PERFORM 1; END $$", "SELECT 2"]),
        (
            "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;",
            ["CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql"],
        ),
        ('SELECT "a;b" FROM t; /* x; */ SELECT 3', ['SELECT "a;b" FROM t', "/* x; */ SELECT 3"]),
        ("SELECT 'it''s; fine'", ["SELECT 'it''s; fine'"]),
    ],
)
def test_split_statements(script, expected):
    assert [s.text for s in split_statements(script)] == expected
