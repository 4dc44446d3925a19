"""Vector search per tenant: HNSW indexes built after the load (and per-tenant partial indexes
for tenants that own a small share of a table), and the search check of verify-tenant: recall@k
of the index against an exact scan, as a non-owner role under Row Level Security."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import sql

from core.catalogue import SEARCHABLE
from core.connections import connect, target_dsn
from core.errors import ConfigError
from core.retry import IO_RETRIES
from core.settings import RULES_DIR, settings
from core.yamlfile import read_yaml

INDEX_LOCK = 0x5649_5449  # one vector-index build at a time per database


@dataclass(frozen=True)
class SearchRules:
    below_share: float
    min_rows: int
    sample: int
    k: int
    min_recall: float


def load_search_rules(path: Path | None = None) -> SearchRules:
    path = path or RULES_DIR / "search.yaml"
    data = read_yaml(path, "search rules") or {}
    part, ver = data.get("partial_index") or {}, data.get("verify") or {}
    try:
        rules = SearchRules(
            float(part["below_share"]),
            int(part["min_rows"]),
            int(ver["sample"]),
            int(ver["k"]),
            float(ver["min_recall"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{path}: needs partial_index.below_share/min_rows and verify.sample/k/min_recall as numbers ({exc})"
        ) from None
    if not (0 <= rules.below_share <= 1 and 0 <= rules.min_recall <= 1 and rules.k >= 1 and rules.sample >= 1):
        raise ConfigError(f"{path}: shares and recall are in 0..1; k and sample are >= 1")
    return rules


def _small_tenants(conn: psycopg.Connection, table: str, rules: SearchRules) -> list[str]:
    """Tenants whose share of the table's embedded rows is below the threshold."""
    rows = conn.execute(
        sql.SQL("SELECT tenant_id::text, count(*) FROM {} WHERE embedding IS NOT NULL GROUP BY 1").format(
            sql.Identifier(table)
        )
    ).fetchall()
    total = sum(n for _, n in rows)
    return sorted(t for t, n in rows if n >= rules.min_rows and n < rules.below_share * total)


def build_vector_indexes(dsn: str, tables: list[str], rules: SearchRules | None = None) -> list[str]:
    """HNSW (cosine) on each table's embedding, after the bulk load, with a raised
    maintenance_work_mem (VITAL_MAINTENANCE_WORK_MEM); a partial index per small tenant (rules/
    search.yaml). Existing indexes are kept; returns the indexes made now. Then ANALYZE, of the
    tables with rows changed since their last one (or never analyzed)."""
    rules = rules or load_search_rules()
    made = []
    with connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(settings().maintenance_work_mem)))
        conn.execute("SELECT pg_advisory_lock(%s)", (INDEX_LOCK,))  # tenants may finish together
        try:
            stale = {
                t
                for (t,) in conn.execute(
                    """SELECT t FROM unnest(%s::text[]) AS t
                       JOIN pg_stat_user_tables s ON s.relid = quote_ident(t)::regclass
                       WHERE s.n_mod_since_analyze > 0 OR coalesce(s.last_analyze, s.last_autoanalyze) IS NULL""",
                    (tables,),
                )
            }
            for table in tables:
                wanted = [(f"{table}_embedding_hnsw", sql.SQL(""))]
                wanted += [
                    (f"{table}_embedding_hnsw_{t[:8]}", sql.SQL(" WHERE tenant_id = {}").format(sql.Literal(t)))
                    for t in _small_tenants(conn, table, rules)
                ]
                for name, where in wanted:
                    if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
                        conn.execute(
                            sql.SQL(
                                "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding vector_cosine_ops){}"
                            ).format(sql.Identifier(name), sql.Identifier(table), where)
                        )
                        made.append(name)
                if table in stale:
                    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (INDEX_LOCK,))
    return made


@task(name="build-vector-indexes", cache_policy=NO_CACHE, **IO_RETRIES)
def build_indexes() -> list[str]:
    return build_vector_indexes(target_dsn(), list(SEARCHABLE))


def search_recall(conn: psycopg.Connection, table: str, tenant_id: str, role: str, rules: SearchRules) -> dict:
    """For up to `sample` of the tenant's rows as queries: k nearest neighbours as `role` under RLS
    with the session's search settings (the index), against an exact scan of the tenant's rows.
    Each side is one statement: a LATERAL subquery per query row, the scan a query of its own makes.

    Returns {queries, recall, short}: mean recall@k, and how many queries got fewer than
    min(k, tenant rows) results."""
    ident = sql.Identifier(table)
    hidden = conn.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'deleted_at' AND NOT attisdropped",
        (table,),
    ).fetchone()
    live = sql.SQL("tenant_id = %s AND embedding IS NOT NULL" + (" AND deleted_at IS NULL" if hidden else ""))
    have = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(ident, live), (tenant_id,)).fetchone()[0]
    queries = [
        i
        for (i,) in conn.execute(
            sql.SQL("SELECT id FROM {} WHERE {} ORDER BY id LIMIT %s").format(ident, live), (tenant_id, rules.sample)
        )
    ]
    if not queries:
        return {"queries": 0, "recall": None, "short": 0}
    k = min(rules.k, have)
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL enable_indexscan = off")
        exact = _neighbours(
            conn,
            table,
            queries,
            sql.SQL("SELECT id, embedding <=> q.v AS d FROM {} WHERE {} ORDER BY 2, id LIMIT %s").format(ident, live),
            [tenant_id, k],
        )
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant_id,))
        conn.execute("SET LOCAL enable_seqscan = off")  # what an application's index scan returns
        found = _neighbours(
            conn,
            table,
            queries,
            sql.SQL("SELECT id, embedding <=> q.v AS d FROM {} ORDER BY embedding <=> q.v LIMIT %s").format(ident),
            [k],
        )
    # A row found is right when it is as near as the k-th exact neighbour: rows at the same
    # distance (identical texts) are interchangeable, so ties do not count as misses.
    hits = [min(len(e), sum(d <= e[-1][1] + 1e-6 for _, d in f)) / len(e) for e, f in zip(exact, found, strict=True)]
    recall = sum(hits) / len(queries)
    return {"queries": len(queries), "recall": round(recall, 4), "short": sum(len(f) < k for f in found)}


def _neighbours(
    conn: psycopg.Connection, table: str, queries: list, scan: sql.Composable, args: list
) -> list[list[tuple]]:
    """`scan` (a query over q.v, a query row's vector) for each row of `queries` (ids of `table`):
    per query, its (id, distance) rows, nearest first."""
    rows = conn.execute(
        sql.SQL(
            "SELECT q.id, x.id, x.d FROM (SELECT id, embedding AS v FROM {}) q LEFT JOIN LATERAL ({}) x ON true "
            "WHERE q.id = ANY(%s) ORDER BY q.id, x.d, x.id"
        ).format(sql.Identifier(table), scan),
        [*args, queries],
    ).fetchall()
    out: dict = {q: [] for q in queries}
    for q, row_id, d in rows:
        if row_id is not None:
            out[q].append((row_id, d))
    return [out[q] for q in queries]
