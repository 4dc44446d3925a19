"""Backfill: embed rows whose embedding is missing, stale (their text changed: the hash
differs) or from another model, reading the rows back from the target in keyset batches.

"Another model" includes another backend: the model id of a row is its backend's
(`...+onnx-fp32`), so a switch of VITAL_EMBEDDING_BACKEND re-embeds every row once, and a
switch back finds every vector in etl.embedding_cache (keyed by model id and hash) and encodes
nothing. The backend is the one accepted by the quality gate on the tenant's texts."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from psycopg import sql
from psycopg.rows import dict_row

from core.catalogue import SEARCHABLE
from core.connections import connect, target_dsn
from core.retry import IO_RETRIES
from core.settings import ModelSpec, model_spec
from tasks.embed import EmbedStats, ensure_cached, tenant_texts, texts_and_hashes
from tasks.load import table_spec


def backfill_table(
    conn: psycopg.Connection,
    table: str,
    spec: ModelSpec,
    encode: Callable,
    tenant_id: str | None = None,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Returns {rows, stale, embedded, reused} for the table (one tenant, or all)."""
    columns = [c for c in table_spec(conn, table).types if c != "embedding"]
    select = sql.SQL("SELECT {}, embedding IS NULL AS no_vector FROM {} WHERE id > %s {} ORDER BY id LIMIT %s").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.Identifier(table),
        sql.SQL("AND tenant_id = %s") if tenant_id else sql.SQL(""),
    )
    total = conn.execute(
        sql.SQL("SELECT count(*) FROM {} {}").format(
            sql.Identifier(table), sql.SQL("WHERE tenant_id = %s") if tenant_id else sql.SQL("")
        ),
        [tenant_id] if tenant_id else [],
    ).fetchone()[0]
    stats, stale_count, last, seen = EmbedStats(), 0, "00000000-0000-0000-0000-000000000000", 0
    while True:
        params = [last, tenant_id, batch_size] if tenant_id else [last, batch_size]
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(select, params).fetchall()
        if not rows:
            break
        last, seen = rows[-1]["id"], seen + len(rows)
        texts, hashes = texts_and_hashes(table, rows, spec.model_id)
        stale = [
            (r["id"], t, h)
            for r, t, h in zip(rows, texts, hashes)
            if r["no_vector"] or r["embedding_model"] != spec.model_id or r["content_sha256"] != h
        ]
        if stale:
            stale_count += len(stale)
            stats.add(ensure_cached(conn, spec, [t for _, t, _ in stale], [h for _, _, h in stale], encode))
            with conn.transaction():
                conn.execute(
                    sql.SQL(
                        """UPDATE {t} AS t SET embedding = c.embedding, embedding_model = %s,
                           content_sha256 = s.h, updated_at = now()
                       FROM unnest(%s::uuid[], %s::text[]) AS s(id, h)
                       JOIN etl.embedding_cache c ON c.model = %s AND c.content_sha256 = s.h
                       WHERE t.id = s.id"""
                    ).format(t=sql.Identifier(table)),
                    (spec.model_id, [i for i, _, _ in stale], [h for _, _, h in stale], spec.model_id),
                )
        if progress:
            progress(seen, total)
    return {"rows": total, "stale": stale_count, "embedded": stats.embedded, "reused": stats.reused}


GATE_ROWS = 200  # rows read per table for the quality gate's sample


def gate_texts(conn: psycopg.Connection, tenant_id: str | None, per_table: int = GATE_ROWS) -> list[str]:
    """Texts of the tenant's searchable rows (up to `per_table` per table, first by id): what the
    embedding backend's quality gate samples from."""
    texts = []
    for table in SEARCHABLE:
        columns = [c for c in table_spec(conn, table).types if c != "embedding"]
        query = sql.SQL("SELECT {} FROM {} {} ORDER BY id LIMIT %s").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(table),
            sql.SQL("WHERE tenant_id = %s") if tenant_id else sql.SQL(""),
        )
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(query, [tenant_id, per_table] if tenant_id else [per_table]).fetchall()
        texts += tenant_texts({table: rows})
    return texts


def backfill_spec(conn: psycopg.Connection, tenant_id: str | None) -> tuple[ModelSpec, str]:
    """The configured backend if it passes the quality gate on the tenant's texts, else torch fp32."""
    from tasks.model import accepted_spec

    spec = model_spec()
    return accepted_spec(gate_texts(conn, tenant_id) if not spec.is_reference else [], spec=spec)


@task(name="backfill", task_run_name="backfill-{table}", cache_policy=NO_CACHE, **IO_RETRIES)
def backfill(table: str, tenant_id: str | None, batch_size: int) -> dict:
    """backfill_table with the accepted backend; the result also names the model (`model`) and
    why it was chosen (`gate`)."""
    from tasks.model import encode

    logger = get_run_logger()
    with connect(target_dsn(), autocommit=True) as conn:
        spec, note = backfill_spec(conn, tenant_id)
        logger.info("%s: %s", table, note)
        result = backfill_table(
            conn,
            table,
            spec,
            encode,
            tenant_id,
            batch_size,
            progress=lambda done, total: logger.info("%s: %d/%d rows checked", table, done, total),
        )
    return {**result, "model": spec.model_id, "gate": note}
