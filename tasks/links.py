"""Links by embedding similarity (rules/links.yaml), computed in the target database with
pgvector: rule-based links from the sources stay; ml_model links are recomputed."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import yaml
from psycopg import sql

from tasks.errors import ConfigError
from tasks.settings import RULES_DIR

# junction -> (source table, source column, target table, target column)
SIMILARITY_LINKS = {
    "jtbd_personas": ("jobs_to_be_done", "jtbd_id", "personas", "persona_id"),
    "agent_jtbds": ("agents", "agent_id", "jobs_to_be_done", "jtbd_id"),
}


@dataclass(frozen=True)
class LinkRule:
    top_k: int
    min_similarity: float


def load_link_rules(path=None) -> dict[str, LinkRule]:
    path = path or RULES_DIR / "links.yaml"
    data = yaml.safe_load(open(path, encoding="utf-8")) or {}
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
    """Replace the tenant's ml_model links; returns rows per junction."""
    made = {}
    for junction, rule in rules.items():
        src, src_col, dst, dst_col = SIMILARITY_LINKS[junction]
        ident = sql.Identifier
        with conn.transaction():
            conn.execute(sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND mapping_source = 'ml_model'")
                         .format(ident(junction)), (tenant_id,))
            cur = conn.execute(sql.SQL("""
                INSERT INTO {junction} (tenant_id, {src_col}, {dst_col}, mapping_source, relevance_score)
                SELECT s.tenant_id, s.id, d.id, 'ml_model', least(1, greatest(0, d.similarity))
                FROM {src} s CROSS JOIN LATERAL (
                    SELECT d.id, 1 - (d.embedding <=> s.embedding) AS similarity FROM {dst} d
                    WHERE d.tenant_id = s.tenant_id AND d.embedding IS NOT NULL
                    ORDER BY d.embedding <=> s.embedding LIMIT %s) d
                WHERE s.tenant_id = %s AND s.embedding IS NOT NULL AND d.similarity >= %s
                ON CONFLICT DO NOTHING""").format(junction=ident(junction), src_col=ident(src_col),
                                                 dst_col=ident(dst_col), src=ident(src), dst=ident(dst)),
                (rule.top_k, tenant_id, rule.min_similarity))
            made[junction] = cur.rowcount
    return made
