"""Keeping the target in step with the sources on re-runs: derived rows (chunks, junction rows
from source arrays) that a run no longer derives are removed; catalogue rows the sources no
longer have are only counted (reported, kept)."""

from __future__ import annotations

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import sql

from core.catalogue import junction as junction_of
from core.connections import connect, target_dsn
from core.retry import IO_RETRIES


def prune_chunks(conn: psycopg.Connection, tenant_id: str, document_ids: list[str], chunk_ids: list[str]) -> int:
    """Chunks of these documents that the new chunking did not produce."""
    return conn.execute(
        "DELETE FROM knowledge_chunks WHERE tenant_id = %s AND document_id = ANY(%s) AND NOT (id = ANY(%s))",
        (tenant_id, document_ids, chunk_ids),
    ).rowcount


def prune_links(conn: psycopg.Connection, junction: str, tenant_id: str, rows: list[dict]) -> int:
    """The tenant's automated junction rows that are not among `rows` (this run's)."""
    j = junction_of(junction)
    a_col, b_col, kind_col = j.a_col, j.b_col, j.kind
    keys = [(r[a_col], r[b_col], r.get(kind_col) if kind_col else "") for r in rows]
    kind_match = sql.SQL("AND k.t = j.{}").format(sql.Identifier(kind_col)) if kind_col else sql.SQL("")
    return conn.execute(
        sql.SQL(
            """DELETE FROM {j} j WHERE j.tenant_id = %s AND j.mapping_source = 'automated' AND NOT EXISTS (
             SELECT 1 FROM unnest(%s::uuid[], %s::uuid[], %s::text[]) AS k(a, b, t)
             WHERE k.a = j.{a} AND k.b = j.{b} {kind})"""
        ).format(j=sql.Identifier(junction), a=sql.Identifier(a_col), b=sql.Identifier(b_col), kind=kind_match),
        (tenant_id, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
    ).rowcount


def count_stale(conn: psycopg.Connection, table: str, tenant_id: str, ids: list[str]) -> int:
    """The tenant's rows in `table` whose id is not among `ids` (this run's)."""
    return conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s AND NOT (id = ANY(%s::uuid[]))").format(
            sql.Identifier(table)
        ),
        (tenant_id, ids),
    ).fetchone()[0]


@task(name="prune-chunks", cache_policy=NO_CACHE, **IO_RETRIES)
def prune_stale_chunks(tenant_id: str, document_ids: list[str], chunk_ids: list[str]) -> int:
    """Chunks are derived rows: those of re-chunked documents that no longer exist go."""
    with connect(target_dsn(), autocommit=True) as conn:
        return prune_chunks(conn, tenant_id, document_ids, chunk_ids)


@task(name="prune-links", task_run_name="prune-{junction}-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def prune_derived_links(junction: str, tenant: str, tenant_id: str, rows: list[dict]) -> int:
    """Junction rows derived from the sources (mapping_source automated) that this run no longer
    derives (the source changed) go, so re-runs converge on the sources."""
    with connect(target_dsn(), autocommit=True) as conn:
        return prune_links(conn, junction, tenant_id, rows)


@task(name="count-stale", task_run_name="count-stale-{table}-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def count_stale_rows(table: str, tenant: str, tenant_id: str, ids: list[str]) -> int:
    """Rows of the tenant in the target that the sources no longer have (reported, kept)."""
    with connect(target_dsn(), autocommit=True) as conn:
        return count_stale(conn, table, tenant_id, ids)
