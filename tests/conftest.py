"""Shared fixtures: one embedded PostgreSQL per session (a private VITAL_HOME), a fresh
database per test, and the Prefect test harness for the tests that run real flows."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest

# Tests never touch a user's databases or VITAL_HOME.
for var in (
    "VITAL_SOURCE_DSN",
    "VITAL_TARGET_DSN",
    "VITAL_EMBEDDING_MODEL",
    "VITAL_EMBEDDING_MODEL_ID",
    "VITAL_EMBEDDING_BACKEND",
    "VITAL_EMBEDDING_QUANTIZE",
    "VITAL_EMBEDDING_DEVICE",
):
    os.environ.pop(var, None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

SHARED_VITAL = Path(__file__).resolve().parents[2] / "shared" / "vital"


@pytest.fixture(scope="session")
def vital_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("vital-home")
    os.environ["VITAL_HOME"] = str(home)
    (home / "prefect").mkdir()
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    return home


@pytest.fixture(scope="session")
def pg_server(vital_home):
    """The embedded PostgreSQL of the test session, tied to this process."""
    from local.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(vital_home)
    server.start(persistent=False)
    yield server
    server.stop()


@pytest.fixture
def fresh_dsn(pg_server):
    """A new, empty database on the session's server; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = pg_server.dsn(name)
    yield dsn
    base = pg_server.dsn("postgres")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bootstrap(dsn: str, migrations_dir=None, params=None):
    """Preflight + apply, as bootstrap-schema does, without Prefect."""
    from core.tenants import load_tenants
    from tasks import schema
    from tasks.tenants import upsert_tenants

    params = params or {"embedding_dim": 384}
    with psycopg.connect(dsn, autocommit=True) as conn:
        plan = schema.preflight(conn, schema.discover(migrations_dir), params)
        applied = schema.apply_plan(conn, plan)
        tenants = upsert_tenants(conn, load_tenants()) if migrations_dir is None else {}
    return applied, tenants


@pytest.fixture
def target_dsn(fresh_dsn, monkeypatch):
    """A fresh database with the whole schema and the tenants, set as VITAL_TARGET_DSN."""
    bootstrap(fresh_dsn)
    monkeypatch.setenv("VITAL_TARGET_DSN", fresh_dsn)
    return fresh_dsn


@pytest.fixture(scope="session")
def prefect_harness(vital_home):
    """One Prefect test server for the session (it takes ~12 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def prefect_env(prefect_harness, vital_home) -> dict:
    """Environment for a subprocess (e.g. the CLI) that should use the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "VITAL_HOME": str(vital_home), "PREFECT_API_URL": PREFECT_API_URL.value()}
