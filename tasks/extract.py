"""Extraction: every source of an entity, in manifest order, into one frame of text columns
with `_source`, `_row` and `_tenants` (explicit manifest tenants, as JSON) for traceability."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.catalogue import ENTITY_NAMES
from core.errors import ConfigError
from core.retry import IO_RETRIES
from sources.files import TYPED, read_csv, read_json, read_jsonl, read_markdown, read_parquet
from sources.legacy_pg import read_postgres
from sources.manifest import (
    DEFAULT_MANIFEST,
    LabelSpec,
    Manifest,
    ManifestError,
    SourceSpec,
    check_sources,
    load_manifest,
    source_dsn_of,
)
from tasks.normalize.base import Rec
from tasks.normalize.common import parse_list
from tasks.normalize.reuse import RowDigest
from tasks.normalize.rules import Rules, load_rules
from tasks.normalize.tenancy import LabelFile
from tasks.runs import run_folder

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
        dsn = source_dsn_of(spec, manifest)
        batches = read_postgres(
            dsn,
            spec.sql,
            batch_rows,
            detected,
            manifest.timezone,
            label=f"{spec.where} source {spec.label}",
            relation=spec.relation if not spec.query else (),
        )
    tenants = json.dumps(list(spec.tenants)) if spec.tenants else None
    for frame in batches:
        rename = {old: new for old, new in spec.rename.items() if old in frame.columns}
        clash = next(((o, n) for o, n in rename.items() if n in frame.columns and n not in rename), None)
        if clash:
            raise ManifestError(
                f"{spec.where}.rename: {clash[0]!r} -> {clash[1]!r}, but the source already has a column "
                f"{clash[1]!r}; rename that one too, or choose another new name"
            )
        if rename and TYPED in frame.columns:  # `_typed` names columns: rename them there too
            frame = frame.with_columns(
                pl.col(TYPED).map_elements(
                    lambda t, names=rename: json.dumps([names.get(c, c) for c in json.loads(t)]),
                    return_dtype=pl.Utf8,
                )
            )
        yield frame.rename(rename).with_columns(
            pl.lit(spec.label).alias("_source"), pl.lit(tenants, dtype=pl.Utf8).alias("_tenants")
        )


@dataclass
class ExtractedFiles:
    """An entity's extracted batches as Parquet files (`<folder>/<entity>.<n>.parquet`), what
    each reader detected, and the digest of the rows that keys the normalize stage's reuse."""

    entity: str
    paths: list[str]
    sources: list[dict]
    digest: str


def extract_to_files(manifest: Manifest, entity: str, batch_rows: int, folder: str) -> ExtractedFiles:
    """Every source of the entity, batch by batch, written as files: one batch in memory at a time."""
    where = Path(folder)
    where.mkdir(parents=True, exist_ok=True)
    paths, sources, digest = [], [], RowDigest()
    for spec in manifest.entities[entity]:
        detected: dict = {"source": spec.label, "kind": spec.kind}
        for frame in read_batches(spec, manifest, batch_rows, detected):
            digest.add(frame)
            path = where / f"{entity}.{len(paths) + 1}.parquet"
            frame.write_parquet(path, compression="lz4")
            paths.append(str(path))
        sources.append(detected)
    return ExtractedFiles(entity, paths, sources, digest.hexdigest())


@contextmanager
def stage_folder(run_id: str | None) -> Iterator[str]:
    """Where a run's stages write their files (`extract/`, `normalize/`): `$VITAL_HOME/runs/<run_id>`
    (removed when the run completes, kept for inspection when it fails), or, for a dry run or
    plan (run_id None), a temporary folder outside $VITAL_HOME, removed once normalized."""
    if run_id is not None:
        yield str(run_folder(run_id))
        return
    with tempfile.TemporaryDirectory(prefix="vital-etl-extract-") as folder:
        yield folder


def extract_entity(manifest: Manifest, entity: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Extracted:
    """The entity's sources as one frame, in memory (tests and tools; a run streams them through
    files with extract_to_files)."""
    frames, sources = [], []
    for spec in manifest.entities[entity]:
        detected: dict = {"source": spec.label, "kind": spec.kind}
        frames.extend(read_batches(spec, manifest, batch_rows, detected))
        sources.append(detected)
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    return Extracted(entity, frame, sources)


def read_labels(spec: LabelSpec, manifest: Manifest) -> LabelFile:
    """A tenant-label file: {row key: [labels]} (e.g. agent id -> ["pharma", "digital_health"]),
    and every row's columns with their source types (kept on the row they name)."""
    out: dict[str, list[str]] = {}
    rows: dict[str, dict] = {}
    for frame in read_batches(spec.source, manifest, DEFAULT_BATCH_ROWS, {}):
        for row in frame.iter_rows(named=True):
            key, labels = row.get(spec.key), row.get(spec.labels)
            if key and key.strip():
                out[key.strip()] = (
                    parse_list(labels)
                    if labels and labels.strip()[:1] in "[{"
                    else [x.strip() for x in (labels or "").split(",") if x.strip()]
                )
                rec = Rec(row)
                rows[key.strip()] = {k: rec.value(k) for k, v in row.items() if not k.startswith("_") and v is not None}
    return LabelFile(out, rows, spec.source.label)


@task(name="load-manifest-and-rules", cache_policy=NO_CACHE)
def load_inputs(manifest: str | None, tenant: str, entities: list[str] | None) -> tuple[Manifest, Rules, list[str]]:
    """Everything checked before any row is read: manifest, rules, tenant, entity names, sources.
    Returns the wanted entities in load order."""
    m = load_manifest(manifest or DEFAULT_MANIFEST)
    rules = load_rules(tenants_file=m.tenants_file)
    rules.tenants.by_slug(tenant)
    wanted = list(entities or m.entities)
    unknown = [e for e in wanted if e not in ENTITY_NAMES]
    if unknown:
        raise ConfigError(f"unknown entity {unknown[0]!r} in entities (known: {', '.join(ENTITY_NAMES)})")
    missing = [e for e in wanted if e not in m.entities]
    if missing:
        raise ConfigError(f"{m.path}: has no sources for {', '.join(missing)}")
    check_sources(m, {t.slug for t in rules.tenants.tenants})
    return m, rules, [e for e in ENTITY_NAMES if e in wanted]


@task(name="read-tenant-labels", cache_policy=NO_CACHE, **IO_RETRIES)
def read_tenant_labels(manifest: Manifest) -> dict[str, LabelFile]:
    return {entity: read_labels(spec, manifest) for entity, spec in manifest.tenant_labels.items()}


@task(name="extract", task_run_name="extract-{entity}", cache_policy=NO_CACHE, **IO_RETRIES)
def extract(manifest: Manifest, entity: str, batch_size: int, folder: str) -> ExtractedFiles:
    return extract_to_files(manifest, entity, batch_size, folder)
