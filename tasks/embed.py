"""Embeddings: what is embedded per entity (a documented text template), the content hash
that decides whether a row needs a new vector, and the content-addressed cache.

content_sha256 = sha256(model id + "\\n" + text). A text already in etl.embedding_cache for
the model is never encoded again, whichever tenant or run it came from; identical texts in one
run are encoded once. The loader takes vectors from the cache by (model, content_sha256), so
vectors never travel through the normalize or load steps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from core.settings import ModelSpec

MAX_CHARS = 2000  # the model reads 256 word pieces (~1,000-1,500 characters); more is cut anyway


def row_metadata(row: dict) -> dict:
    """A row's metadata as a dict, whether it holds JSON text or a dict already."""
    value = row.get("metadata")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}


def _join(*parts) -> str:
    out = []
    for p in parts:
        if isinstance(p, (list, tuple)):
            p = ", ".join(str(x) for x in p if x)
        if p:
            out.append(str(p).strip())
    return "\n".join(out)[:MAX_CHARS]


def _labelled(label: str, value) -> str | None:
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(x) for x in value if x)
    return f"{label}: {value}" if value else None


def _list(value) -> list:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [value]
    return [x for x in value if x] if isinstance(value, (list, tuple)) else []


def persona_text(r: dict) -> str:
    """A persona with its real content, wherever the source keeps it (the medical-affairs
    personas keep theirs in metadata): title, description, function, department, typical
    titles, responsibilities, capabilities, key need, goals, pain points, background."""
    m = row_metadata(r)
    return _join(
        r.get("title") or r.get("name"),
        r.get("description"),
        _labelled("Function", m.get("function")),
        _labelled("Department", r.get("department")),
        _labelled("Typical titles", _list(m.get("typical_titles"))),
        _labelled("Responsibilities", _list(r.get("responsibilities")) or _list(m.get("key_responsibilities"))),
        _labelled("Capabilities", _list(m.get("capabilities"))),
        _labelled("Key need", m.get("key_need")),
        _labelled("Goals", _list(r.get("goals")) or _list(m.get("goals"))),
        _labelled("Pain points", _list(r.get("pain_points")) or _list(m.get("pain_points"))),
        _labelled("Background", m.get("typical_background")),
    )


# entity -> row -> text. Rows are dicts of the target table's columns (metadata may be JSON text).
TEMPLATES: dict[str, Callable[[dict], str]] = {
    "agents": lambda r: _join(
        r.get("display_name") or r.get("name"),
        r.get("description"),
        _labelled("Functional area", r.get("functional_area")),
        _labelled("Capabilities", row_metadata(r).get("legacy_capabilities")),
    ),
    "personas": lambda r: persona_text(r),
    "jobs_to_be_done": lambda r: _join(r.get("name"), r.get("statement")),
    "prompts": lambda r: _join(r.get("name"), r.get("description"), r.get("body")),
    "tools": lambda r: _join(r.get("name"), r.get("description"), _labelled("Tags", r.get("tags"))),
    "capabilities": lambda r: _join(
        r.get("display_name") or r.get("name"), r.get("description"), _labelled("Category", r.get("category"))
    ),
    "knowledge_chunks": lambda r: _join(r.get("heading"), r.get("content")),
}


def content_sha256(model_id: str, text: str) -> str:
    return hashlib.sha256(f"{model_id}\n{text}".encode()).hexdigest()


def texts_and_hashes(entity: str, rows: list[dict], model_id: str) -> tuple[list[str], list[str]]:
    texts = [TEMPLATES[entity](r) for r in rows]
    return texts, [content_sha256(model_id, t) for t in texts]


def tenant_texts(rows_by_entity: dict[str, Iterable[dict]]) -> list[str]:
    """The texts of every searchable entity's rows (entity -> rows), e.g. for the embedding
    backend's quality gate (tasks.model.accepted_spec)."""
    return [TEMPLATES[e](r) for e, rows in rows_by_entity.items() if e in TEMPLATES for r in rows]


@dataclass
class EmbedStats:
    rows: int = 0
    embedded: int = 0  # texts encoded by the model in this call
    reused: int = 0  # rows whose vector came from the cache

    def add(self, other: EmbedStats) -> None:
        self.rows += other.rows
        self.embedded += other.embedded
        self.reused += other.reused


def ensure_cached(
    conn: psycopg.Connection,
    spec: ModelSpec,
    texts: list[str],
    hashes: list[str],
    encode: Callable[[ModelSpec, list[str]], np.ndarray],
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> EmbedStats:
    """Encode the texts whose (model, hash) is not in etl.embedding_cache, and store them.

    Identical texts are encoded once. Returns how many rows were encoded vs reused."""
    register_vector(conn)
    unique = dict(zip(hashes, texts))
    cached = {
        r[0]
        for r in conn.execute(
            "SELECT content_sha256 FROM etl.embedding_cache WHERE model = %s AND content_sha256 = ANY(%s)",
            (spec.model_id, list(unique)),
        )
    }
    missing = [h for h in unique if h not in cached]
    for start in range(0, len(missing), batch_size):
        part = missing[start : start + batch_size]
        vectors = encode(spec, [unique[h] for h in part])
        # via a staging table: a concurrent run (another tenant) may have cached the same text
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE cache_stage (LIKE etl.embedding_cache INCLUDING DEFAULTS) ON COMMIT DROP")
            with cur.copy("COPY cache_stage (model, content_sha256, embedding) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text", "text", "vector"])
                for h, v in zip(part, vectors):
                    copy.write_row([spec.model_id, h, v])
            cur.execute("INSERT INTO etl.embedding_cache SELECT * FROM cache_stage ON CONFLICT DO NOTHING")
        if progress:
            progress(min(start + batch_size, len(missing)), len(missing))
    fresh = set(missing)
    return EmbedStats(rows=len(hashes), embedded=len(missing), reused=sum(1 for h in hashes if h not in fresh))
