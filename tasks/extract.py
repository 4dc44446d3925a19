"""Extraction: every source of an entity, in manifest order, into one frame of text columns
with `_source`, `_row` and `_tenants` (explicit manifest tenants, as JSON) for traceability."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import polars as pl

from sources.files import read_csv, read_json, read_jsonl, read_markdown, read_parquet
from sources.legacy_pg import read_postgres
from sources.manifest import LabelSpec, Manifest, SourceSpec, source_dsn_of
from tasks.normalize.common import parse_list

DEFAULT_BATCH_ROWS = 5000


@dataclass
class Extracted:
    entity: str
    frame: pl.DataFrame
    sources: list[dict] = field(default_factory=list)


def read_batches(spec: SourceSpec, manifest: Manifest, batch_rows: int, detected: dict) -> Iterator[pl.DataFrame]:
    """One source's rows in batches, renamed and tagged, as text columns."""
    if spec.kind == "json":
        batches = read_json(spec.path, batch_rows, spec.records, detected)
    elif spec.kind == "jsonl":
        batches = read_jsonl(spec.path, batch_rows, detected)
    elif spec.kind == "csv":
        batches = read_csv(spec.path, batch_rows, spec.delimiter, detected)
    elif spec.kind == "parquet":
        batches = read_parquet(spec.path, batch_rows, detected)
    elif spec.kind == "markdown":
        batches = read_markdown(spec.path, batch_rows, detected)
    else:
        batches = read_postgres(source_dsn_of(spec, manifest), spec.sql, batch_rows, detected)
    tenants = json.dumps(list(spec.tenants)) if spec.tenants else None
    for frame in batches:
        rename = {old: new for old, new in spec.rename.items() if old in frame.columns}
        yield frame.rename(rename).with_columns(pl.lit(spec.label).alias("_source"),
                                                pl.lit(tenants, dtype=pl.Utf8).alias("_tenants"))


def extract_entity(manifest: Manifest, entity: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Extracted:
    frames, sources = [], []
    for spec in manifest.entities[entity]:
        detected: dict = {"source": spec.label, "kind": spec.kind}
        frames.extend(read_batches(spec, manifest, batch_rows, detected))
        sources.append(detected)
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    return Extracted(entity, frame, sources)


def read_labels(spec: LabelSpec, manifest: Manifest) -> dict[str, list[str]]:
    """A tenant-label file as {row key: [labels]} (e.g. agent id -> ["pharma", "digital_health"])."""
    out: dict[str, list[str]] = {}
    for frame in read_batches(spec.source, manifest, DEFAULT_BATCH_ROWS, {}):
        for key, labels in frame.select(spec.key, spec.labels).iter_rows():
            if key:
                out[key.strip()] = parse_list(labels) if labels and labels.strip()[:1] in "[{" else \
                    [x.strip() for x in (labels or "").split(",") if x.strip()]
    return out
