"""Connections and the choice of DSN: the environment, a Prefect Secret block, else the
embedded PostgreSQL under VITAL_HOME (started by `vital-etl db start`, see local/embedded.py).

The embedded server is found through PostgreSQL's own `postmaster.pid` (socket folder and
port), so reaching it needs nothing of the code that manages it."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import psycopg
from psycopg import sql

from core.errors import ConfigError
from core.settings import settings, vital_home

log = logging.getLogger(__name__)

SOURCE_DB = "vital_legacy"
TARGET_DB = "vital"


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ***, for logs and error messages."""
    masked = re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1***@", dsn)
    masked = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", r"\1***", masked, flags=re.I)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", masked, flags=re.I)


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
    return (
        os.environ.get(dsn_env)
        or s.source_dsn
        or _secret("VITAL_SOURCE_DSN", s.source_dsn_secret)
        or embedded_dsn(SOURCE_DB)
    )


def target_dsn() -> str:
    """VITAL_TARGET_DSN, else the Secret block named by VITAL_TARGET_DSN_SECRET, else database
    `vital` of the embedded server."""
    s = settings()
    return s.target_dsn or _secret("VITAL_TARGET_DSN", s.target_dsn_secret) or embedded_dsn(TARGET_DB)


def uses_embedded() -> bool:
    """No DSN or Secret block is configured: the embedded server is the source and target."""
    s = settings()
    return not (s.source_dsn or s.target_dsn or s.source_dsn_secret or s.target_dsn_secret)


def connect(dsn: str, **kwargs) -> psycopg.Connection:
    """psycopg.connect with an error that names the database without its password."""
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"cannot connect to {mask_dsn(dsn)}: {mask_dsn(reason)}; check VITAL_SOURCE_DSN / "
            "VITAL_TARGET_DSN, or unset them to use the embedded PostgreSQL"
        ) from None
