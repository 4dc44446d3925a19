"""The Prefect way, for real: a local Prefect server and a process worker (once per session),
the deployments of prefect.yaml, `prefect deployment run` with a parameter override, a
transient database fault retried by Prefect, and the Dask task runner."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from prefect.futures import PrefectFuture
from prefect.settings import PREFECT_API_URL, temporary_settings

from core.identity import tenant_id
from core.settings import ModelSpec
from sources import sample

from conftest import bootstrap
from test_migrate_sample import contents

ROOT = Path(__file__).resolve().parents[1]
PREFECT = ROOT / ".venv" / "bin" / "prefect"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(vital_home, pg_server):
    """`vital-etl up` on a free port, `prefect deploy --all`; `down` at the end."""
    from local import services

    os.environ["VITAL_PREFECT_PORT"] = str(_free_port())
    info = services.up()
    env = {**os.environ, "PREFECT_API_URL": info["api_url"], "VITAL_PROJECT_DIR": str(ROOT)}
    done = subprocess.run(
        [str(PREFECT), "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield {**info, "env": env}
    stopped = services.down()
    assert stopped == ["worker", "server"]
    assert services.status() == {"server": None, "worker": None, "api_url": None, "healthy": False}
    os.environ.pop("VITAL_PREFECT_PORT")


@pytest.fixture
def sample_dbs(fresh_dsn, pg_server):
    source = pg_server.dsn("srcdep_" + fresh_dsn.rsplit("/", 1)[-1].split("?")[0])
    s = sample.generate()
    sample.write_files(s, sample.sample_dir())
    sample.build_legacy_db(s, source)
    bootstrap(fresh_dsn)
    return {"VITAL_SOURCE_DSN": source, "VITAL_TARGET_DSN": fresh_dsn}


def run_deployment(server, name: str, dbs: dict, *params: str) -> subprocess.CompletedProcess:
    args = [str(PREFECT), "deployment", "run", name, "--watch", "--job-variable", f"env={json.dumps(dbs)}"]
    for p in params:
        args += ["--param", p]
    return subprocess.run(args, env=server["env"], capture_output=True, text=True, timeout=600)


def flow_run_id(output: str) -> str:
    for line in output.splitlines():
        if "UUID:" in line:
            return line.split("UUID:")[1].strip()
    raise AssertionError(output[-2000:])


def test_up_is_idempotent(server):
    from local import services

    again = services.up()
    assert again["started"] == [] and again["server"] == server["server"] and again["worker"] == server["worker"]


def test_deployment_run_with_a_parameter_override(server, sample_dbs):
    done = run_deployment(server, "migrate-tenant/pharma", sample_dbs, "batch_size=7")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Flow run finished successfully in 'Completed'" in done.stdout
    with psycopg.connect(sample_dbs["VITAL_TARGET_DSN"]) as conn:
        agents = conn.execute(
            "SELECT count(*) FROM agents WHERE tenant_id = %s", (str(tenant_id("pharma")),)
        ).fetchone()[0]
        params = conn.execute("SELECT parameters FROM etl.runs WHERE status = 'completed'").fetchone()[0]
    assert agents == 36 and params["batch_size"] == 7


def test_a_failing_batch_is_retried_by_prefect(server, sample_dbs):
    """The target refuses the first 4 inserts into org_functions with a serialization failure:
    more than the loader's own retries, so the embed-and-load task fails, and Prefect retries it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with psycopg.connect(sample_dbs["VITAL_TARGET_DSN"], autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE fault_seq")
        conn.execute("""CREATE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN IF nextval('fault_seq') <= 4 THEN
                          RAISE EXCEPTION 'injected fault' USING ERRCODE = 'serialization_failure';
                        END IF; RETURN NULL; END $$""")
        conn.execute(
            "CREATE TRIGGER inject_fault BEFORE INSERT ON org_functions "
            "FOR EACH STATEMENT EXECUTE FUNCTION inject_fault()"
        )
    done = run_deployment(server, "migrate-tenant/pharma", sample_dbs, 'entities=["org_functions"]')
    assert done.returncode == 0, done.stdout[-3000:]
    run_id = flow_run_id(done.stdout)
    with temporary_settings({PREFECT_API_URL: server["api_url"]}), get_client(sync_client=True) as client:
        deadline = time.monotonic() + 60  # task runs reach the server as events, a moment later
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            copy = [t for t in runs if t.name.startswith("load-org_functions-pharma")]
            if (copy and copy[0].state_name == "Completed") or time.monotonic() > deadline:
                break
            time.sleep(1)
        history = [s.name for s in client.read_flow_run_states(run_id)]
        states = [s.name for s in client.read_task_run_states(copy[0].id)]
    assert len(copy) == 1 and copy[0].run_count == 2, [(t.name, t.run_count) for t in copy]
    assert "AwaitingRetry" in states and states[-1] == "Completed", states
    assert history[-1] == "Completed"
    with psycopg.connect(sample_dbs["VITAL_TARGET_DSN"]) as conn:
        assert conn.execute("SELECT count(*) FROM org_functions").fetchone()[0] == 4


def test_dask_local_cluster_gives_the_same_rows(sample_dbs, pg_server, monkeypatch, prefect_harness):
    from prefect_dask import DaskTaskRunner

    from flows.migrate import migrate_tenant

    monkeypatch.setenv("VITAL_SOURCE_DSN", sample_dbs["VITAL_SOURCE_DSN"])
    monkeypatch.setenv("VITAL_TARGET_DSN", sample_dbs["VITAL_TARGET_DSN"])
    threads = migrate_tenant(tenant="pharma", batch_size=9)
    other = pg_server.dsn("dask_" + sample_dbs["VITAL_TARGET_DSN"].rsplit("/", 1)[-1].split("?")[0])
    bootstrap(other)
    monkeypatch.setenv("VITAL_TARGET_DSN", other)
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1})
    submitted = []
    submit = DaskTaskRunner.submit

    def recording(self, task, parameters, *args, **kwargs):
        submitted.append((task.name, parameters))
        return submit(self, task, parameters, *args, **kwargs)

    monkeypatch.setattr(DaskTaskRunner, "submit", recording)
    dask = migrate_tenant.with_options(task_runner=runner)(tenant="pharma", batch_size=9)
    # extract, normalize, embed and load ran on the workers, given paths and ids: no rows travel
    # with a task (normalize also gets the parsed rule and label files: configuration)
    by_name = {}
    for name, params in submitted:
        by_name.setdefault(name, []).append(params)
    assert set(by_name) == {"extract", "normalize", "embed-and-load"}
    read = set(threads["entities"]) - {"knowledge_chunks"}  # chunks are made from documents, not read
    assert sorted(p["entity"] for p in by_name["extract"]) == sorted(read)
    assert sorted(p["entity"] for p in by_name["normalize"]) == sorted(read)
    for params in by_name["extract"]:
        assert params["folder"].endswith("/extract") and isinstance(params["batch_size"], int)
    for params in by_name["normalize"]:
        assert isinstance(params["files"], PrefectFuture)  # the extract's result: its files' paths
        assert len(pickle.dumps({k: v for k, v in params.items() if k != "files"})) < 64 * 1024
    loads = by_name["embed-and-load"]
    tables = {p["table"] for p in loads}
    loaded = {e for e, c in threads["entities"].items() if c["loaded"]}
    assert tables == loaded | {j for j, c in threads["junctions"].items() if c["rows"]}
    for params in loads:
        assert all(isinstance(v, (str, int, ModelSpec)) or v is None for v in params.values()), params
        assert params["path"].endswith(f"/load/{params['table']}.{params['batch_no']}.parquet")
        assert len(pickle.dumps(params)) < 1024
    assert len(loads) > len(tables)  # batch_size=9: several batches for the larger tables
    assert dask["entities"] == threads["entities"]
    assert all(c["quarantined"] == 0 for e, c in dask["entities"].items() if e == "knowledge_domains")
    assert contents(other) == contents(sample_dbs["VITAL_TARGET_DSN"])


def test_migrate_all_through_the_deployments_with_dsns_in_secret_blocks(server, sample_dbs):
    """migrate-all starts one migrate-tenant run per tenant on the worker; the DSNs come from
    Prefect Secret blocks, named in the environment, never as values in parameters or logs."""
    from prefect.blocks.system import Secret

    names = {}
    with temporary_settings({PREFECT_API_URL: server["api_url"]}):
        for var, dsn in sample_dbs.items():
            names[f"{var}_SECRET"] = f"test-{var.lower().replace('_', '-')}"
            Secret(value=dsn).save(names[f"{var}_SECRET"], overwrite=True)
    done = run_deployment(server, "migrate-all/default", names)
    assert done.returncode == 0, done.stdout[-3000:]
    log = (Path(os.environ["VITAL_HOME"]) / "run" / "worker.log").read_text()
    assert "migrate-pharma" in log and "migrate-digital-health" in log
    with psycopg.connect(sample_dbs["VITAL_TARGET_DSN"]) as conn:
        per_tenant = dict(
            conn.execute("SELECT tenant_slug, count(*) FROM etl.runs WHERE status = 'completed' GROUP BY 1").fetchall()
        )
    assert per_tenant == {"pharma": 1, "digital-health": 1}
    for dsn in sample_dbs.values():
        assert dsn.split("?")[0] not in log


def test_secret_block_dsn(prefect_harness, monkeypatch):
    from prefect.blocks.system import Secret

    from core import connections as db
    from core.errors import ConfigError

    Secret(value="postgresql://etl:s3cret@db.internal/vital").save("vital-target-test", overwrite=True)
    monkeypatch.delenv("VITAL_TARGET_DSN", raising=False)
    monkeypatch.setenv("VITAL_TARGET_DSN_SECRET", "vital-target-test")
    assert db.target_dsn() == "postgresql://etl:s3cret@db.internal/vital"
    monkeypatch.setenv("VITAL_TARGET_DSN_SECRET", "no-such-block")
    with pytest.raises(ConfigError, match="VITAL_TARGET_DSN_SECRET='no-such-block': no Prefect Secret block"):
        db.target_dsn()


def test_migrate_all_dry_run_as_subflows_sums_the_tenants(sample_dbs, monkeypatch, prefect_harness):
    from flows.migrate import migrate_all

    for k, v in sample_dbs.items():
        monkeypatch.setenv(k, v)
    total = migrate_all(dry_run=True)
    tenants = total["tenants"]
    assert set(tenants) == {"pharma", "digital-health"} and total["reconciled"]
    for entity, c in total["entities"].items():
        assert c["read"] == sum(t["entities"][entity]["read"] for t in tenants.values())
        assert (
            c["loaded"]
            == tenants["pharma"]["entities"][entity]["loaded"] + tenants["digital-health"]["entities"][entity]["loaded"]
        )
