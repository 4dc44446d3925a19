"""Keeping the target in step with the sources on re-runs: derived rows (chunks, junction rows
from source arrays) that a run no longer derives are removed; catalogue rows the sources no
longer have are only counted (reported, kept)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tasks.normalize.resolve import JUNCTIONS


def prune_chunks(conn: psycopg.Connection, tenant_id: str, document_ids: list[str], chunk_ids: list[str]) -> int:
    """Chunks of these documents that the new chunking did not produce."""
    return conn.execute("DELETE FROM knowledge_chunks WHERE tenant_id = %s AND document_id = ANY(%s) "
                        "AND NOT (id = ANY(%s))", (tenant_id, document_ids, chunk_ids)).rowcount


def prune_links(conn: psycopg.Connection, junction: str, tenant_id: str, rows: list[dict]) -> int:
    """The tenant's automated junction rows that are not among `rows` (this run's)."""
    a_col, b_col, kind_col = JUNCTIONS[junction][2:]
    keys = [(r[a_col], r[b_col], r.get(kind_col) if kind_col else "") for r in rows]
    kind_match = sql.SQL("AND k.t = j.{}").format(sql.Identifier(kind_col)) if kind_col else sql.SQL("")
    return conn.execute(sql.SQL(
        """DELETE FROM {j} j WHERE j.tenant_id = %s AND j.mapping_source = 'automated' AND NOT EXISTS (
             SELECT 1 FROM unnest(%s::uuid[], %s::uuid[], %s::text[]) AS k(a, b, t)
             WHERE k.a = j.{a} AND k.b = j.{b} {kind})""").format(
        j=sql.Identifier(junction), a=sql.Identifier(a_col), b=sql.Identifier(b_col), kind=kind_match),
        (tenant_id, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])).rowcount


def count_stale(conn: psycopg.Connection, table: str, tenant_id: str, ids: list[str]) -> int:
    """The tenant's rows in `table` whose id is not among `ids` (this run's)."""
    return conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s AND NOT (id = ANY(%s::uuid[]))")
                        .format(sql.Identifier(table)), (tenant_id, ids)).fetchone()[0]
