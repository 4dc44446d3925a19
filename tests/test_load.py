"""The loader against real PostgreSQL: idempotent upserts, a killed connection retried, a bad
row quarantined while its batch loads."""

from __future__ import annotations

import psycopg
import pytest

from core.identity import row_id, tenant_id
from tasks.load import load_rows, to_text

PHARMA = str(tenant_id("pharma"))


def agents(n: int) -> list[dict]:
    return [
        {
            "id": str(row_id(PHARMA, "agents", f"a{i}")),
            "tenant_id": PHARMA,
            "legacy_key": f"a{i}",
            "name": f"agent {i}",
            "functional_area": "Clinical",
            "status": "active",
            "temperature": 0.5,
            "metadata": {"i": i},
        }
        for i in range(n)
    ]


def count(dsn: str, table: str = "agents") -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_to_text():
    assert to_text(['a "b"', None, "c\\d"]) == '{"a \\"b\\"",NULL,"c\\\\d"}'
    assert to_text({"k": 1}) == '{"k": 1}' and to_text(True) == "t" and to_text(None) is None


def test_upsert_is_idempotent_and_touches_only_changed_rows(target_dsn):
    rows = agents(25)
    first = load_rows(target_dsn, "agents", rows, batch_size=10)
    assert (first.loaded, first.written, first.batches, first.failed) == (25, 25, 3, [])
    again = load_rows(target_dsn, "agents", rows, batch_size=10)
    assert (again.loaded, again.written) == (25, 0)
    rows[3]["name"] = "renamed"
    third = load_rows(target_dsn, "agents", rows, batch_size=10)
    assert third.written == 1 and count(target_dsn) == 25


def test_a_killed_connection_mid_batch_is_retried_and_nothing_is_lost(target_dsn):
    killed = []

    def kill_once(conn):
        if not killed:
            pid = conn.info.backend_pid
            with psycopg.connect(target_dsn, autocommit=True) as other:
                assert other.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
            killed.append(pid)

    result = load_rows(target_dsn, "agents", agents(30), batch_size=10, on_batch=kill_once)
    assert killed and result.retries == 1
    assert (result.loaded, result.failed) == (30, [])
    assert count(target_dsn) == 30


def test_a_row_violating_a_constraint_is_isolated_and_the_rest_loads(target_dsn):
    rows = agents(10)
    rows[6]["temperature"] = 5  # CHECK (temperature BETWEEN 0 AND 2)
    rows[2]["status"] = "zombie"  # not an agent_status label
    result = load_rows(target_dsn, "agents", rows, batch_size=10)
    assert result.loaded == 8 and count(target_dsn) == 8
    reasons = {row["legacy_key"]: reason for row, reason in result.failed}
    assert reasons["a6"].startswith(
        'new row for relation "agents" violates check constraint "agents_temperature_check"'
    )
    assert reasons["a2"] == 'invalid input value for enum agent_status: "zombie"'


@pytest.mark.parametrize("table", ["agents"])
def test_junction_rows_load_with_their_composite_key(target_dsn, table):
    rows = agents(2)
    load_rows(target_dsn, "agents", rows)
    link = {
        "tenant_id": PHARMA,
        "agent_id": rows[0]["id"],
        "related_agent_id": rows[1]["id"],
        "relation_type": "compatible",
    }
    assert load_rows(target_dsn, "agent_relations", [link, link]).loaded == 2
    assert count(target_dsn, "agent_relations") == 1


def test_null_in_a_not_null_column_with_a_default_takes_the_default(target_dsn):
    rows = agents(1)
    rows[0]["status"] = None  # agents.status is NOT NULL DEFAULT 'development'
    assert load_rows(target_dsn, "agents", rows).failed == []
    with psycopg.connect(target_dsn) as conn:
        assert conn.execute("SELECT status, metadata FROM agents").fetchone() == ("development", {"i": 0})
