"""etl.runs and etl.quarantine: one row per flow run, and every rejected row with its reason.

A run row records the process that runs it (host, pid, the pid's start time): a run whose
process died without a word (SIGKILL, a lost machine) is marked `abandoned` by the next run
on that host; any other ending marks it `completed` or `failed`."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.connections import connect, pid_alive, target_dsn
from core.retry import IO_RETRIES
from core.settings import vital_home
from tasks.load import to_text

log = logging.getLogger(__name__)


def _pid_start(pid: int) -> int | None:
    """When the process started (clock ticks since boot, Linux), so a reused pid is told apart."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _process_alive(pid: int, started: int | None) -> bool:
    return pid_alive(pid) and (started is None or _pid_start(pid) in (None, started))


def abandon_dead_runs(conn: psycopg.Connection) -> int:
    """Runs left `running` by a process of this host that no longer exists become `abandoned`."""
    host = socket.gethostname()
    running = conn.execute(
        "SELECT id, pid, pid_start FROM etl.runs WHERE status = 'running' AND host = %s AND pid IS NOT NULL", (host,)
    ).fetchall()
    dead = [str(run_id) for run_id, pid, started in running if not _process_alive(pid, started)]
    if dead:
        conn.execute(
            """UPDATE etl.runs SET status = 'abandoned', finished_at = now(), error = format(
                 'abandoned: its process (pid %%s on %%s) ended without finishing the run (killed, or the '
                 'machine stopped); found by a later run at %%s. Run migrate-tenant again: re-runs are safe',
                 pid, host, now()::timestamptz(0))
               WHERE id = ANY(%s::uuid[]) AND status = 'running'""",
            (dead,),
        )
    return len(dead)


def run_folder(run_id: str) -> Path:
    """A run's files, stage by stage (`extract/`, `load/`): removed when the run completes,
    kept for inspection when it fails."""
    return vital_home() / "runs" / run_id


def remove_run_folder(run_id: str) -> None:
    shutil.rmtree(run_folder(run_id), ignore_errors=True)


def new_run_id() -> str:
    """A run's id, chosen before anything is read: its files go under runs/<id>/ from the start."""
    return str(uuid.uuid4())


def start_run(
    conn: psycopg.Connection, flow: str, tenant: str | None, parameters: dict, run_id: str | None = None
) -> str:
    """A new `running` row owned by this process (after marking dead processes' runs abandoned).
    run_id: the id chosen before (the run's folder is named by it); a retry finds its row there."""
    abandon_dead_runs(conn)
    run_id = run_id or new_run_id()
    conn.execute(
        """INSERT INTO etl.runs (id, flow, tenant_slug, parameters, host, pid, pid_start)
           VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING""",
        (
            run_id,
            flow,
            tenant,
            json.dumps(writable(parameters), allow_nan=False, default=str),
            socket.gethostname(),
            os.getpid(),
            _pid_start(os.getpid()),
        ),
    )
    return run_id


def finish_run(conn: psycopg.Connection, run_id: str, counts: dict, status: str, error: str | None = None) -> None:
    conn.execute(
        "UPDATE etl.runs SET counts = %s, status = %s, error = %s, finished_at = now() WHERE id = %s",
        (json.dumps(writable(counts), allow_nan=False, default=str), status, writable(error), run_id),
    )


NUL = "\x00"


def writable(value):
    """A value that COPY and jsonb always accept: NUL (which PostgreSQL text cannot hold) spelled
    `\\u0000`, non-finite floats as the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, str):
        return value.replace(NUL, "\\u0000")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {writable(str(k)): writable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [writable(v) for v in value]
    return value


def payload_json(payload: dict | str) -> str:
    """A quarantined row as jsonb text: top-level values that are not scalars as PostgreSQL text
    (arrays, nested JSON), and always writable. A JSON text payload is parsed and cleaned the
    same way; one that is not JSON is kept under "text"."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload, strict=False)
        except ValueError:
            payload = {"text": payload}
        if not isinstance(payload, dict):
            payload = {"value": payload}
    else:
        payload = {
            k: to_text(v) if not isinstance(v, (int, float, bool, type(None))) else v for k, v in payload.items()
        }
    return json.dumps(writable(payload), ensure_ascii=False, allow_nan=False, default=str)


def quarantine(conn: psycopg.Connection, run_id: str, tenant: str, entity: str, rows: list[tuple]) -> int:
    """rows: (legacy key, reason, payload[, source, source row]) -> etl.quarantine. Whatever the
    row holds (NUL bytes, non-finite numbers), it is written: see writable()."""
    if not rows:
        return 0
    columns = "run_id, tenant_slug, entity, legacy_key, reason, payload, source, source_row"
    with (
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy(f"COPY etl.quarantine ({columns}) FROM STDIN") as copy,
    ):
        for key, reason, payload, *where in rows:
            source, row = (where + [None, None])[:2]
            copy.write_row(
                [run_id, tenant, entity, writable(key), writable(reason), payload_json(payload), writable(source), row]
            )
    return len(rows)


def last_run(conn: psycopg.Connection, flow: str, tenant: str) -> dict | None:
    row = conn.execute(
        """SELECT id, status, counts, started_at, finished_at FROM etl.runs
           WHERE flow = %s AND tenant_slug = %s AND status = 'completed'
           ORDER BY finished_at DESC LIMIT 1""",
        (flow, tenant),
    ).fetchone()
    if row is None:
        return None
    return {
        "id": str(row[0]),
        "status": row[1],
        "counts": row[2],
        "started_at": str(row[3]),
        "finished_at": str(row[4]),
    }


def record_ids(conn: psycopg.Connection, tenant: str, entity: str, pairs: list[tuple[str, str]]) -> None:
    """etl.id_map: which target id each legacy key became (first seen kept)."""
    if not pairs:
        return
    conn.execute(
        """INSERT INTO etl.id_map (tenant_slug, entity, legacy_key, id)
           SELECT %s, %s, k, i FROM unnest(%s::text[], %s::uuid[]) AS x(k, i)
           ON CONFLICT DO NOTHING""",
        (tenant, entity, [k for k, _ in pairs], [i for _, i in pairs]),
    )


@task(name="start-run", cache_policy=NO_CACHE, **IO_RETRIES)
def begin_run(tenant: str, parameters: dict, run_id: str | None = None) -> str:
    with connect(target_dsn(), autocommit=True) as conn:
        return start_run(conn, "migrate-tenant", tenant, parameters, run_id)


@task(name="finish-run", cache_policy=NO_CACHE, **IO_RETRIES)
def end_run(run_id: str, summary: dict, status: str, error: str | None = None) -> None:
    with connect(target_dsn(), autocommit=True) as conn:
        finish_run(conn, run_id, summary, status, error)


def store_verify(conn: psycopg.Connection, run_id: str, verify: dict) -> None:
    """The run's verify-tenant checks go into its counts (what `vital-etl report` reads)."""
    conn.execute(
        "UPDATE etl.runs SET counts = counts || jsonb_build_object('verify', %s::jsonb) WHERE id = %s",
        (json.dumps(writable(verify), allow_nan=False, default=str), run_id),
    )


@task(name="record-verify", cache_policy=NO_CACHE, **IO_RETRIES)
def record_verify(run_id: str, verify: dict) -> None:
    with connect(target_dsn(), autocommit=True) as conn:
        store_verify(conn, run_id, verify)


@contextmanager
def recorded_run(run_id: str, summary):
    """etl.runs ends `completed` with the summary (a dict, or a RunSummary as it stands when the
    block ends), or `failed` with the error (then re-raised), whatever ended the run: an
    exception, a cancellation, Ctrl-C. A process killed outright leaves `running`, which the next
    run on the host marks `abandoned`."""

    def counts() -> dict:
        return summary.as_dict() if hasattr(summary, "as_dict") else summary

    try:
        yield
    except BaseException as exc:
        try:  # straight, not as a retried task: the database may be what failed
            with connect(target_dsn(), autocommit=True) as conn:
                finish_run(conn, run_id, counts(), "failed", f"{type(exc).__name__}: {exc}"[:2000])
        except Exception as failed:
            log.warning("could not mark run %s failed (a later run marks it abandoned): %s", run_id, failed)
        raise
    end_run(run_id, counts(), "completed")


@task(name="read-run-summaries", cache_policy=NO_CACHE, **IO_RETRIES)
def read_run_summaries(slugs: list[str]) -> dict[str, dict]:
    with connect(target_dsn(), autocommit=True) as conn:
        return {slug: (last_run(conn, "migrate-tenant", slug) or {}).get("counts", {}) for slug in slugs}


def run_parameters(tenant: str, manifest, entities: list[str], batch_size: int, embed: bool) -> dict:
    """What etl.runs records of a migrate-tenant run's parameters (never a DSN)."""
    from prefect.context import FlowRunContext

    from core.settings import model_spec

    ctx = FlowRunContext.get()
    return {
        "tenant": tenant,
        "manifest": str(manifest.path),
        "entities": entities,
        "batch_size": batch_size,
        "embed": embed,
        "model": model_spec().model_id,
        "flow_run": str(ctx.flow_run.id) if ctx and ctx.flow_run else None,
    }
