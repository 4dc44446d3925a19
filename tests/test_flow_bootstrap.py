"""The bootstrap-schema flow itself, on the Prefect test server: return value and artifact."""

from __future__ import annotations

import psycopg
import pytest

from flows.bootstrap import bootstrap_schema
from tasks.schema import discover

FILES = len(discover())


@pytest.fixture
def target(fresh_dsn, monkeypatch, prefect_harness):
    monkeypatch.setenv("VITAL_TARGET_DSN", fresh_dsn)
    return fresh_dsn


def _artifact_markdown(flow_run_id) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert [a.key for a in arts] == ["bootstrap-schema"]
    return arts[0].data


def test_flow_applies_everything_then_nothing(target):
    state = bootstrap_schema(return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert len(summary["applied_now"]) == FILES
    assert summary["tenants"] == {"digital-health": "inserted", "pharma": "inserted"}
    assert summary["schema"]["vector_columns"]["agents.embedding"] == 384
    assert {t["table"]: t["rows"] for t in summary["schema"]["tables"]}["tenants"] == 2
    md = _artifact_markdown(state.state_details.flow_run_id)
    assert f"Applied now: {FILES} file(s):" in md
    assert "| `agents` | 0 | yes | on | 1 |" in md

    again = bootstrap_schema()
    assert again["applied_now"] == []
    assert again["tenants"] == {"digital-health": "unchanged", "pharma": "unchanged"}


def test_flow_dry_run_changes_nothing(target):
    summary = bootstrap_schema(dry_run=True)
    assert summary["dry_run"] is True
    assert len(summary["pending"]) == FILES
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT to_regnamespace('etl')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone()[0] == 0
