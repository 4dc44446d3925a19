"""Issue 13, what the database can do to a run: rows it refuses for any data reason (NUL bytes,
non-finite numbers, an index row too big, a trigger's RAISE EXCEPTION) are quarantined and the
rest loads; a restart mid-run is ridden out; a run that dies is never left `running`; schema
files cannot break their own atomicity; a narrower manifest removes no link; a failed verify
fails the run and the commands."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import psycopg
import pytest
from test_bootstrap import user_objects
from test_load import agents, count

from core import connections as db
from core.catalogue import JUNCTIONS
from core.errors import ConfigError, ConnectionFailed, MigrationError
from core.identity import row_id, tenant_id
from core.settings import SCHEMA_DIR
from flows.migrate import migrate_tenant
from local.embedded import EmbeddedPostgres
from tasks.load import load_rows
from tasks.runs import quarantine, recorded_run, start_run

from conftest import bootstrap
from test_migrate_sample import CLI, sample_env  # noqa: F401  (sample_env is a fixture)

PHARMA = str(tenant_id("pharma"))

# ---------------------------------------------------------------------------------------------
# 4. A schema file cannot end the runner's transaction: transaction control is refused before
#    anything changes.


@pytest.mark.parametrize(
    "body, statement, word",
    [
        ("BEGIN;\nCREATE TABLE half_done (id int);\nCOMMIT;\nCREATE TABLE later (x no_such_type);\n", 1, "BEGIN"),
        ("CREATE TABLE half_done (id int);\nCOMMIT;\nCREATE TABLE later (id int);\n", 2, "COMMIT"),
        ("START TRANSACTION;\nCREATE TABLE half_done (id int);\nEND;\n", 1, "START TRANSACTION"),
        ("CREATE TABLE half_done (id int);\nSAVEPOINT s;\nROLLBACK TO SAVEPOINT s;\n", 2, "SAVEPOINT"),
        ("CREATE TABLE half_done (id int);\n/* done */ commit;\n", 2, "COMMIT"),
    ],
)
def test_a_schema_file_with_its_own_transaction_control_is_refused_and_leaves_no_trace(
    fresh_dsn, tmp_path, body, statement, word
):
    folder = tmp_path / "schema"
    folder.mkdir()
    for name in ("0001_etl_bookkeeping.sql", "0002_enums.sql", "0003_tenants.sql"):
        shutil.copy(SCHEMA_DIR / name, folder / name)
    (folder / "0004_own_transaction.sql").write_text(body)
    before = user_objects(fresh_dsn)
    with pytest.raises(MigrationError) as err:
        bootstrap(fresh_dsn, migrations_dir=folder)
    assert str(err.value).startswith(
        f"0004_own_transaction.sql: statement {statement} of {body.count(';')} (line {statement}) is {word}: "
        "a schema file may not control transactions (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...)"
    )
    assert str(err.value).endswith("Nothing was changed.")
    assert err.value.file == "0004_own_transaction.sql" and err.value.line == statement
    assert user_objects(fresh_dsn) == before  # refused in preflight: not even the ledger exists


# ---------------------------------------------------------------------------------------------
# 6, 7. Data errors are told by SQLSTATE, not by exception class: quarantined, never retried.


def test_a_row_too_big_for_its_index_is_quarantined_without_retries(target_dsn):
    rows = agents(10)
    rows[4]["legacy_key"] = base64.b64encode(os.urandom(3_000)).decode()  # incompressible, over 2704 bytes
    started = time.monotonic()
    result = load_rows(target_dsn, "agents", rows, batch_size=10)
    assert time.monotonic() - started < 10  # no backoff: today it retried for 45-75 s
    assert result.retries == 0 and result.loaded == 9 and count(target_dsn) == 9
    [(row, reason)] = result.failed
    assert row is rows[4]
    assert reason.startswith("index row size ") and "exceeds btree version 4 maximum 2704" in reason


def test_a_trigger_raise_exception_quarantines_the_row(target_dsn):
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute(
            """CREATE FUNCTION refuse_listed() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                   IF NEW.name LIKE 'refused%' THEN RAISE EXCEPTION 'agent % is on the refusal list', NEW.legacy_key;
                   END IF;
                   RETURN NEW;
               END $$"""
        )
        conn.execute(
            "CREATE TRIGGER refuse_listed BEFORE INSERT ON agents FOR EACH ROW EXECUTE FUNCTION refuse_listed()"
        )
    rows = agents(10)
    rows[3]["name"] = "refused agent"
    result = load_rows(target_dsn, "agents", rows, batch_size=10)
    assert result.retries == 0 and result.loaded == 9 and count(target_dsn) == 9
    assert [(row["legacy_key"], reason) for row, reason in result.failed] == [("a3", "agent a3 is on the refusal list")]


# ---------------------------------------------------------------------------------------------
# 5. NUL bytes and non-finite numbers: the row is quarantined with a reason, and the quarantine
#    write itself never fails.


def test_nul_bytes_and_non_finite_numbers_are_quarantined_and_written(target_dsn):
    rows = agents(6)
    rows[1]["name"] = "nul\x00agent"  # PostgreSQL text cannot hold NUL
    rows[2]["temperature"] = float("inf")  # a float that overflowed
    rows[3]["metadata"] = {"score": float("nan"), "note": "x\x00y"}
    rows[4]["legacy_key"] = "key\x00with-nul"
    result = load_rows(target_dsn, "agents", rows, batch_size=6)
    assert result.loaded == 2 and count(target_dsn) == 2
    refused = {row["id"]: reason for row, reason in result.failed}
    assert set(refused) == {rows[i]["id"] for i in (1, 2, 3, 4)}
    assert refused[rows[1]["id"]] == 'invalid byte sequence for encoding "UTF8": 0x00'
    assert refused[rows[2]["id"]].startswith("numeric field overflow (")

    with psycopg.connect(target_dsn, autocommit=True) as conn:
        run_id = start_run(conn, "migrate-tenant", "pharma", {})
        written = quarantine(
            conn,
            run_id,
            "pharma",
            "agents",
            [(row["legacy_key"], f"database refused the row: {reason}", row) for row, reason in result.failed]
            + [("json-text", "a normalizer's reject", '{"n": NaN, "s": "a\\u0000b", "big": 1e400}')],
        )
        assert written == 5
        stored = {
            key: payload
            for key, payload in conn.execute(
                "SELECT legacy_key, payload FROM etl.quarantine WHERE run_id = %s", (run_id,)
            ).fetchall()
        }
    assert stored["a1"]["name"] == "nul\\u0000agent"
    assert stored["a2"]["temperature"] == "Infinity"
    assert stored["a3"]["metadata"] == '{"score": NaN, "note": "x\\u0000y"}'  # kept as the text that was refused
    assert stored["key\\u0000with-nul"]["legacy_key"] == "key\\u0000with-nul"
    assert stored["json-text"] == {"n": "NaN", "s": "a\\u0000b", "big": "Infinity"}


def test_a_migration_with_nul_and_infinity_rows_quarantines_them_and_loads_the_rest(
    target_dsn, tmp_path, prefect_harness
):
    rows = [
        {"id": "ok-1", "name": "ok_agent", "description": "A plain agent", "business_function": "Regulatory Affairs"},
        {"id": "nul-1", "name": "nul\u0000agent", "description": "NUL inside", "business_function": "Regulatory"},
        {"id": "inf-1", "name": "inf_agent", "description": "overflowing", "temperature": 1e400},
        {"id": "ok-2", "name": "ok_agent_2", "description": "Another plain agent", "status": "active"},
    ]
    exports = tmp_path / "agents.json"
    exports.write_text(json.dumps(rows).replace("Infinity", "1e400"))
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(f"entities:\n  agents:\n    - {{kind: json, path: {exports}}}\n")
    summary = migrate_tenant(tenant="pharma", manifest=str(manifest), batch_size=10)
    assert summary["reconciled"] and summary["verify"]["passed"]
    agents_counts = summary["entities"]["agents"]
    assert (agents_counts["read"], agents_counts["loaded"], agents_counts["quarantined"]) == (4, 2, 2)
    with psycopg.connect(target_dsn) as conn:
        assert sorted(r[0] for r in conn.execute("SELECT legacy_key FROM agents")) == ["ok-1", "ok-2"]
        quarantined = conn.execute("SELECT legacy_key, reason, payload FROM etl.quarantine ORDER BY 1").fetchall()
        status = conn.execute("SELECT status FROM etl.runs WHERE id = %s", (summary["run_id"],)).fetchone()[0]
    (nul_key, nul_reason, nul_payload), (_, inf_reason, _) = quarantined  # the reader refuses 1e400 by record
    assert (nul_key, nul_reason) == (
        "nul-1",
        'database refused the row: invalid byte sequence for encoding "UTF8": 0x00',
    )
    assert nul_payload["name"] == "nul\\u0000agent"
    assert "1e400" in inf_reason
    assert status == "completed"


# ---------------------------------------------------------------------------------------------
# 8. Connection faults: refused or dropped is transient (ridden out), a wrong database or a
#    malformed DSN is a configuration error at once; a run is never left `running`.


@pytest.fixture
def own_server(tmp_path):
    """An embedded PostgreSQL of this test alone (it gets stopped and started)."""
    server = EmbeddedPostgres(tmp_path / "home")
    server.start(persistent=False)
    yield server
    server.stop()


def test_a_wrong_database_or_dsn_is_a_config_error_at_once(pg_server):
    good = pg_server.dsn("postgres")
    for dsn in (good.replace("/postgres?", "/no_such_db?"), good.replace("postgres:@", "no_such_role:@")):
        started = time.monotonic()
        with pytest.raises(ConfigError, match=r"^cannot connect to .*does not exist; check VITAL_SOURCE_DSN"):
            db.connect(dsn)
        assert time.monotonic() - started < 2  # not retried
    with pytest.raises(ConfigError, match=r"^cannot connect to postgresql://etl:\*\*\*@"):
        db.connect("postgresql://etl:pw@h/db?no_such_option=1")


def test_a_stopped_server_is_retried_then_a_transient_error(own_server):
    dsn = own_server.dsn("postgres")
    own_server.stop()
    with pytest.raises(ConnectionFailed, match=r"^cannot connect to .*\(3 attempt\(s\) over \d+ s\)"):
        db.connect(dsn, attempts=3)


def test_the_database_stopped_for_5_seconds_mid_load_is_ridden_out(own_server, caplog):
    dsn = own_server.dsn("vital")
    bootstrap(dsn)
    outage: dict = {}

    def stop_for_5_seconds(conn):
        if outage:
            return
        outage["stopped"] = time.monotonic()
        own_server.stop()  # fast shutdown: this batch's connection is dropped

        def start_again():
            time.sleep(5)
            own_server.start(persistent=False)
            outage["started"] = time.monotonic()

        outage["thread"] = threading.Thread(target=start_again)
        outage["thread"].start()

    result = load_rows(dsn, "agents", agents(100), batch_size=10, on_batch=stop_for_5_seconds)
    outage["thread"].join()
    assert outage["started"] - outage["stopped"] >= 5
    assert (result.loaded, result.failed) == (100, [])
    assert result.retries >= 1
    assert count(dsn) == 100
    assert any("retrying" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_a_migration_survives_a_database_restart_mid_load(sample_env, own_server, monkeypatch, caplog):  # noqa: F811
    target = own_server.dsn("vital")
    bootstrap(target)
    monkeypatch.setenv("VITAL_TARGET_DSN", target)
    outage: dict = {}

    def restart_when_rows_land():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not outage:
            try:
                with psycopg.connect(target, autocommit=True) as conn:
                    if conn.execute("SELECT count(*) FROM org_roles").fetchone()[0] > 0:
                        outage["stopped"] = time.monotonic()
                        break
            except psycopg.Error:
                pass
            time.sleep(0.05)
        if outage:
            own_server.stop()
            time.sleep(5)
            own_server.start(persistent=False)
            outage["started"] = time.monotonic()

    watcher = threading.Thread(target=restart_when_rows_land)
    watcher.start()
    summary = migrate_tenant(tenant="pharma", batch_size=4)
    watcher.join()
    assert outage.get("started"), "the database was not restarted during the run"
    assert summary["reconciled"] and summary["verify"]["passed"]
    assert (summary["entities"]["agents"]["loaded"], summary["entities"]["agents"]["quarantined"]) == (36, 5)
    with psycopg.connect(target) as conn:
        for entity, c in summary["entities"].items():
            rows = conn.execute(f"SELECT count(*) FROM {entity} WHERE tenant_id = %s", (PHARMA,)).fetchone()[0]
            assert rows == c["loaded"], entity
        assert conn.execute("SELECT status FROM etl.runs WHERE id = %s", (summary["run_id"],)).fetchone()[0] == (
            "completed"
        )
    assert any(
        "retrying" in r.getMessage() or "AwaitingRetry" in r.getMessage()
        for r in caplog.records
        if r.levelname in ("WARNING", "INFO")
    )


def test_a_run_left_running_by_a_dead_process_is_marked_abandoned(target_dsn):
    gone = subprocess.Popen(["true"])
    gone.wait()
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO etl.runs (id, flow, tenant_slug, host, pid)
               VALUES ('00000000-0000-0000-0000-00000000dead', 'migrate-tenant', 'pharma', %s, %s)""",
            (socket.gethostname(), gone.pid),
        )
        mine = start_run(conn, "migrate-tenant", "pharma", {})
        start_run(conn, "migrate-tenant", "digital-health", {})  # a later run: this process is alive
        status = dict(conn.execute("SELECT id::text, status FROM etl.runs").fetchall())
        error = conn.execute("SELECT error FROM etl.runs WHERE status = 'abandoned'").fetchone()[0]
    assert status["00000000-0000-0000-0000-00000000dead"] == "abandoned"
    assert status[mine] == "running"
    assert error.startswith(f"abandoned: its process (pid {gone.pid} on {socket.gethostname()}) ended without")


def test_a_run_ended_by_any_exception_is_marked_failed(target_dsn):
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        run_id = start_run(conn, "migrate-tenant", "pharma", {})
    with pytest.raises(KeyboardInterrupt), recorded_run(run_id, {"entities": {}}):
        raise KeyboardInterrupt("Ctrl-C")
    with psycopg.connect(target_dsn) as conn:
        assert conn.execute("SELECT status, error FROM etl.runs WHERE id = %s", (run_id,)).fetchone() == (
            "failed",
            "KeyboardInterrupt: Ctrl-C",
        )


# ---------------------------------------------------------------------------------------------
# 2. A narrower manifest removes no link; the same sources stating less remove what they no
#    longer state, and say so.


def links(dsn: str) -> dict[str, set]:
    """pharma's junction rows by their keys (both ends and kind), per junction."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for j in JUNCTIONS:
            kind = j.kind or "NULL"
            out[j.name] = set(
                conn.execute(
                    f"SELECT {j.a_col}, {j.b_col}, {kind} FROM {j.name} WHERE tenant_id = %s", (PHARMA,)
                ).fetchall()
            )
    return out


def test_a_narrower_manifest_removes_no_link(sample_env, tmp_path):  # noqa: F811
    target, source = sample_env["target"], sample_env["source"]
    migrate_tenant(tenant="pharma")
    before = links(target)
    assert len(before["agent_capabilities"]) > 10

    narrow = tmp_path / "narrow.yaml"
    labels = "${VITAL_HOME}/sample/exports/agent_tenant_labels.json"
    narrow.write_text(
        f"tenant_labels:\n  agents: {{kind: json, path: '{labels}', key: agent_id, labels: tenants}}\n"
        "entities:\n"
        "  capabilities:\n    - {kind: postgres, query: 'SELECT * FROM public.capabilities ORDER BY id LIMIT 1'}\n"
        "  agents:\n    - {kind: postgres, query: 'SELECT * FROM public.agents ORDER BY id LIMIT 1'}\n"
    )
    summary = migrate_tenant(tenant="pharma", manifest=str(narrow))
    assert summary["reconciled"]
    assert all(j.get("removed", 0) == 0 for j in summary["junctions"].values())
    assert links(target) == before

    # the same sources, one agent's capabilities emptied: its links to rows the run reads go, counted
    with psycopg.connect(source) as conn:
        legacy_ids = [str(r[0]) for r in conn.execute("SELECT id FROM agents ORDER BY id DESC")]
    with psycopg.connect(target) as conn:
        linked = dict(
            conn.execute(
                """SELECT a.legacy_key, count(*) FROM agent_capabilities j JOIN agents a ON a.id = j.agent_id
                   JOIN capabilities c ON c.id = j.capability_id
                   WHERE j.tenant_id = %s AND c.legacy_key NOT LIKE 'ref:%%' GROUP BY 1""",
                (PHARMA,),
            ).fetchall()
        )
    agent = next(key for key in legacy_ids if key in linked)
    with psycopg.connect(source) as conn:
        assert conn.execute("UPDATE agents SET capabilities = '{}' WHERE id::text = %s", (agent,)).rowcount == 1
    again = migrate_tenant(tenant="pharma")
    after = links(target)
    gone = before["agent_capabilities"] - after["agent_capabilities"]
    assert {a for a, _, _ in gone} == {row_id(PHARMA, "agents", agent)}
    assert len(gone) == linked[agent] == again["junctions"]["agent_capabilities"]["removed"]
    assert (
        f"agent_capabilities: removed {len(gone)} link(s) that an earlier run derived from the same sources "
        "and that the sources no longer state" in again["findings"]
    )


# ---------------------------------------------------------------------------------------------
# 12. A failed verify fails the run, after its report, and the commands exit non-zero.


def test_a_failing_verify_fails_the_migration_and_the_commands(target_dsn, tmp_path, prefect_env):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"name": "PubMed Search", "slug": "pubmed"}, {"name": "Label Lookup"}]))
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(f"entities:\n  tools:\n    - {{kind: json, path: {tools}}}\n")
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE tools DISABLE ROW LEVEL SECURITY")  # what verify must catch
    env = {**prefect_env, "VITAL_TARGET_DSN": target_dsn}
    done = subprocess.run(
        [str(CLI), "migrate", "--tenant", "pharma", "--manifest", str(manifest)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    out = done.stdout + done.stderr  # the flow's prints go to its log
    assert "# migrate-tenant `pharma` (loaded)" in out and "## verify-tenant: FAILED" in out  # the report
    assert (
        "vital-etl: migrate-tenant pharma: 1 verify check(s) failed: row level security "
        "(tools: 2 rows visible with no tenant set)" in done.stderr
    )
    with psycopg.connect(target_dsn) as conn:
        status, passed = conn.execute("SELECT status, counts -> 'verify' ->> 'passed' FROM etl.runs").fetchone()
    assert (status, passed) == ("completed", "false")  # loaded, but not verified

    report = subprocess.run(
        [str(CLI), "report", "--tenant", "pharma"], env=env, capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 1, report.stderr[-3000:]
    assert "## verify-tenant: FAILED" in report.stdout
