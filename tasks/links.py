"""Links vital-etl infers (rules/links.yaml): the pure ranking by similarity with a margin and a
cap per target, title matching, and keeping the target's inferred links in step with the run.

The links the sources state (mapping_source automated, from arrays and codes) are never
replaced by inference; an inferred link is `automated` when a title rule made it, `ml_model`
when similarity did, `expert_review` when a reviewer decided it (rules/overrides/)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from core.catalogue import SIMILARITY_LINKS
from core.catalogue import junction as junction_of
from core.errors import ConfigError
from core.settings import RULES_DIR
from core.yamlfile import read_yaml

INFERRED = ("ml_model", "expert_review")  # mapping sources only inference writes


@dataclass(frozen=True)
class LinkRule:
    top_k: int = 10
    min_similarity: float = 0.35
    min_score: float = 0.0
    window: float = 0.15
    margin: float = 0.02
    cap_per_target: int = 5
    hub_k: int = 10
    min_name_overlap: float = 0.0


def load_link_rules(path=None) -> dict[str, LinkRule]:
    path = Path(path) if path else RULES_DIR / "links.yaml"
    data = read_yaml(path, "link rules") or {}
    out = {}
    for junction, spec in data.items():
        if junction not in SIMILARITY_LINKS:
            raise ConfigError(f"{path}: unknown link {junction!r} (known: {', '.join(SIMILARITY_LINKS)})")
        spec = spec or {}
        unknown = sorted(set(spec) - set(LinkRule.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"{path}: {junction}: unknown key {unknown[0]!r} (known: {', '.join(LinkRule.__dataclass_fields__)})"
            )
        rule = LinkRule(**spec)
        ints_ok = all(isinstance(v, int) and v >= 1 for v in (rule.top_k, rule.cap_per_target))
        reals = (rule.min_similarity, rule.min_score, rule.window, rule.margin, rule.min_name_overlap)
        reals_ok = all(isinstance(v, (int, float)) for v in reals)
        if (
            not ints_ok
            or not isinstance(rule.hub_k, int)
            or rule.hub_k < 0
            or not reals_ok
            or not -1 <= rule.min_similarity <= 1
            or min(rule.window, rule.margin, rule.min_name_overlap) < 0
        ):
            raise ConfigError(
                f"{path}: {junction} needs top_k >= 1, cap_per_target >= 1, hub_k >= 0, min_similarity in -1..1, "
                "and window, margin, min_name_overlap >= 0"
            )
        out[junction] = rule
    return out


@dataclass(frozen=True)
class Candidate:
    source: str  # legacy key of the row the link starts from
    target: str
    similarity: float  # cosine of the two texts
    score: float  # the similarity corrected for hubs (what ranks)
    rank: int
    margin: float  # score's lead over the best candidate not linked
    area: str  # the functional area the two share
    next_target: str | None
    name_overlap: float


def hub_corrected(sims: np.ndarray, k: int) -> np.ndarray:
    """2 cos(a, b) - r(a) - r(b), r = the mean cosine of a row to its k nearest on the other side:
    a target that is close to everything (a hub) no longer outranks the specific match (CSLS)."""
    if k <= 0 or sims.size == 0:
        return sims
    ra = np.sort(sims, axis=1)[:, ::-1][:, :k].mean(axis=1)
    rb = np.sort(sims, axis=0)[::-1][:k].mean(axis=0)
    return 2 * sims - ra[:, None] - rb[None, :]


_STOP = {"and", "of", "for", "the", "in", "to", "with", "on", "a", "an", "from", "into", "by", "our", "new"}


def _stems(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9]+", (text or "").replace("_", " ").replace("-", " ").casefold())
    return {w[:5] for w in words if w not in _STOP and len(w) > 1}


def name_overlap(source_names: list[str], target_names: list[str]) -> np.ndarray:
    """Share of a source name's distinctive words (weighted by rarity among the target names:
    idf) that a target's name has too; words compared by their first five letters."""
    df: dict[str, int] = {}
    stems = [_stems(t) for t in target_names]
    for ts in stems:
        for w in ts:
            df[w] = df.get(w, 0) + 1
    n = len(target_names)

    def idf(w: str) -> float:
        return float(np.log((n + 1) / (df.get(w, 0) + 0.5)))

    out = np.zeros((len(source_names), n))
    for i, name in enumerate(source_names):
        mine = _stems(name)
        total = sum(idf(w) for w in mine) or 1.0
        for j, ts in enumerate(stems):
            out[i, j] = sum(idf(w) for w in mine & ts) / total
    return out


def rank_links(
    sources: list[str],
    source_vectors: np.ndarray,
    source_areas: list[set[str]],
    targets: list[str],
    target_vectors: np.ndarray,
    target_areas: list[str],
    rule: LinkRule,
    exclude: set[tuple[str, str]] = frozenset(),
    overlap: np.ndarray | None = None,
) -> list[Candidate]:
    """Similarity links (rules/links.yaml). Per source: the targets of one of its areas, with a
    cosine of at least `min_similarity` (and a name overlap of at least `min_name_overlap`),
    ranked by the hub-corrected score (ties by key); those with a score of at least `min_score`
    and within `window` of the best, at most `top_k`, cut where the last taken leads the next by
    `margin`. Then at most `cap_per_target` per target (best scores). `exclude`: pairs already
    linked by stronger evidence."""
    if not sources or not targets:
        return []
    sims = source_vectors @ target_vectors.T
    scores = hub_corrected(sims, rule.hub_k)
    chosen: list[Candidate] = []
    for i, src in enumerate(sources):
        allowed = [
            j
            for j in range(len(targets))
            if target_areas[j] in source_areas[i]
            and (src, targets[j]) not in exclude
            and sims[i, j] >= rule.min_similarity
            and (overlap is None or overlap[i, j] >= rule.min_name_overlap)
        ]
        ranked = sorted(allowed, key=lambda j: (-float(scores[i, j]), targets[j]))
        if not ranked:
            continue
        best = float(scores[i, ranked[0]])
        take = 0
        for j in ranked[: rule.top_k]:
            s = float(scores[i, j])
            if s < rule.min_score or s < best - rule.window:
                break
            take += 1
        while take:  # cut where the last linked leads the next candidate by `margin`
            nxt = float(scores[i, ranked[take]]) if take < len(ranked) else rule.min_score - rule.margin
            if float(scores[i, ranked[take - 1]]) - nxt >= rule.margin:
                break
            take -= 1
        nxt_score = float(scores[i, ranked[take]]) if take < len(ranked) else None
        nxt_key = targets[ranked[take]] if take < len(ranked) else None
        for rank, j in enumerate(ranked[:take], start=1):
            s = float(scores[i, j])
            chosen.append(
                Candidate(
                    src,
                    targets[j],
                    float(sims[i, j]),
                    s,
                    rank,
                    s - (nxt_score if nxt_score is not None else rule.min_score - rule.margin),
                    target_areas[j],
                    nxt_key,
                    float(overlap[i, j]) if overlap is not None else 0.0,
                )
            )
    per_target: dict[str, int] = {}
    out = []
    for c in sorted(chosen, key=lambda c: (-c.score, c.source, c.target)):
        if per_target.get(c.target, 0) < rule.cap_per_target:
            per_target[c.target] = per_target.get(c.target, 0) + 1
            out.append(c)
    return sorted(out, key=lambda c: (c.source, c.rank))


_SPLIT = re.compile(r"\s+/\s+|\s+-\s+|\s*\(|\)|,|;")


def title_key(text: str) -> str:
    """A title compared across sources: case, punctuation and spacing ignored."""
    return " ".join(re.findall(r"[a-z0-9&]+", text.casefold()))


def title_parts(*titles) -> set[str]:
    """The titles a row goes by: each title and its parts ("Head of Field Medical / VP MSL
    Operations" -> both; "Medical Writer - Scientific Publications" -> "medical writer" too)."""
    out = set()
    for t in titles:
        for item in t if isinstance(t, (list, tuple)) else [t]:
            if not isinstance(item, str) or not item.strip():
                continue
            out.add(title_key(item))
            out |= {title_key(p) for p in _SPLIT.split(item) if p and len(title_key(p).split()) >= 1}
    return {p for p in out if p}


def prune_inferred(conn: psycopg.Connection, junction: str, tenant_id: str, rows: list[dict]) -> int:
    """The tenant's inferred rows (ml_model, expert_review) of `junction` that this run did not
    infer: removed, so re-runs converge on the current evidence and reviews."""
    j = junction_of(junction)
    keys = [(r[j.a_col], r[j.b_col]) for r in rows]
    return conn.execute(
        sql.SQL(
            """DELETE FROM {j} j WHERE j.tenant_id = %s AND j.mapping_source::text = ANY(%s) AND NOT EXISTS (
             SELECT 1 FROM unnest(%s::uuid[], %s::uuid[]) AS k(a, b) WHERE k.a = j.{a} AND k.b = j.{b})"""
        ).format(j=sql.Identifier(junction), a=sql.Identifier(j.a_col), b=sql.Identifier(j.b_col)),
        (tenant_id, list(INFERRED), [k[0] for k in keys], [k[1] for k in keys]),
    ).rowcount
