"""Connections and the choice of DSN: the environment, a Prefect Secret block, else the
embedded PostgreSQL under VITAL_HOME (started by `vital-etl db start`, see local/embedded.py).

The embedded server is found through PostgreSQL's own `postmaster.pid` (socket folder and
port), so reaching it needs nothing of the code that manages it."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from core.errors import ConfigError, ConnectionFailed
from core.settings import settings, vital_home

log = logging.getLogger(__name__)

SOURCE_DB = "vital_legacy"
TARGET_DB = "vital"


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ***, for logs and error messages. It cannot fail:
    a URI whose user part it cannot read has the whole user part masked (`***@host`)."""
    try:
        text = str(dsn)
        uri = _URI.match(text)
        return _mask_uri(*uri.groups()) if uri else _mask_keywords(text)
    except Exception:  # masking must never be the thing that fails
        return "***"


_URI = re.compile(r"^(\s*[a-z][a-z0-9+.-]*://)(.*)$", re.I | re.S)
_PASSWORD_PARAM = re.compile(r"([?&]password=)[^&]*", re.I)
_PASSWORD_KEY = re.compile(r"(?:^|(?<=\s))password\s*=\s*", re.I)


def _mask_uri(scheme: str, rest: str) -> str:
    """postgresql://user:secret@host/db?password=secret -> postgresql://user:***@host/db?password=***.
    The user part ends at the last '@' (a password may hold '@', '?', '#', '/', spaces ...)."""
    at = rest.rfind("@")
    if at >= 0:
        user, sep, _ = rest[:at].partition(":")
        clean = user and not set(user) & set("/?#@ ")
        rest = (f"{user}:***" if clean and sep else user if clean else "***") + rest[at:]
    return scheme + _PASSWORD_PARAM.sub(r"\1***", rest)


def _mask_keywords(text: str) -> str:
    """host=h password='x y' dbname=d -> host=h password=*** dbname=d. A value runs to its
    closing quote (or the end), else to the next `key=` word: a space in an unquoted password
    does not leave its tail behind."""
    out, pos = [], 0
    for m in _PASSWORD_KEY.finditer(text):
        if m.start() < pos:
            continue
        out.append(text[pos : m.end()] + "***")
        i = m.end()
        if text[i : i + 1] == "'":
            i += 1
            while i < len(text) and text[i] != "'":
                i += 2 if text[i] == "\\" else 1
            i += 1
        else:
            nxt = re.search(r"\s+[A-Za-z_]+\s*=", text[i:])
            i = i + nxt.start() if nxt else len(text)
        pos = min(i, len(text))
    return "".join(out) + text[pos:]


def dsn_problem(dsn: str) -> str | None:
    """Why libpq cannot parse `dsn` (quoted fragments, which may hold the password, left out),
    or None when it can."""
    if _URI.match(dsn) and dsn.count("@") > 1:  # libpq would take the host from inside the password
        return "'@' appears more than once"
    try:
        conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg.ProgrammingError, or anything else
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return re.sub(r'"[^"]*"', '"..."', reason).removeprefix("invalid connection string: ")
    return None


def checked_dsn(dsn: str, where: str) -> str:
    """`dsn` when libpq can parse it, else one ConfigError line naming `where` (a variable or
    Secret block) with the DSN masked."""
    problem = dsn_problem(dsn)
    if problem:
        fix = (
            "percent-encode special characters of a URI's password (? %3F, # %23, @ %40, % %25, space %20)"
            if _URI.match(dsn)
            else "quote a value that holds spaces or quotes: password='it\\'s secret'"
        )
        raise ConfigError(f"{where} is not a valid PostgreSQL connection string ({mask_dsn(dsn)}): {problem}; {fix}")
    return dsn


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def embedded_pgdata(home: Path | None = None) -> Path:
    return (home or vital_home()).resolve() / "pg"


def embedded_uri(database: str, home: Path | None = None) -> str | None:
    """The URI of `database` on the running embedded server of VITAL_HOME; None when none runs."""
    try:
        lines = (embedded_pgdata(home) / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir = int(lines[0]), lines[3].strip(), lines[4].strip()
    except (FileNotFoundError, IndexError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    if socket_dir:
        return f"postgresql://postgres:@/{database}?host={socket_dir}&port={port}"
    return f"postgresql://postgres:@localhost:{port}/{database}"


_created: set[str] = set()


def embedded_dsn(database: str) -> str:
    """DSN of `database` on the embedded server, created when missing."""
    uri = embedded_uri(database)
    if uri is None:
        raise ConfigError(
            f"no embedded PostgreSQL is running under {vital_home()} and no DSN is set: start it with "
            "`vital-etl db start` (make db-start), or set VITAL_SOURCE_DSN / VITAL_TARGET_DSN"
        )
    if uri not in _created:
        with psycopg.connect(embedded_uri("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        _created.add(uri)
    return uri


def _secret(variable: str, name: str | None) -> str | None:
    """The Prefect Secret block named by <variable>_SECRET, if that is set."""
    if not name:
        return None
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()
    except ValueError:
        raise ConfigError(
            f"{variable}_SECRET={name!r}: no Prefect Secret block of that name "
            f"(create it: prefect block create secret, or Secret(value=...).save({name!r}))"
        ) from None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"Prefect Secret block {name!r} ({variable}_SECRET) holds no DSN string")
    return value


def source_dsn(dsn_env: str = "VITAL_SOURCE_DSN") -> str:
    """The legacy database: the variable `dsn_env` (a manifest's `legacy_db.dsn_env`), else
    VITAL_SOURCE_DSN, else the Secret block named by VITAL_SOURCE_DSN_SECRET, else database
    `vital_legacy` of the embedded server."""
    s = settings()
    if os.environ.get(dsn_env):
        return checked_dsn(os.environ[dsn_env], dsn_env)
    if s.source_dsn:
        return checked_dsn(s.source_dsn, "VITAL_SOURCE_DSN")
    secret = _secret("VITAL_SOURCE_DSN", s.source_dsn_secret)
    if secret:
        return checked_dsn(secret, f"the Prefect Secret block {s.source_dsn_secret!r}")
    return embedded_dsn(SOURCE_DB)


def target_dsn() -> str:
    """VITAL_TARGET_DSN, else the Secret block named by VITAL_TARGET_DSN_SECRET, else database
    `vital` of the embedded server."""
    s = settings()
    if s.target_dsn:
        return checked_dsn(s.target_dsn, "VITAL_TARGET_DSN")
    secret = _secret("VITAL_TARGET_DSN", s.target_dsn_secret)
    if secret:
        return checked_dsn(secret, f"the Prefect Secret block {s.target_dsn_secret!r}")
    return embedded_dsn(TARGET_DB)


def uses_embedded() -> bool:
    """No DSN or Secret block is configured: the embedded server is the source and target."""
    s = settings()
    return not (s.source_dsn or s.target_dsn or s.source_dsn_secret or s.target_dsn_secret)


# A refused or dropped connection, or a server starting up or shutting down: worth waiting for.
# Anything else (wrong password, unknown database or role, malformed DSN, unknown host) is a
# configuration error at once. Connection failures carry no SQLSTATE, so the message decides.
_REFUSED = re.compile(
    r"connection refused|no such file or directory|timeout expired|timed out|server closed the connection"
    r"|connection reset|network is unreachable|could not (?:receive|send) data|terminating connection"
    r"|the database system is (?:starting up|shutting down|in recovery mode|not (?:yet )?accepting connections)"
    r"|too many clients|remaining connection slots",
    re.I,
)
CONNECT_ATTEMPTS = 6  # waits of about 0.5, 1, 2, 4 and 8 s: a restart of up to ~15 s is ridden out


def refused(exc: BaseException) -> bool:
    """psycopg.connect failed because the server refused or dropped the connection (transient)."""
    return isinstance(exc, psycopg.OperationalError) and bool(_REFUSED.search(str(exc)))


def connect(dsn: str, *, attempts: int | None = None, **kwargs) -> psycopg.Connection:
    """psycopg.connect, retried with backoff (`attempts`, default CONNECT_ATTEMPTS) while the
    server refuses or drops connections, then ConnectionFailed, a TransientError that Prefect
    task retries try again; a wrong password, unknown database or malformed DSN is a ConfigError
    at once. Errors name the database without its password."""
    attempts = attempts or CONNECT_ATTEMPTS
    started = time.monotonic()

    def warn(state) -> None:
        log.warning(
            "cannot connect to %s (attempt %d of %d): %s; retrying in %.1f s",
            mask_dsn(dsn),
            state.attempt_number,
            attempts,
            _first_line(state.outcome.exception()),
            state.next_action.sleep,
        )

    try:
        for attempt in Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(multiplier=0.5, max=8, jitter=0.5),
            retry=retry_if_exception(refused),
            before_sleep=warn,
            reraise=True,
        ):
            with attempt:
                return psycopg.connect(dsn, **kwargs)
    except psycopg.Error as exc:
        reason = _first_line(exc)
        if refused(exc):
            raise ConnectionFailed(
                f"cannot connect to {mask_dsn(dsn)}: {reason} ({attempts} attempt(s) over "
                f"{time.monotonic() - started:.0f} s); check that the server is running and reachable "
                "(VITAL_SOURCE_DSN / VITAL_TARGET_DSN)"
            ) from None
        raise ConfigError(
            f"cannot connect to {mask_dsn(dsn)}: {reason}; check VITAL_SOURCE_DSN / "
            "VITAL_TARGET_DSN, or unset them to use the embedded PostgreSQL"
        ) from None
    raise AssertionError("unreachable")


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return mask_dsn(text.splitlines()[0]) if text else type(exc).__name__
