"""Links by embedding similarity (rules/links.yaml), computed in the target database with
pgvector: rule-based links from the sources stay; ml_model links are recomputed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import sql

from core.catalogue import SIMILARITY_LINKS
from core.catalogue import junction as junction_of
from core.connections import connect, target_dsn
from core.errors import ConfigError
from core.retry import IO_RETRIES
from core.settings import RULES_DIR
from core.yamlfile import read_yaml


@dataclass(frozen=True)
class LinkRule:
    top_k: int
    min_similarity: float


def load_link_rules(path=None) -> dict[str, LinkRule]:
    path = Path(path) if path else RULES_DIR / "links.yaml"
    data = read_yaml(path, "link rules") or {}
    out = {}
    for junction, spec in data.items():
        if junction not in SIMILARITY_LINKS:
            raise ConfigError(f"{path}: unknown link {junction!r} (known: {', '.join(SIMILARITY_LINKS)})")
        k, sim = spec.get("top_k"), spec.get("min_similarity")
        if not isinstance(k, int) or k < 1 or not isinstance(sim, (int, float)) or not -1 <= sim <= 1:
            raise ConfigError(f"{path}: {junction} needs top_k >= 1 and min_similarity in -1..1")
        out[junction] = LinkRule(k, float(sim))
    return out


def link_by_similarity(conn: psycopg.Connection, tenant_id: str, rules: dict[str, LinkRule]) -> dict[str, int]:
    """Bring the tenant's ml_model links up to date; returns links per junction.

    Only differences are written (a re-run with unchanged embeddings changes nothing); ties in
    similarity are broken by id, so the same embeddings always give the same links."""
    made = {}
    for junction, rule in rules.items():
        j = junction_of(junction)
        src, src_col, dst, dst_col = j.a, j.a_col, j.b, j.b_col
        names = dict(
            junction=sql.Identifier(junction),
            src_col=sql.Identifier(src_col),
            dst_col=sql.Identifier(dst_col),
            src=sql.Identifier(src),
            dst=sql.Identifier(dst),
        )
        with conn.transaction():
            conn.execute(
                sql.SQL("""
                CREATE TEMP TABLE wanted_links ON COMMIT DROP AS
                SELECT s.id AS a, d.id AS b, least(1, greatest(0, d.similarity))::real AS score
                FROM {src} s CROSS JOIN LATERAL (
                    SELECT d.id, 1 - (d.embedding <=> s.embedding) AS similarity FROM {dst} d
                    WHERE d.tenant_id = s.tenant_id AND d.embedding IS NOT NULL
                    ORDER BY d.embedding <=> s.embedding, d.id LIMIT %s) d
                WHERE s.tenant_id = %s AND s.embedding IS NOT NULL AND d.similarity >= %s""").format(**names),
                (rule.top_k, tenant_id, rule.min_similarity),
            )
            conn.execute(
                sql.SQL("""
                DELETE FROM {junction} j WHERE j.tenant_id = %s AND j.mapping_source = 'ml_model'
                AND NOT EXISTS (SELECT 1 FROM wanted_links w WHERE w.a = j.{src_col} AND w.b = j.{dst_col})""").format(
                    **names
                ),
                (tenant_id,),
            )
            conn.execute(
                sql.SQL("""
                INSERT INTO {junction} AS j (tenant_id, {src_col}, {dst_col}, mapping_source, relevance_score)
                SELECT %s, a, b, 'ml_model', score FROM wanted_links
                ON CONFLICT (tenant_id, {src_col}, {dst_col}) DO UPDATE SET relevance_score = EXCLUDED.relevance_score
                WHERE j.mapping_source = 'ml_model' AND j.relevance_score IS DISTINCT FROM EXCLUDED.relevance_score""").format(
                    **names
                ),
                (tenant_id,),
            )
            made[junction] = conn.execute(
                sql.SQL("SELECT count(*) FROM {junction} WHERE tenant_id = %s AND mapping_source = 'ml_model'").format(
                    **names
                ),
                (tenant_id,),
            ).fetchone()[0]
    return made


@task(name="link-by-similarity", cache_policy=NO_CACHE, **IO_RETRIES)
def link_similar(tenant_id: str) -> dict[str, int]:
    with connect(target_dsn(), autocommit=True) as conn:
        return link_by_similarity(conn, tenant_id, load_link_rules())
