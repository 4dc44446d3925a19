"""etl.runs and etl.quarantine: one row per flow run, and every rejected row with its reason."""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.connections import connect, target_dsn
from core.retry import IO_RETRIES
from tasks.load import to_text


def start_run(conn: psycopg.Connection, flow: str, tenant: str | None, parameters: dict) -> str:
    run_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO etl.runs (id, flow, tenant_slug, parameters) VALUES (%s, %s, %s, %s)",
        (run_id, flow, tenant, json.dumps(parameters, default=str)),
    )
    return run_id


def finish_run(conn: psycopg.Connection, run_id: str, counts: dict, status: str, error: str | None = None) -> None:
    conn.execute(
        "UPDATE etl.runs SET counts = %s, status = %s, error = %s, finished_at = now() WHERE id = %s",
        (json.dumps(counts, default=str), status, error, run_id),
    )


def quarantine(
    conn: psycopg.Connection, run_id: str, tenant: str, entity: str, rows: list[tuple[str | None, str, dict | str]]
) -> int:
    """rows: (legacy key, reason, payload) -> etl.quarantine."""
    if not rows:
        return 0
    with (
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy("COPY etl.quarantine (run_id, tenant_slug, entity, legacy_key, reason, payload) FROM STDIN") as copy,
    ):
        for key, reason, payload in rows:
            text = (
                payload
                if isinstance(payload, str)
                else json.dumps(
                    {
                        k: to_text(v) if not isinstance(v, (int, float, bool, type(None))) else v
                        for k, v in payload.items()
                    },
                    ensure_ascii=False,
                    default=str,
                )
            )
            copy.write_row([run_id, tenant, entity, key, reason, text])
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
def begin_run(tenant: str, parameters: dict) -> str:
    with connect(target_dsn(), autocommit=True) as conn:
        return start_run(conn, "migrate-tenant", tenant, parameters)


@task(name="finish-run", cache_policy=NO_CACHE, **IO_RETRIES)
def end_run(run_id: str, summary: dict, status: str, error: str | None = None) -> None:
    with connect(target_dsn(), autocommit=True) as conn:
        finish_run(conn, run_id, summary, status, error)


@contextmanager
def recorded_run(run_id: str, summary: dict):
    """etl.runs ends `completed` with the summary, or `failed` with the error (then re-raised)."""
    try:
        yield
    except Exception as exc:
        end_run(run_id, summary, "failed", f"{type(exc).__name__}: {exc}")
        raise
    end_run(run_id, summary, "completed")


@task(name="write-quarantine", task_run_name="quarantine-{entity}-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def write_quarantine(run_id: str, tenant: str, entity: str, rows: list) -> int:
    with connect(target_dsn(), autocommit=True) as conn:
        return quarantine(conn, run_id, tenant, entity, rows)


@task(name="record-ids", task_run_name="record-ids-{entity}-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def record_id_map(tenant: str, entity: str, pairs: list[tuple[str, str]]) -> None:
    with connect(target_dsn(), autocommit=True) as conn:
        record_ids(conn, tenant, entity, pairs)


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
