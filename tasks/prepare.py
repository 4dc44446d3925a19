"""Rows ready for the loader: a tenant's normalized rows as dicts of target columns, with the
provenance (source, row, tenant rule) folded into metadata under its reserved key `_etl` (legacy
values keep their own keys: provenance never replaces one) and the embedding hash set."""

from __future__ import annotations

import json

import polars as pl

from core.catalogue import SEARCHABLE
from tasks.embed import texts_and_hashes
from tasks.normalize.base import RESERVED

PROVENANCE = {"_source": "source", "_row": "source_row", "tenant_rule": "tenant_rule"}


def rows_for_load(frame: pl.DataFrame) -> list[dict]:
    rows = []
    for r in frame.iter_rows(named=True):
        meta = json.loads(r.get("metadata") or "{}")
        etl = meta.setdefault(RESERVED, {})
        etl.update({name: r[col] for col, name in PROVENANCE.items() if r.get(col) is not None})
        r["metadata"] = meta
        rows.append(r)
    return rows


def with_hashes(entity: str, rows: list[dict], model_id: str) -> list[str]:
    """Set embedding_model and content_sha256 on searchable rows; returns their texts."""
    if entity not in SEARCHABLE:
        return []
    texts, hashes = texts_and_hashes(entity, rows, model_id)
    for row, h in zip(rows, hashes):
        row["embedding_model"], row["content_sha256"] = model_id, h
    return texts
