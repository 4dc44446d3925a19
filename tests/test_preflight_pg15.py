"""A real PostgreSQL 15 without pgvector (Debian's, in a throwaway cluster): preflight must
refuse with the clear error, and create nothing: no half-applied schema."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from core.errors import PreflightError

from conftest import bootstrap

PG15 = Path("/usr/lib/postgresql/15/bin")


def _as_user(user: str | None, cmd: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@pytest.fixture(scope="module")
def pg15_dsn(tmp_path_factory, pg_server):
    if not (PG15 / "initdb").exists():
        pytest.skip("Debian's PostgreSQL 15 server is not installed (apt-get install postgresql-15)")
    if (Path("/usr/share/postgresql/15/extension") / "vector.control").exists():
        pytest.skip("this PostgreSQL 15 has pgvector installed; the test needs one without it")
    root = tmp_path_factory.mktemp("pg15")
    # PostgreSQL refuses to run as root: use the unprivileged user pgserver created (pg_server fixture).
    user = "pgserver" if os.geteuid() == 0 else None
    if user:
        shutil.chown(root, user)
    data = root / "data"
    subprocess.run(
        _as_user(user, [str(PG15 / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_user(
            user,
            [str(PG15 / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o", f"-k {root} -h ''", "start"],
        ),
        check=True,
        capture_output=True,
    )
    yield f"postgresql://postgres@/postgres?host={root}"
    subprocess.run(
        _as_user(user, [str(PG15 / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
    )


def test_server_without_pgvector_gets_the_clear_error_and_nothing_is_created(pg15_dsn):
    with psycopg.connect(pg15_dsn) as conn:
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("15")
    with pytest.raises(PreflightError) as err:
        bootstrap(pg15_dsn)
    message = str(err.value)
    assert message.startswith("the target database has no 'vector' extension available")
    assert "nothing was changed" in message
    assert "Database -> Extensions -> vector" in message
    assert "postgresql-15-pgvector" in message
    with psycopg.connect(pg15_dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('etl')").fetchone()[0] is None
        assert (
            conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchone()[0] == 0
        )
        assert (
            conn.execute("SELECT count(*) FROM pg_type WHERE typnamespace = 'public'::regnamespace").fetchone()[0] == 0
        )


def test_cli_prints_the_error_without_a_traceback(pg15_dsn, prefect_env):
    env = {**prefect_env, "VITAL_TARGET_DSN": pg15_dsn}
    venv_bin = Path(__file__).resolve().parents[1] / ".venv" / "bin"
    cli = venv_bin / "vital-etl"
    done = subprocess.run([str(cli), "bootstrap", "--dry-run"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "vital-etl: the target database has no 'vector' extension available" in done.stderr
    assert "Traceback" not in done.stderr
