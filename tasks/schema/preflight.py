"""Preflight: everything that can be known before changing anything (server version, pgvector,
privileges, the ledger, objects left by other tools). Changes nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.connections import connect, target_dsn
from core.errors import ChecksumMismatchError, PreflightError
from core.retry import IO_RETRIES
from core.settings import model_spec
from tasks.schema.apply import Applied, applied
from tasks.schema.files import Migration, discover

MIN_SERVER_VERSION = 150000
_CREATE = re.compile(
    r"^\s*CREATE\s+(OR\s+REPLACE\s+)?(?:UNIQUE\s+)?"
    r"(TABLE|TYPE|FUNCTION|VIEW|INDEX|SEQUENCE|SCHEMA)\s+(IF\s+NOT\s+EXISTS\s+)?"
    r"((?:\"?\w+\"?\.)?\"?\w+\"?)",
    re.I,
)

VECTOR_MISSING = (
    "the target database has no 'vector' extension available (pg_available_extensions has no "
    "'vector'), so the schema's embedding columns cannot be created; nothing was changed. "
    "On Supabase enable it in Database -> Extensions -> vector; on your own PostgreSQL install "
    "pgvector for this server version (e.g. the Debian/Ubuntu package postgresql-{major}-pgvector, "
    "or build it from github.com/pgvector/pgvector), then run bootstrap-schema again. "
    "Unset VITAL_TARGET_DSN to use the embedded PostgreSQL, which ships pgvector."
)


@dataclass
class Plan:
    server_version: str
    vector: str  # "installed (0.8.5) in schema public" / "will be created in schema X"
    vector_schema: str | None
    params: dict
    applied: list[Applied]
    pending: list[Migration]
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"server: PostgreSQL {self.server_version}",
            f"vector extension: {self.vector}",
            f"applied: {len(self.applied)} file(s)",
        ]
        lines += [f"  {a.version:04d}_{a.name}.sql (applied {a.applied_at})" for a in self.applied]
        lines.append(f"pending: {len(self.pending)} file(s)" + ("" if self.pending else ", nothing to do"))
        lines += [f"  {m.filename}" for m in self.pending]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def preflight(conn: psycopg.Connection, migrations: list[Migration], params: dict) -> Plan:
    """Everything that can be known before changing anything. Raises PreflightError or
    ChecksumMismatchError with a message that names the problem and the fix."""
    version_num = int(conn.execute("SHOW server_version_num").fetchone()[0])
    server_version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    if version_num < MIN_SERVER_VERSION:
        raise PreflightError(
            f"the target runs PostgreSQL {server_version}; vital-etl needs PostgreSQL 15 or later. Nothing was changed."
        )

    installed = conn.execute(
        "SELECT e.extversion, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"
    ).fetchone()
    if installed:
        vector, vector_schema = f"installed ({installed[0]}) in schema {installed[1]}", installed[1]
    else:
        available = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        if not available:
            raise PreflightError(VECTOR_MISSING.format(major=version_num // 10000))
        vector_schema = _extension_schema(conn)
        vector = f"will be created ({available[0]}) in schema {vector_schema}"

    _check_privileges(conn, installed is not None)

    done = applied(conn)
    by_version = {m.version: m for m in migrations}
    for a in done:
        m = by_version.get(a.version)
        if m is None:
            raise PreflightError(
                f"the ledger etl.schema_migrations records {a.version:04d}_{a.name}.sql (applied {a.applied_at}), "
                "which is not in the schema folder; restore the file (applied files are never removed) "
                "or point bootstrap-schema at the right folder. Nothing was changed."
            )
        if m.checksum != a.checksum:
            raise ChecksumMismatchError(
                f"{m.filename} was edited after it was applied (ledger checksum {a.checksum[:12]}, "
                f"file now {m.checksum[:12]}); applied files are immutable: revert the edit and put the "
                "change in a new file with the next number. Nothing was changed."
            )
        old_dim = (a.params or {}).get("embedding_dim")
        if old_dim is not None and params.get("embedding_dim") is not None and old_dim != params["embedding_dim"]:
            raise PreflightError(
                f"the target's vector columns were created with {old_dim} dimensions ({m.filename}), but "
                f"the embedding model now gives {params['embedding_dim']}; use the model the target was "
                "built with (VITAL_EMBEDDING_MODEL), or migrate into a fresh target. Nothing was changed."
            )

    todo = [m for m in migrations if m.version not in {a.version for a in done}]
    conflicts = _conflicts(conn, todo, params)
    if conflicts:
        listed = "\n".join(f"  - {kind.lower()} {name}" for kind, name in conflicts)
        raise PreflightError(
            "the target already has objects that the pending schema files would create, and the ledger "
            "etl.schema_migrations does not account for them (left by an earlier, half-finished "
            f"migration or another tool):\n{listed}\n"
            "Refusing to apply a schema on top of them. Drop or rename them (after a backup), or "
            "migrate into an empty database. Nothing was changed."
        )
    return Plan(server_version, vector, vector_schema, params, done, todo)


def _extension_schema(conn: psycopg.Connection) -> str:
    """Supabase keeps extensions in schema `extensions`; elsewhere they go in the current schema."""
    has_ext_schema = conn.execute("SELECT to_regnamespace('extensions') IS NOT NULL").fetchone()[0]
    return "extensions" if has_ext_schema else conn.execute("SELECT current_schema()").fetchone()[0]


def _check_privileges(conn: psycopg.Connection, vector_installed: bool) -> None:
    user, is_super, can_create_db, can_create_schema = conn.execute(
        "SELECT current_user, rolsuper, has_database_privilege(current_database(), 'CREATE'), "
        "has_schema_privilege(current_schema(), 'CREATE') FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    missing = []
    if not can_create_db:
        missing.append("CREATE on the database (for schema etl)")
    if not can_create_schema:
        missing.append("CREATE on the current schema (for the catalogue tables)")
    if not vector_installed and not is_super:
        trusted = conn.execute(
            "SELECT coalesce(bool_or(trusted), false) FROM pg_available_extension_versions WHERE name = 'vector'"
        ).fetchone()[0]
        if not trusted:
            missing.append("superuser to run CREATE EXTENSION vector (or have an administrator run it first)")
    if missing:
        raise PreflightError(
            f"role {user!r} lacks privileges the schema needs: {'; '.join(missing)}. "
            "Grant them or connect as the database owner. Nothing was changed."
        )


def _conflicts(conn: psycopg.Connection, todo: list[Migration], params: dict) -> list[tuple[str, str]]:
    found = []
    for m in todo:
        for stmt in m.statements(params):  # refuses transaction control before anything changes
            c = _CREATE.match(stmt.text)
            if not c or c.group(1) or c.group(3):  # OR REPLACE / IF NOT EXISTS are idempotent by design
                continue
            kind, name = c.group(2).upper(), c.group(4).replace('"', "")
            schema, _, obj = name.rpartition(".")
            if _exists(conn, kind, schema or None, obj):
                found.append((kind, name if schema else obj))
    return found


def _exists(conn: psycopg.Connection, kind: str, schema: str | None, name: str) -> bool:
    ns = (
        "coalesce(to_regnamespace(%(schema)s), current_schema()::regnamespace)"
        if schema
        else "current_schema()::regnamespace"
    )
    query = {
        "TABLE": f"SELECT 1 FROM pg_class WHERE relname = %(name)s AND relnamespace = {ns}",
        "VIEW": f"SELECT 1 FROM pg_class WHERE relname = %(name)s AND relnamespace = {ns}",
        "INDEX": f"SELECT 1 FROM pg_class WHERE relname = %(name)s AND relnamespace = {ns}",
        "SEQUENCE": f"SELECT 1 FROM pg_class WHERE relname = %(name)s AND relnamespace = {ns}",
        "TYPE": f"SELECT 1 FROM pg_type WHERE typname = %(name)s AND typnamespace = {ns}",
        "FUNCTION": f"SELECT 1 FROM pg_proc WHERE proname = %(name)s AND pronamespace = {ns}",
        "SCHEMA": "SELECT 1 FROM pg_namespace WHERE nspname = %(name)s",
    }[kind]
    if schema and kind != "SCHEMA" and conn.execute("SELECT to_regnamespace(%s)", (schema,)).fetchone()[0] is None:
        return False
    return conn.execute(query, {"schema": schema, "name": name}).fetchone() is not None


@task(name="plan-schema", cache_policy=NO_CACHE, **IO_RETRIES)
def plan_schema(migrations_dir: str | None) -> Plan:
    """Preflight: server version, pgvector, privileges, the ledger, foreign objects. Changes nothing."""
    migrations = discover(migrations_dir)
    with connect(target_dsn(), autocommit=True) as conn:
        return preflight(conn, migrations, {"embedding_dim": model_spec().dim})
