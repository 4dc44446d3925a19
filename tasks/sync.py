"""Keeping the target in step with the sources on re-runs: derived rows (chunks, junction rows
from source arrays) that a run no longer derives are removed; catalogue rows the sources no
longer have are only counted (reported, kept).

A junction row records where its two ends came from (`metadata.derived_from`: the source of
each end's row). A run removes a link only when it read both ends itself, from those same
sources, and no longer derives the link: a narrower manifest, a subset of entities or another
source for the same rows removes nothing."""

from __future__ import annotations

import json

import psycopg
from psycopg import sql

from core.catalogue import junction as junction_of


def prune_chunks(conn: psycopg.Connection, tenant_id: str, document_ids: list[str], chunk_ids: list[str]) -> int:
    """Chunks of these documents that the new chunking did not produce."""
    return conn.execute(
        "DELETE FROM knowledge_chunks WHERE tenant_id = %s AND document_id = ANY(%s) AND NOT (id = ANY(%s))",
        (tenant_id, document_ids, chunk_ids),
    ).rowcount


def stamp_links(junction: str, rows: list[dict], origins: dict[str, dict[str, str | None]]) -> list[dict]:
    """Each junction row's metadata gets `derived_from`: {end column: source of that end's row}.
    origins: entity -> {row id: source} of the rows this run loaded."""
    j = junction_of(junction)
    for r in rows:
        meta = r.get("metadata") or {}
        meta = json.loads(meta) if isinstance(meta, str) else dict(meta)
        meta["derived_from"] = {
            j.a_col: origins.get(j.a, {}).get(r[j.a_col]),
            j.b_col: origins.get(j.b, {}).get(r[j.b_col]),
        }
        r["metadata"] = meta
    return rows


def prune_links(
    conn: psycopg.Connection, junction: str, tenant_id: str, rows: list[dict], origins: dict[str, dict[str, str | None]]
) -> int:
    """The tenant's automated junction rows that this run would derive (both ends read by this run,
    from the sources recorded on the link) but no longer does; `rows` are this run's links."""
    j = junction_of(junction)
    a_col, b_col, kind_col = j.a_col, j.b_col, j.kind
    keys = [(r[a_col], r[b_col], r.get(kind_col) if kind_col else "") for r in rows]
    kind_match = sql.SQL("AND k.t = j.{}").format(sql.Identifier(kind_col)) if kind_col else sql.SQL("")
    a_ends, b_ends = origins.get(j.a, {}), origins.get(j.b, {})
    return conn.execute(
        sql.SQL(
            """DELETE FROM {j} j WHERE j.tenant_id = %s AND j.mapping_source = 'automated'
             AND EXISTS (SELECT 1 FROM unnest(%s::uuid[], %s::text[]) AS e(id, source)
                         WHERE e.id = j.{a} AND e.source = j.metadata -> 'derived_from' ->> %s)
             AND EXISTS (SELECT 1 FROM unnest(%s::uuid[], %s::text[]) AS e(id, source)
                         WHERE e.id = j.{b} AND e.source = j.metadata -> 'derived_from' ->> %s)
             AND NOT EXISTS (SELECT 1 FROM unnest(%s::uuid[], %s::uuid[], %s::text[]) AS k(a, b, t)
                             WHERE k.a = j.{a} AND k.b = j.{b} {kind})"""
        ).format(j=sql.Identifier(junction), a=sql.Identifier(a_col), b=sql.Identifier(b_col), kind=kind_match),
        (
            tenant_id,
            list(a_ends),
            list(a_ends.values()),
            a_col,
            list(b_ends),
            list(b_ends.values()),
            b_col,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        ),
    ).rowcount


def count_stale(conn: psycopg.Connection, table: str, tenant_id: str, ids: str) -> int:
    """The tenant's visible rows in `table` whose id is not among `ids` (this run's, one per
    line: one string, not a Python object per row); rows a soft prune hid are not counted again."""
    return conn.execute(
        sql.SQL(
            "SELECT count(*) FROM {} WHERE tenant_id = %s AND deleted_at IS NULL "
            "AND NOT (id = ANY(string_to_array(%s, E'\\n')::uuid[]))"
        ).format(sql.Identifier(table)),
        (tenant_id, ids),
    ).fetchone()[0]
