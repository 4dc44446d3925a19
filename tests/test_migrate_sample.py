"""migrate-tenant for real on the bundled sample: load, re-run, faults, undo, model switch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import psycopg
import pytest

from core.catalogue import CATALOGUE_TABLES, JUNCTIONS
from core.identity import tenant_id
from flows.backfill import backfill_embeddings
from flows.migrate import migrate_tenant
from flows.undo import undo_tenant
from flows.verify import verify_tenant
from sources import sample

from conftest import bootstrap

TABLES = list(CATALOGUE_TABLES) + [j.name for j in JUNCTIONS]
CLI = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "vital-etl"


def contents(dsn: str, tenant: str | None = None) -> dict:
    """Every catalogue and junction row, without timestamps, per table."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            cols = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = 'public' "
                    "AND column_name NOT IN ('created_at', 'updated_at') ORDER BY 1",
                    (table,),
                )
            ]
            where = "WHERE tenant_id = %s" if tenant else ""
            rows = conn.execute(
                f"SELECT {', '.join(cols)} FROM {table} {where} ORDER BY 1, 2, 3",
                [str(tenant_id(tenant))] if tenant else [],
            ).fetchall()
            out[table] = sorted(tuple(str(v) for v in r) for r in rows)
    return out


@pytest.fixture
def sample_env(fresh_dsn, pg_server, monkeypatch, prefect_harness):
    """A built sample (legacy DB + files) and a bootstrapped, empty target."""
    source = pg_server.dsn(f"src_{fresh_dsn.rsplit('/', 1)[-1].split('?')[0]}")
    monkeypatch.setenv("VITAL_SOURCE_DSN", source)
    monkeypatch.setenv("VITAL_TARGET_DSN", fresh_dsn)
    s = sample.generate()
    sample.write_files(s, sample.sample_dir())
    sample.build_legacy_db(s, source)
    bootstrap(fresh_dsn)
    return {"source": source, "target": fresh_dsn}


def test_migrate_rerun_change_undo(sample_env):
    target = sample_env["target"]
    first = migrate_tenant(tenant="pharma")
    assert first["reconciled"] and first["verify"]["passed"]
    assert first["entities"]["agents"]["loaded"] == 36 and first["entities"]["agents"]["quarantined"] == 5
    assert sum(c["embedded"] for c in first["entities"].values()) > 100
    with psycopg.connect(target) as conn:
        quarantined = conn.execute(
            "SELECT count(*) FROM etl.quarantine WHERE run_id = %s", (first["run_id"],)
        ).fetchone()[0]
        assert quarantined == sum(c["quarantined"] for c in first["entities"].values()) == 10
        assert (
            conn.execute("SELECT status FROM etl.runs WHERE id = %s", (first["run_id"],)).fetchone()[0] == "completed"
        )
    before = contents(target)

    second = migrate_tenant(tenant="pharma")
    assert sum(c["embedded"] for c in second["entities"].values()) == 0
    assert contents(target) == before
    # nothing changed: every row counted unchanged, none written, its vector reused from the cache
    assert all(c["written"] == 0 for c in second["entities"].values())
    assert all(c["unchanged"] == c["loaded"] == first["entities"][e]["loaded"] for e, c in second["entities"].items())
    assert second["entities"]["agents"]["reused"] == 36
    assert all(c["written"] == 0 for c in second["junctions"].values())

    # one changed source row: exactly that row is re-embedded
    with psycopg.connect(sample_env["source"]) as conn:
        conn.execute(
            "UPDATE agents SET description = 'Now about pharmacovigilance signal triage.' "
            "WHERE id = (SELECT id FROM agents ORDER BY id OFFSET 10 LIMIT 1)"
        )
    third = migrate_tenant(tenant="pharma")
    assert {e: c["embedded"] for e, c in third["entities"].items() if c["embedded"]} == {"agents": 1}

    # a row removed from the source is reported, and kept
    tools_file = sample.sample_dir() / "exports" / "tools.json"
    tools_file.write_text(json.dumps(json.loads(tools_file.read_text())[1:]))
    fourth = migrate_tenant(tenant="pharma")
    assert (
        "tools: 1 row(s) of pharma in the target are no longer in the sources; they were kept "
        '(migrate again with prune=True, or prune="soft", removes them)' in fourth["findings"]
    )
    with psycopg.connect(target) as conn:
        assert (
            conn.execute("SELECT count(*) FROM tools WHERE tenant_id = %s", (str(tenant_id("pharma")),)).fetchone()[0]
            == 5
        )

    dh = migrate_tenant(tenant="digital-health")
    assert dh["verify"]["passed"]
    dh_before = contents(target, "digital-health")
    removed = undo_tenant(tenant="pharma", confirm="pharma")
    assert removed["agents"] == 36 and removed["etl.runs"] == 4
    assert all(rows == [] for rows in contents(target, "pharma").values())
    assert contents(target, "digital-health") == dh_before


def test_undo_needs_the_slug_twice(sample_env):
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"to confirm, pass confirm='pharma' \(got 'pharm'\). Nothing was removed."):
        undo_tenant(tenant="pharma", confirm="pharm")


def test_backfill_after_a_model_switch_reembeds_every_row(sample_env, monkeypatch):
    from core.settings import model_spec

    migrate_tenant(tenant="pharma")
    monkeypatch.setenv("VITAL_EMBEDDING_MODEL", str(model_spec().path))  # same weights ...
    monkeypatch.setenv("VITAL_EMBEDDING_MODEL_ID", "test/minilm-renamed")  # ... under another id
    with pytest.raises(Exception, match="embedding coverage"):
        verify_tenant(tenant="pharma")
    result = backfill_embeddings(tenant="pharma")
    assert all(r["stale"] == r["rows"] for r in result.values())
    assert sum(r["rows"] for r in result.values()) > 150
    again = backfill_embeddings(tenant="pharma")
    assert all(r["stale"] == 0 for r in again.values())
    with psycopg.connect(sample_env["target"]) as conn:
        models = {r[0] for r in conn.execute("SELECT DISTINCT embedding_model FROM agents")}
    assert models == {"test/minilm-renamed"}
    assert verify_tenant(tenant="pharma")["passed"]


def test_a_run_killed_with_sigkill_and_restarted_ends_like_an_uninterrupted_run(sample_env, pg_server, prefect_env):
    env = {**prefect_env, "VITAL_SOURCE_DSN": sample_env["source"], "VITAL_TARGET_DSN": sample_env["target"]}
    cmd = [str(CLI), "migrate", "--tenant", "pharma", "--batch-size", "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    with psycopg.connect(sample_env["target"], autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT count(*) FROM org_roles").fetchone()[0] > 0:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = contents(sample_env["target"])
    assert interrupted["org_roles"] and not interrupted["prompts"], "killed part-way"
    with psycopg.connect(sample_env["target"]) as conn:
        killed = str(conn.execute("SELECT id FROM etl.runs WHERE status = 'running'").fetchone()[0])
    left = Path(env["VITAL_HOME"]) / "runs" / killed / "load"
    batch_files = sorted(p.name for p in left.glob("*.parquet"))
    assert "org_roles.1.parquet" in batch_files, batch_files  # the crashed run's batches, for inspection
    assert pl.read_parquet(left / "org_roles.1.parquet").height == 4

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with psycopg.connect(sample_env["target"]) as conn:
        finished = str(conn.execute("SELECT id FROM etl.runs WHERE status = 'completed'").fetchone()[0])
    assert not (Path(env["VITAL_HOME"]) / "runs" / finished).exists()  # a completed run removes its own
    assert sorted(p.name for p in left.glob("*.parquet")) == batch_files  # and nothing of another run

    clean = pg_server.dsn("clean_" + sample_env["target"].rsplit("/", 1)[-1].split("?")[0])
    bootstrap(clean)
    done = subprocess.run(cmd, env={**env, "VITAL_TARGET_DSN": clean}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert contents(sample_env["target"]) == contents(clean)


def test_plan_prune_and_the_guard_end_to_end(sample_env):
    """Issue 15 through the flow: a plan names the edit, the addition and the removal and writes
    nothing; the guard refuses a prune over max_delete_ratio before anything is written; a soft
    prune hides the row, the row coming back un-hides it, a hard prune removes it."""
    from test_prune import db_hashes

    from core.errors import PruneRefused

    target = sample_env["target"]
    migrate_tenant(tenant="pharma")
    tools_file = sample.sample_dir() / "exports" / "tools.json"
    original = tools_file.read_text()
    tools = json.loads(original)
    try:
        tools[1]["description"] = "FDA label lookup, now with boxed warnings."
        removed = tools.pop()
        tools_file.write_text(json.dumps([*tools, {**tools[0], "name": "Veeva Vault", "slug": "veeva-vault"}]))
        before = db_hashes(target)
        planned = migrate_tenant(tenant="pharma", plan=True, prune=True, max_delete_ratio=0.5)
        assert db_hashes(target) == before  # not even etl.runs or the embedding cache
        t = planned["plan"]["tables"]["tools"]
        assert (t["insert"], list(t["update"]), t["remove"]) == (["veeva-vault"], [tools[1]["slug"]], [removed["slug"]])
        assert planned["plan"]["embed"]["texts"] == 2
        with pytest.raises(PruneRefused, match=r"tools 1 of 5 rows \(20%\)"):
            migrate_tenant(tenant="pharma", prune=True)  # rules/prune.yaml: 0.1
        assert db_hashes(target) == before  # refused before anything was written
        soft = migrate_tenant(tenant="pharma", prune="soft", max_delete_ratio=0.5)
        assert soft["pruned"] == {"tools": 1} and soft["verify"]["passed"]

        def hidden() -> int:
            with psycopg.connect(target) as conn:
                return conn.execute(
                    "SELECT count(*) FROM tools WHERE legacy_key = %s AND deleted_at IS NOT NULL", (removed["slug"],)
                ).fetchone()[0]

        assert hidden() == 1
        tools_file.write_text(original)  # back in the sources: visible again
        migrate_tenant(tenant="pharma")
        assert hidden() == 0
        tools_file.write_text(json.dumps(tools))  # gone again, and veeva-vault (no longer in the sources)
        hard = migrate_tenant(tenant="pharma", prune=True, max_delete_ratio=0.5)
        assert hard["pruned"] == {"tools": 2}
        with psycopg.connect(target) as conn:
            left = {k for (k,) in conn.execute("SELECT legacy_key FROM tools")}
        assert left == {t["slug"] for t in tools}
    finally:
        tools_file.write_text(original)


def test_a_run_that_embeds_after_a_deferred_one_fills_every_vector(sample_env):
    """Rows loaded without vectors are unchanged to the loader, but not to the embed step: their
    batches are not skipped, and every row gets its vector."""
    deferred = migrate_tenant(tenant="pharma", entities=["tools", "agents"], embed=False)
    assert deferred["entities"]["agents"]["embedded"] == 0
    full = migrate_tenant(tenant="pharma", entities=["tools", "agents"])
    assert full["entities"]["agents"]["embedded"] == 36 and full["entities"]["agents"]["written"] == 36
    with psycopg.connect(sample_env["target"]) as conn:
        assert conn.execute("SELECT count(*) FROM agents WHERE embedding IS NULL").fetchone()[0] == 0
    again = migrate_tenant(tenant="pharma", entities=["tools", "agents"])
    assert again["entities"]["agents"]["written"] == 0 and again["entities"]["agents"]["unchanged"] == 36
