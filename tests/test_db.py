"""Connection resolution and the embedded PostgreSQL's lifecycle."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psycopg
import pytest

from core import connections as db
from core.errors import ConnectionFailed
from local import embedded as emb


@pytest.mark.parametrize(
    "dsn, masked",
    [
        ("postgresql://etl:s3cret@db.example.com:5432/vital", "postgresql://etl:***@db.example.com:5432/vital"),
        ("postgres://etl:p%40ss@host/db?sslmode=require", "postgres://etl:***@host/db?sslmode=require"),
        ("host=db user=etl password=s3cret dbname=vital", "host=db user=etl password=*** dbname=vital"),
        ("host=db password='a b\\'c' dbname=vital", "host=db password=*** dbname=vital"),
        (
            "postgresql://etl@host/db?password=s3cret&sslmode=require",
            "postgresql://etl@host/db?password=***&sslmode=require",
        ),
        ("postgresql://postgres:@/vital?host=/tmp/pg", "postgresql://postgres:***@/vital?host=/tmp/pg"),
        ("postgresql://etl@host/db", "postgresql://etl@host/db"),
    ],
)
def test_mask_dsn(dsn, masked):
    assert db.mask_dsn(dsn) == masked


def test_connection_error_never_shows_the_password():
    with pytest.raises(ConnectionFailed) as err:  # refused: transient, retried (here once)
        db.connect("postgresql://etl:TopSecret99@127.0.0.1:1/vital", attempts=1, connect_timeout=2)
    assert "TopSecret99" not in str(err.value)
    assert str(err.value).startswith("cannot connect to postgresql://etl:***@127.0.0.1:1/vital: ")
    assert "VITAL_TARGET_DSN" in str(err.value)


def test_env_dsn_wins_over_embedded(monkeypatch):
    monkeypatch.setenv("VITAL_TARGET_DSN", "postgresql://u@h/x")
    monkeypatch.setenv("VITAL_SOURCE_DSN", "postgresql://u@h/y")
    assert db.target_dsn() == "postgresql://u@h/x"
    assert db.source_dsn() == "postgresql://u@h/y"


def test_embedded_databases_are_created_on_demand(pg_server, monkeypatch):
    monkeypatch.delenv("VITAL_TARGET_DSN", raising=False)
    monkeypatch.delenv("VITAL_SOURCE_DSN", raising=False)
    for dsn, name in ((db.target_dsn(), "vital"), (db.source_dsn(), "vital_legacy")):
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == name
            assert conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() == (1,)


def test_a_running_server_is_reused(pg_server):
    pid = pg_server.status().pid
    again = emb.EmbeddedPostgres(pg_server.home)
    again.start()
    assert again.status().pid == pid


def _start_in_child(home, kill_self: bool) -> int:
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(db.__file__.rsplit("/core/", 1)[0])!r})
        from pathlib import Path
        from local.embedded import EmbeddedPostgres
        server = EmbeddedPostgres(Path({str(home)!r}))
        server.start(persistent=False)
        print(server.status().pid, flush=True)
        if {kill_self}:
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return int(done.stdout.split()[0])


def test_server_of_a_killed_process_is_detected_as_stale_and_stopped_by_pid(tmp_path, pg_server):
    home = tmp_path / "home"
    home.mkdir()
    old_pid = _start_in_child(home, kill_self=True)
    server = emb.EmbeddedPostgres(home)
    assert server.status().running and server.status().pid == old_pid
    assert server.is_stale()

    server.start(persistent=False)
    try:
        new_pid = server.status().pid
        assert new_pid != old_pid
        assert not db.pid_alive(old_pid)
        assert not server.is_stale()
    finally:
        assert server.stop() is True
    assert not server.status().running
    assert server.stop() is False
