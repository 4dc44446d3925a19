"""Applies schema/ safely: preflight first, the vector extension next, then each pending file
in its own transaction, recorded in the ledger etl.schema_migrations with its checksum.

The failure this prevents (from the VITAL team's history): a reset that used VECTOR(1536)
before CREATE EXTENSION vector and died half-way, leaving the database inconsistent.
Here a failing file rolls back whole, the ledger is unchanged, and nothing starts unless
preflight says the target is fit.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tasks.errors import ChecksumMismatchError, MigrationError, PreflightError
from tasks.settings import SCHEMA_DIR

MIN_SERVER_VERSION = 150000
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_LOCK_KEY = 0x5649_5441  # "VITA": one bootstrap at a time per database
_CREATE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+)?"
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


# --- the files -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    text: str

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def checksum(self) -> str:
        """sha256 of the file as written (placeholders unrendered)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(self, params: dict) -> str:
        def sub(m: re.Match) -> str:
            key = m.group(1)
            if key not in params:
                raise MigrationError(
                    f"{self.filename}: unknown placeholder {{{{{key}}}}}; known: {', '.join(sorted(params))}",
                    file=self.filename,
                )
            return str(params[key])

        return _PLACEHOLDER.sub(sub, self.text)


def discover(folder: Path | str | None = None) -> list[Migration]:
    """The ordered migrations of a folder of NNNN_name.sql files."""
    folder = Path(folder) if folder else SCHEMA_DIR
    if not folder.is_dir():
        raise PreflightError(f"schema folder {folder} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        m = _FILE_NAME.match(path.name)
        if not m:
            raise PreflightError(f"{path}: schema files are named NNNN_lower_snake.sql (e.g. 0009_add_x.sql)")
        version = int(m.group(1))
        if version in found:
            raise PreflightError(f"{path}: version {version} is also used by {found[version].filename}")
        found[version] = Migration(version, m.group(2), path, path.read_text(encoding="utf-8"))
    if not found:
        raise PreflightError(f"schema folder {folder} has no NNNN_name.sql files")
    return [found[v] for v in sorted(found)]


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the statement's first character in its file


def split_statements(script: str) -> list[Statement]:
    """Split SQL into statements at top-level semicolons, respecting quotes, comments and
    dollar-quoted bodies, so a failure can name the statement that failed."""
    out: list[Statement] = []
    i, n, start = 0, len(script), 0
    while i < n:
        c = script[i]
        if c == "-" and script.startswith("--", i):
            j = script.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and script.startswith("/*", i):
            j = script.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in ("'", '"'):
            j = i + 1
            while j < n:
                if script[j] == c:
                    if j + 1 < n and script[j + 1] == c:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
        elif c == "$":
            m = re.match(r"\$(\w*)\$", script[i:])
            if m and not (i > 0 and (script[i - 1].isalnum() or script[i - 1] == "_")):
                tag = m.group(0)
                j = script.find(tag, i + len(tag))
                i = n if j < 0 else j + len(tag)
            else:
                i += 1
        elif c == ";":
            _add_statement(out, script, start, i)
            i += 1
            start = i
        else:
            i += 1
    _add_statement(out, script, start, n)
    return out


def _add_statement(out: list[Statement], script: str, start: int, end: int) -> None:
    chunk = script[start:end]
    body = _strip_comments(chunk).strip()
    if not body:
        return
    lead = len(chunk) - len(chunk.lstrip())
    # skip leading comment lines so the reported line is the statement's own
    text = chunk.strip()
    while text.startswith("--"):
        nl = text.find("\n")
        text = "" if nl < 0 else text[nl + 1:].lstrip()
    offset = start + lead + (len(chunk.strip()) - len(text))
    out.append(Statement(text=text, line=script.count("\n", 0, offset) + 1))


def _strip_comments(s: str) -> str:
    return re.sub(r"--[^\n]*", "", s)


# --- the ledger -----------------------------------------------------------------------------
LEDGER_DDL = """
CREATE SCHEMA IF NOT EXISTS etl;
CREATE TABLE IF NOT EXISTS etl.schema_migrations (
    version     integer PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    params      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    duration_ms integer,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str
    params: dict
    applied_at: str


def applied(conn: psycopg.Connection) -> list[Applied]:
    """The ledger's rows; empty when the ledger does not exist yet."""
    if conn.execute("SELECT to_regclass('etl.schema_migrations')").fetchone()[0] is None:
        return []
    rows = conn.execute(
        "SELECT version, name, checksum, params, applied_at::text FROM etl.schema_migrations ORDER BY version"
    ).fetchall()
    return [Applied(*r) for r in rows]


def pending(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    done = {a.version for a in applied(conn)}
    return [m for m in migrations if m.version not in done]


# --- preflight ------------------------------------------------------------------------------
@dataclass
class Plan:
    server_version: str
    vector: str                      # "installed (0.8.5) in schema public" / "will be created in schema X"
    vector_schema: str | None
    params: dict
    applied: list[Applied]
    pending: list[Migration]
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"server: PostgreSQL {self.server_version}", f"vector extension: {self.vector}",
                 f"applied: {len(self.applied)} file(s)"]
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
            f"the target runs PostgreSQL {server_version}; vital-etl needs PostgreSQL 15 or later. "
            "Nothing was changed."
        )

    installed = conn.execute(
        "SELECT e.extversion, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"
    ).fetchone()
    if installed:
        vector, vector_schema = f"installed ({installed[0]}) in schema {installed[1]}", installed[1]
    else:
        available = conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
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
        for stmt in split_statements(m.render(params)):
            c = _CREATE.match(stmt.text)
            if not c or c.group(2):  # IF NOT EXISTS statements are idempotent by design
                continue
            kind, name = c.group(1).upper(), c.group(3).replace('"', "")
            schema, _, obj = name.rpartition(".")
            if _exists(conn, kind, schema or None, obj):
                found.append((kind, name if schema else obj))
    return found


def _exists(conn: psycopg.Connection, kind: str, schema: str | None, name: str) -> bool:
    ns = "coalesce(to_regnamespace(%(schema)s), current_schema()::regnamespace)" if schema else \
        "current_schema()::regnamespace"
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


# --- applying -------------------------------------------------------------------------------
def ensure_vector(conn: psycopg.Connection, schema: str | None) -> str:
    """CREATE EXTENSION vector before anything uses it; make its schema visible on this connection."""
    conn.execute(
        sql.SQL("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA {}").format(sql.Identifier(schema))
        if schema else sql.SQL("CREATE EXTENSION IF NOT EXISTS vector")
    )
    ext_schema = conn.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'"
    ).fetchone()[0]
    include_schema(conn, ext_schema)
    return ext_schema


def include_schema(conn: psycopg.Connection, schema: str) -> None:
    """Append `schema` to the connection's search_path (e.g. Supabase's `extensions`)."""
    visible = conn.execute("SELECT current_schemas(false)").fetchone()[0]
    if schema not in visible:
        path = conn.execute("SHOW search_path").fetchone()[0]
        conn.execute(sql.SQL("SELECT set_config('search_path', {}, false)").format(
            sql.Literal(f"{path}, {sql.Identifier(schema).as_string(conn)}")))


def apply_plan(conn: psycopg.Connection, plan: Plan, on_applied=None) -> list[dict]:
    """Apply the plan's pending files, each with its ledger row in one transaction.

    `conn` must be in autocommit mode (each file gets its own BEGIN/COMMIT)."""
    if not conn.autocommit:
        raise ValueError("apply_plan needs an autocommit connection")
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()[0]
    if not got:
        raise PreflightError("another bootstrap-schema is running on this database; try again when it ends")
    try:
        ensure_vector(conn, plan.vector_schema)
        conn.execute(LEDGER_DDL)
        done = []
        for m in plan.pending:
            # Re-check under the lock: another process may have applied it meanwhile.
            if conn.execute("SELECT 1 FROM etl.schema_migrations WHERE version = %s", (m.version,)).fetchone():
                continue
            started = time.monotonic()
            _apply_one(conn, m, plan.params, started)
            entry = {"version": m.version, "file": m.filename,
                     "ms": int((time.monotonic() - started) * 1000)}
            done.append(entry)
            if on_applied:
                on_applied(entry)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _apply_one(conn: psycopg.Connection, m: Migration, params: dict, started: float) -> None:
    statements = split_statements(m.render(params))
    with conn.transaction():
        for i, stmt in enumerate(statements, start=1):
            try:
                conn.execute(stmt.text, prepare=False)
            except psycopg.Error as exc:
                first = stmt.text.splitlines()[0][:120]
                cause = (exc.diag.message_primary or str(exc)).strip()
                raise MigrationError(
                    f"{m.filename}: statement {i} of {len(statements)} (line {stmt.line}) failed: {cause}\n"
                    f"    {first}\n"
                    "The file's transaction was rolled back: nothing of it was applied and the ledger is "
                    "unchanged. Fix the file and run bootstrap-schema again.",
                    file=m.filename, statement=stmt.text, line=stmt.line, cause=cause,
                ) from None
        conn.execute(
            "INSERT INTO etl.schema_migrations (version, name, checksum, params, duration_ms) "
            "VALUES (%s, %s, %s, %s, %s)",
            (m.version, m.name, m.checksum, json.dumps(params), int((time.monotonic() - started) * 1000)),
        )


# --- what exists ----------------------------------------------------------------------------
def describe(conn: psycopg.Connection) -> dict:
    """A JSON-serializable picture of the schema: tables (rows, RLS), enums, policies, ledger."""
    tables = conn.execute(
        """
        SELECT n.nspname, c.relname, c.relrowsecurity,
               (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid),
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                       AND a.attname = 'tenant_id' AND NOT a.attisdropped)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname IN (current_schema(), 'etl')
        ORDER BY n.nspname DESC, c.relname
        """
    ).fetchall()
    out_tables = []
    for schema, name, rls, policies, tenant_scoped in tables:
        rows = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        ).fetchone()[0]
        qualified = name if schema != "etl" else f"etl.{name}"
        out_tables.append({"table": qualified, "rows": rows, "tenant_scoped": tenant_scoped,
                           "rls": rls, "policies": policies})
    enums = conn.execute(
        """
        SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typnamespace = current_schema()::regnamespace
        GROUP BY t.typname ORDER BY t.typname
        """
    ).fetchall()
    vector_columns = conn.execute(
        """
        SELECT c.relname || '.' || a.attname, a.atttypmod
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
        WHERE t.typname = 'vector' AND NOT a.attisdropped AND c.relkind = 'r'
        ORDER BY 1
        """
    ).fetchall()
    ext = conn.execute(
        "SELECT extversion, extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'"
    ).fetchone()
    return {
        "vector_extension": {"version": ext[0], "schema": ext[1]} if ext else None,
        "applied": [{"version": a.version, "file": f"{a.version:04d}_{a.name}.sql", "applied_at": a.applied_at}
                    for a in applied(conn)],
        "tables": out_tables,
        "enums": {name: list(labels) for name, labels in enums},
        "policies": sum(t["policies"] for t in out_tables),
        "vector_columns": {name: dim for name, dim in vector_columns},
    }
