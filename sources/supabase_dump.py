"""Rehearse on a copy: restore a plain-SQL `pg_dump` / `supabase db dump` (a schema file and a
data file) into a database of the embedded PostgreSQL, with a compatibility layer that stands
in for what Supabase has and a plain server does not.

The restore runs statement by statement (autocommit), so one statement that cannot work
(an extension only Supabase has, a role the copy lacks) is skipped or listed with its error,
and everything else still lands. The result says whether the copy is complete.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from core.connections import connect, embedded_dsn, embedded_uri
from core.errors import TerminalError
from core.sql import split_statements

# Supabase-only or contrib extensions the embedded server does not have. Nothing in a VITAL
# dump depends on pg_net, pg_graphql, supabase_vault or pg_stat_statements; what it uses of
# uuid-ossp and pgcrypto is provided by COMPAT below, over core functions.
SKIPPED_EXTENSIONS = {
    "pg_net",
    "pg_graphql",
    "pg_stat_statements",
    "supabase_vault",
    "pgjwt",
    "pgsodium",
    "pg_cron",
    "wrappers",
    "hypopg",
    "index_advisor",
    "pgaudit",
}
PROVIDED_EXTENSIONS = {
    "pgcrypto": "digest(), gen_random_bytes(), gen_random_uuid() over core functions",
    "uuid-ossp": "uuid_generate_v4() over gen_random_uuid()",
}
_EXTENSION = re.compile(r'^\s*CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?"?([\w-]+)"?', re.I)

COMPAT = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_admin') THEN CREATE ROLE supabase_admin NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_auth_admin') THEN CREATE ROLE supabase_auth_admin NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_storage_admin') THEN CREATE ROLE supabase_storage_admin NOLOGIN; END IF;
END $$;
CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE SCHEMA IF NOT EXISTS supabase_functions;
CREATE SCHEMA IF NOT EXISTS storage;
CREATE TABLE IF NOT EXISTS auth.users (id uuid PRIMARY KEY, email text);
CREATE SEQUENCE IF NOT EXISTS auth.refresh_tokens_id_seq;
CREATE SEQUENCE IF NOT EXISTS supabase_functions.hooks_id_seq;
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE
  AS $f$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $f$;
CREATE OR REPLACE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE
  AS $f$ SELECT nullif(current_setting('request.jwt.claim.role', true), '') $f$;
CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE
  AS $f$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $f$;
CREATE OR REPLACE FUNCTION extensions.uuid_generate_v4() RETURNS uuid LANGUAGE sql VOLATILE
  AS $f$ SELECT gen_random_uuid() $f$;
CREATE OR REPLACE FUNCTION extensions.gen_random_uuid() RETURNS uuid LANGUAGE sql VOLATILE
  AS $f$ SELECT pg_catalog.gen_random_uuid() $f$;
CREATE OR REPLACE FUNCTION extensions.digest(data text, type text) RETURNS bytea LANGUAGE sql IMMUTABLE
  AS $f$ SELECT CASE lower(type) WHEN 'sha256' THEN sha256(convert_to(data, 'UTF8'))
                                 WHEN 'sha512' THEN sha512(convert_to(data, 'UTF8'))
                                 WHEN 'sha224' THEN sha224(convert_to(data, 'UTF8'))
                                 WHEN 'sha384' THEN sha384(convert_to(data, 'UTF8'))
                                 WHEN 'md5' THEN decode(md5(data), 'hex') END $f$;
CREATE OR REPLACE FUNCTION extensions.gen_random_bytes(n integer) RETURNS bytea LANGUAGE sql VOLATILE
  AS $f$ SELECT decode(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''), 'hex')
         FROM generate_series(1, n) $f$;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
    CREATE PUBLICATION supabase_realtime;
  END IF;
END $$;
"""


class RestoreError(TerminalError):
    """The dump cannot be read or restored at all."""


@dataclass
class RestoreResult:
    database: str
    statements: int = 0
    applied: int = 0
    skipped: list[str] = field(default_factory=list)  # what and why
    failed: list[dict] = field(default_factory=list)  # file, line, statement, error
    tables: dict[str, int] = field(default_factory=dict)  # public tables -> rows

    @property
    def complete(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        lines = [
            f"restored into database {self.database}: {self.applied} of {self.statements} statements applied, "
            f"{len(self.skipped)} skipped, {len(self.failed)} failed; the copy is "
            + ("COMPLETE" if self.complete else "INCOMPLETE: the failed statements are below")
        ]
        lines += [f"  skipped: {s}" for s in self.skipped]
        lines += [f"  FAILED {f['file']}:{f['line']}: {f['error']}\n      {f['statement'][:160]}" for f in self.failed]
        populated = {t: n for t, n in self.tables.items() if n}
        lines.append(
            f"  {len(self.tables)} tables in public; with rows: "
            + ", ".join(f"{t} {n}" for t, n in sorted(populated.items()))
        )
        return "\n".join(lines)


def dump_key(schema: Path, data: Path | None) -> str:
    h = hashlib.sha256(schema.read_bytes())
    if data:
        h.update(data.read_bytes())
    return h.hexdigest()[:12]


def _statements(path: Path) -> list:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RestoreError(f"{path}: dump file not found") from None
    except UnicodeDecodeError:
        raise RestoreError(f"{path}: not UTF-8; dump with --encoding=UTF8") from None
    if re.search(r"^COPY .* FROM stdin;", text, re.M):
        raise RestoreError(
            f"{path}: has COPY ... FROM stdin blocks; dump the data with --inserts "
            "(supabase db dump --data-only uses INSERTs) so it can be restored statement by statement"
        )
    return split_statements(text)


def restore(admin_dsn: str, database: str, schema: Path, data: Path | None = None) -> RestoreResult:
    """(Re)create `database` on the server of `admin_dsn` and restore the dump into it."""
    with connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(database))
        )
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database)))
    dsn = (
        re.sub(r"/[^/?]*(\?|$)", f"/{database}\\1", admin_dsn, count=1)
        if "://" in admin_dsn
        else f"{admin_dsn} dbname={database}"
    )
    result = RestoreResult(database)
    files = [(schema, _statements(schema))] + ([(data, _statements(data))] if data else [])
    with connect(dsn, autocommit=True) as conn:
        conn.execute(COMPAT)
        for path, statements in files:
            for stmt in statements:
                result.statements += 1
                m = _EXTENSION.match(stmt.text)
                name = m.group(1).lower() if m else None
                if name in SKIPPED_EXTENSIONS:
                    result.skipped.append(
                        f"{path.name}:{stmt.line}: CREATE EXTENSION {m.group(1)} (Supabase-only; not available here)"
                    )
                    continue
                if name in PROVIDED_EXTENSIONS:
                    result.skipped.append(
                        f"{path.name}:{stmt.line}: CREATE EXTENSION {m.group(1)} "
                        f"(compatibility layer: {PROVIDED_EXTENSIONS[name]})"
                    )
                    continue
                try:
                    conn.execute(stmt.text, prepare=False)
                    result.applied += 1
                except psycopg.Error as exc:
                    result.failed.append(
                        {
                            "file": path.name,
                            "line": stmt.line,
                            "statement": stmt.text,
                            "error": (exc.diag.message_primary or str(exc)).strip(),
                        }
                    )
        conn.execute("SET session_replication_role = DEFAULT")
        for (table,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall():
            result.tables[table] = conn.execute(
                psycopg.sql.SQL("SELECT count(*) FROM public.{}").format(psycopg.sql.Identifier(table))
            ).fetchone()[0]
    return result


def restored_copy(schema: Path, data: Path | None) -> tuple[str, RestoreResult | None]:
    """The DSN of the embedded copy of this dump, restoring it first unless a copy of the same
    files (by checksum) is already there. Returns (dsn, result of the restore or None if reused)."""
    admin = embedded_dsn("postgres")
    database = f"legacy_copy_{dump_key(schema, data)}"
    with connect(admin, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (database,))
        try:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
            if exists:
                with connect(embedded_uri(database)) as copy:
                    done = copy.execute("SELECT to_regclass('vital_restore.info')").fetchone()[0]
                if done:
                    return embedded_uri(database), None
            result = restore(admin, database, schema, data)
            with connect(embedded_uri(database), autocommit=True) as copy:
                copy.execute("CREATE SCHEMA vital_restore")
                copy.execute(
                    "CREATE TABLE vital_restore.info AS SELECT %s::text AS report, %s::boolean AS complete",
                    (result.describe(), result.complete),
                )
            return embedded_uri(database), result
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (database,))
