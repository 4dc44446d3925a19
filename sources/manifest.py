"""The sources manifest (YAML): where each entity's rows come from, in precedence order.

    tenants: ../rules/tenants.yaml          # optional
    legacy_db: {dsn_env: VITAL_SOURCE_DSN}  # optional; unset env -> the embedded legacy database
    tenant_labels:                          # optional: files that name the tenants of rows
      agents: {kind: json, path: exports/agent_tenant_labels.json, key: agent_id, labels: tenants}
    entities:
      agents:
        - {kind: json, path: exports/agents.json}
        - {kind: postgres, table: public.agents}
      personas:
        - {kind: json, path: exports/dh_personas.json, tenants: [digital-health]}
      knowledge_documents:
        - {kind: markdown, path: knowledge/}

Relative paths resolve against the manifest's folder; ${VAR} is expanded (${VITAL_HOME}
defaults to .vital, as everywhere). Per source: `rename: {old: new}` renames
columns before normalization; `tenants:` assigns every row of the source explicitly;
`records:` names the key holding the array in a JSON object file.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass, field
from pathlib import Path

from core.catalogue import ENTITY_NAMES as ENTITIES
from core.errors import ConfigError
from core.yamlfile import read_yaml

DEFAULT_MANIFEST = Path(__file__).resolve().parent / "manifests" / "sample.yaml"
FILE_KINDS = {"json", "jsonl", "csv", "parquet", "markdown"}
KINDS = FILE_KINDS | {"postgres", "supabase_dump"}
SOURCE_KEYS = {"kind", "path", "table", "query", "rename", "tenants", "records", "delimiter", "schema", "data"}


class ManifestError(ConfigError):
    """The sources manifest is wrong; nothing was read."""


@dataclass(frozen=True)
class SourceSpec:
    entity: str
    kind: str
    path: Path | None = None
    table: str | None = None
    query: str | None = None
    rename: dict = field(default_factory=dict)
    tenants: tuple[str, ...] = ()
    records: str | None = None
    delimiter: str = ","
    label: str = ""
    dump_schema: Path | None = None  # supabase_dump: the schema file and the data file
    dump_data: Path | None = None

    @property
    def sql(self) -> str:
        return self.query or f"SELECT * FROM {self.table}"


@dataclass(frozen=True)
class LabelSpec:
    entity: str
    source: SourceSpec
    key: str
    labels: str


@dataclass(frozen=True)
class Manifest:
    path: Path
    entities: dict[str, tuple[SourceSpec, ...]]
    tenant_labels: dict[str, LabelSpec]
    tenants_file: Path | None
    dsn_env: str = "VITAL_SOURCE_DSN"

    @property
    def needs_legacy_db(self) -> bool:
        return any(s.kind == "postgres" for specs in self.entities.values() for s in specs)


def _source(entity: str, raw, base: Path, where: str) -> SourceSpec:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: each source is a mapping like {{kind: json, path: ...}}")
    unknown = set(raw) - SOURCE_KEYS
    if unknown:
        raise ManifestError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(SOURCE_KEYS))})"
        )
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ManifestError(f"{where}: unknown kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    rename = raw.get("rename") or {}
    if not isinstance(rename, dict):
        raise ManifestError(f"{where}: rename must map old column names to new ones")
    tenants = raw.get("tenants") or ()
    tenants = tuple([tenants] if isinstance(tenants, str) else tenants)
    if kind in FILE_KINDS:
        if not raw.get("path"):
            raise ManifestError(f"{where}: a {kind} source needs `path`")
        path = (base / _expand(str(raw["path"]))).resolve()
        hint = _sample_hint(path)
        if kind == "markdown":
            if not path.is_dir():
                raise ManifestError(f"{where}: folder {path} does not exist{hint}")
        elif not path.is_file():
            raise ManifestError(f"{where}: file {path} does not exist{hint}")
        return SourceSpec(
            entity,
            kind,
            path=path,
            rename=rename,
            tenants=tenants,
            records=raw.get("records"),
            delimiter=str(raw.get("delimiter") or ","),
            label=str(raw["path"]),
        )
    if bool(raw.get("table")) == bool(raw.get("query")):
        raise ManifestError(f"{where}: a {kind} source needs exactly one of `table` or `query`")
    dump = {}
    if kind == "supabase_dump":
        if not raw.get("schema"):
            raise ManifestError(f"{where}: a supabase_dump source needs `schema` (and usually `data`): the dump files")
        for key in ("schema", "data"):
            if raw.get(key):
                path = (base / _expand(str(raw[key]))).resolve()
                if not path.is_file():
                    raise ManifestError(f"{where}: dump file {path} does not exist")
                dump[f"dump_{key}"] = path
    label = f"{'dump' if kind == 'supabase_dump' else 'postgres'}:{raw.get('table') or 'query'}"
    return SourceSpec(
        entity,
        kind,
        table=raw.get("table"),
        query=raw.get("query"),
        rename=rename,
        tenants=tenants,
        label=label,
        **dump,
    )


def _expand(text: str) -> str:
    """${VAR} in paths; ${VITAL_HOME} defaults like everywhere else (.vital)."""
    from core.settings import vital_home

    return string.Template(text).safe_substitute({**os.environ, "VITAL_HOME": str(vital_home())})


def _sample_hint(path: Path) -> str:
    from core.settings import vital_home

    if (vital_home() / "sample") in path.parents:
        return "; build the bundled sample first: `.venv/bin/vital-etl sample` (make demo does)"
    return ""


def load_manifest(path: Path | str) -> Manifest:
    """Parse and check a manifest: unknown entities or kinds and missing files are named here,
    before any work starts. (Database checks: `check_sources`.)"""
    path = Path(path).resolve()
    data = read_yaml(path, "manifest", ManifestError)
    if not isinstance(data, dict) or not isinstance(data.get("entities"), dict) or not data["entities"]:
        raise ManifestError(f"{path}: needs an `entities:` mapping of entity -> list of sources")
    base = path.parent
    entities = {}
    for entity, sources in data["entities"].items():
        if entity not in ENTITIES:
            raise ManifestError(f"{path}: unknown entity {entity!r} (known: {', '.join(ENTITIES)})")
        if not isinstance(sources, list) or not sources:
            raise ManifestError(f"{path}: entities.{entity} must be a non-empty list of sources")
        entities[entity] = tuple(
            _source(entity, s, base, f"{path}: entities.{entity}[{i}]") for i, s in enumerate(sources)
        )
    labels = {}
    for entity, spec in (data.get("tenant_labels") or {}).items():
        where = f"{path}: tenant_labels.{entity}"
        if entity not in ENTITIES:
            raise ManifestError(f"{where}: unknown entity {entity!r}")
        if not isinstance(spec, dict) or not spec.get("key") or not spec.get("labels"):
            raise ManifestError(f"{where}: needs `key` (the row id column) and `labels` (the tenants column)")
        src = _source(entity, {k: v for k, v in spec.items() if k not in ("key", "labels")}, base, where)
        labels[entity] = LabelSpec(entity, src, str(spec["key"]), str(spec["labels"]))
    tenants_file = (base / data["tenants"]).resolve() if data.get("tenants") else None
    if tenants_file and not tenants_file.is_file():
        raise ManifestError(f"{path}: tenants file {tenants_file} does not exist")
    dsn_env = (data.get("legacy_db") or {}).get("dsn_env", "VITAL_SOURCE_DSN")
    return Manifest(path, entities, labels, tenants_file, dsn_env)


def legacy_dsn(manifest: Manifest) -> str:
    """The legacy database: the manifest's DSN variable, else the embedded `vital_legacy`."""
    from core.connections import source_dsn

    return source_dsn(manifest.dsn_env)


def check_sources(manifest: Manifest, tenant_slugs: set[str]) -> None:
    """The checks that need more than the file system: tenants named by sources exist, the
    legacy database answers, every postgres table or query is valid (EXPLAIN, nothing runs)."""
    for specs in manifest.entities.values():
        for s in specs:
            for t in s.tenants:
                if t not in tenant_slugs:
                    raise ManifestError(
                        f"{manifest.path}: source {s.label} names unknown tenant {t!r} "
                        f"(known: {', '.join(sorted(tenant_slugs))})"
                    )
    import psycopg

    from core.connections import connect, mask_dsn

    for specs in manifest.entities.values():
        for s in specs:
            if s.kind not in ("postgres", "supabase_dump"):
                continue
            dsn = source_dsn_of(s, manifest)
            with connect(dsn, connect_timeout=10) as conn:
                try:
                    conn.execute(f"EXPLAIN {s.sql}")
                except psycopg.Error as exc:
                    msg = (exc.diag.message_primary or str(exc)).strip()
                    raise ManifestError(
                        f"{manifest.path}: entities.{s.entity} source {s.label} fails on {mask_dsn(dsn)}: {msg}"
                    ) from None


def source_dsn_of(spec: SourceSpec, manifest: Manifest) -> str:
    """Where a database source reads: the legacy DB, or the embedded copy of a dump."""
    if spec.kind == "supabase_dump":
        from sources.supabase_dump import restored_copy

        return restored_copy(spec.dump_schema, spec.dump_data)[0]
    return legacy_dsn(manifest)
