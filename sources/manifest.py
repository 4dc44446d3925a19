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
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from psycopg import sql as pgsql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.catalogue import ENTITY_NAMES as ENTITIES
from core.errors import ConfigError
from core.yamlfile import read_yaml

DEFAULT_MANIFEST = Path(__file__).resolve().parent / "manifests" / "sample.yaml"
FILE_KINDS = {"json", "jsonl", "csv", "parquet", "markdown"}
KINDS = FILE_KINDS | {"postgres", "supabase_dump"}


class ManifestError(ConfigError):
    """The sources manifest is wrong; nothing was read."""


# ---------------------------------------------------------------------------------------------
# The manifest's shape, as a typed model: every value of the wrong type is one error naming its
# key path and the fix, before anything else is looked at.

Text = Annotated[str, Field(min_length=1)]


class _Mapping(BaseModel):
    """A mapping of known keys only."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)
    EXAMPLE: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"must be a mapping like {cls.EXAMPLE}")
        known = sorted(f.alias or name for name, f in cls.model_fields.items())
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
        return data


class SourceModel(_Mapping):
    EXAMPLE: ClassVar[str] = "{kind: json, path: exports/agents.json}"
    kind: str
    path: Text | None = None
    table: Text | None = None
    query: Text | None = None
    rename: dict[Text, Text] = {}
    tenants: list[Text] = []
    records: Text | None = None
    delimiter: str = ","
    schema_file: Text | None = Field(None, alias="schema")
    data: Text | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, v: Any) -> Any:
        if not isinstance(v, str) or v not in KINDS:
            raise ValueError(f"unknown kind {_show(v)} (known: {', '.join(sorted(KINDS))})")
        return v

    @field_validator("tenants", mode="before")
    @classmethod
    def _one_tenant(cls, v: Any) -> Any:
        return [] if v is None else [v] if isinstance(v, str) else v

    @field_validator("rename", mode="before")
    @classmethod
    def _no_rename(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("rename")
    @classmethod
    def _distinct_targets(cls, v: dict) -> dict:
        targets = list(v.values())
        twice = sorted({t for t in targets if targets.count(t) > 1})
        if twice:
            raise ValueError(f"renames several columns onto {twice[0]!r}; each new name may be given once")
        return v

    @field_validator("delimiter", mode="before")
    @classmethod
    def _one_character(cls, v: Any) -> Any:
        if not isinstance(v, str) or len(v) != 1 or v in '"\r\n':
            raise ValueError(
                f"must be one character other than a quote or a line break, e.g. delimiter: ';' (got {_show(v)})"
            )
        return v


SOURCE_KEYS = {f.alias or name for name, f in SourceModel.model_fields.items()}


class LabelModel(SourceModel):
    EXAMPLE: ClassVar[str] = "{kind: json, path: exports/agent_tenant_labels.json, key: agent_id, labels: tenants}"
    key: Text
    labels: Text


class LegacyDbModel(_Mapping):
    EXAMPLE: ClassVar[str] = (
        "{dsn_env: VITAL_SOURCE_DSN} (the name of the variable that holds the DSN, never the DSN itself)"
    )
    dsn_env: Text = "VITAL_SOURCE_DSN"


class ManifestModel(_Mapping):
    EXAMPLE: ClassVar[str] = "{entities: {agents: [{kind: json, path: exports/agents.json}]}}"
    entities: dict[str, list[SourceModel]]
    tenants: Text | None = None
    legacy_db: LegacyDbModel | None = None
    tenant_labels: dict[str, LabelModel] = {}
    timezone: Text = "UTC"

    @field_validator("entities", mode="before")
    @classmethod
    def _entities(cls, v: Any) -> Any:
        if not isinstance(v, dict) or not v:
            raise ValueError("needs an `entities:` mapping of entity -> list of sources")
        for entity, sources in v.items():
            if entity not in ENTITIES:
                raise ValueError(f"unknown entity {_show(entity)} (known: {', '.join(ENTITIES)})")
            if not isinstance(sources, list) or not sources:
                raise ValueError(f"{entity} must be a non-empty list of sources, e.g. [{SourceModel.EXAMPLE}]")
        return v

    @field_validator("tenant_labels", mode="before")
    @classmethod
    def _label_entities(cls, v: Any) -> Any:
        if v is None:
            return {}
        for entity in v if isinstance(v, dict) else ():
            if entity not in ENTITIES:
                raise ValueError(f"unknown entity {_show(entity)} (known: {', '.join(ENTITIES)})")
        return v

    @model_validator(mode="before")
    @classmethod
    def _needs_entities(cls, data: Any) -> Any:
        if isinstance(data, dict) and "entities" not in data:
            raise ValueError("needs an `entities:` mapping of entity -> list of sources")
        return data


# how to write a value, by key, for the errors pydantic itself finds (wrong type, empty)
HINTS = {
    "kind": f"one of {', '.join(sorted(KINDS))}",
    "path": "a file or folder path, e.g. path: exports/agents.json",
    "table": "schema.table, e.g. table: public.agents",
    "query": 'one SELECT statement, e.g. query: "SELECT * FROM public.agents"',
    "rename": "a mapping of old column name -> new column name, e.g. rename: {agent_name: name}",
    "tenants": "a tenant slug or a list of them, e.g. tenants: [pharma]",
    "records": "the key of the array in a JSON object, e.g. records: domains",
    "schema": "the dump file (plain SQL or pg_dump -Fc) or its schema part, e.g. schema: dump/legacy.dump",
    "data": "the data part of a dump in two files, e.g. data: dump/data.sql",
    "key": "the column with the row id, e.g. key: agent_id",
    "labels": "the column with the tenant labels, e.g. labels: tenants",
    "dsn_env": "the name of an environment variable, e.g. dsn_env: VITAL_SOURCE_DSN",
    "timezone": "a time zone name, e.g. timezone: UTC or timezone: Europe/Berlin",
    "entities": "a mapping of entity -> list of sources",
}
TOP_HINTS = {"tenants": "the path of a tenants file, e.g. tenants: ../rules/tenants.yaml"}
PROBLEMS = {
    "string_type": "must be text",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "missing": "is required",
}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (a key)"
        else:
            out += f"{'.' if out else ''}{part}"
    return out or "the manifest"


def describe_error(err: dict) -> str:
    """One pydantic error as `key.path: problem; fix` (never the value of a DSN-like key)."""
    loc = tuple(err.get("loc", ()))
    if err["type"] == "value_error":
        return f"{_key_path(loc)}: {str(err['msg']).removeprefix('Value error, ')}"
    name = next((p for p in reversed(loc) if p in HINTS), "")
    hint = (TOP_HINTS if len(loc) == 1 else {}).get(name) or HINTS.get(name)
    problem = PROBLEMS.get(err["type"], str(err["msg"]))
    return f"{_key_path(loc)}: {problem}" + (f"; write {hint}" if hint else "")


# ---------------------------------------------------------------------------------------------
# What the rest of vital-etl reads: checked specs with resolved paths.


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
    dump_schema: Path | None = None  # supabase_dump: the dump (or its schema part) and its data part
    dump_data: Path | None = None
    where: str = ""  # the key path in the manifest, for errors

    @property
    def relation(self) -> tuple[str, ...]:
        """`table:` as identifier parts: ("public", "agents")."""
        return tuple(self.table.split(".")) if self.table else ()

    @property
    def sql(self) -> pgsql.Composable:
        """The statement that reads the source: `table:` quoted as an identifier (never pasted
        as SQL), or the `query:` as written."""
        if self.query:
            return pgsql.SQL(self.query)
        return pgsql.SQL("SELECT * FROM {}").format(pgsql.Identifier(*self.relation))


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
    timezone: str = "UTC"  # the legacy database session's TimeZone: how timestamps are read

    @property
    def needs_legacy_db(self) -> bool:
        return any(s.kind == "postgres" for specs in self.entities.values() for s in specs)


_TABLE = re.compile(r"[^.\s]+(\.[^.\s]+)?")
_TRAILING = re.compile(r"[\s;]+$")


def _source(entity: str, raw: SourceModel, base: Path, where: str) -> SourceSpec:
    kind, tenants = raw.kind, tuple(raw.tenants)
    if kind in FILE_KINDS:
        if not raw.path:
            raise ManifestError(f"{where}: a {kind} source needs `path`")
        path = _resolve(base, raw.path)
        shown = _shown_path(raw.path, path)
        hint = _sample_hint(path)
        if kind == "markdown":
            if not path.is_dir():
                raise ManifestError(f"{where}: folder {shown} does not exist{hint}")
        elif not path.is_file():
            raise ManifestError(f"{where}: file {shown} does not exist{hint}")
        return SourceSpec(
            entity,
            kind,
            path=path,
            rename=dict(raw.rename),
            tenants=tenants,
            records=raw.records,
            delimiter=raw.delimiter,
            label=raw.path,
            where=where,
        )
    if bool(raw.table) == bool(raw.query):
        raise ManifestError(f"{where}: a {kind} source needs exactly one of `table` or `query`")
    if raw.table and not _TABLE.fullmatch(raw.table):
        raise ManifestError(
            f"{where}.table: {_show(raw.table)} is not a table name; write schema.table (e.g. table: public.agents), "
            "or use `query:` for a SELECT"
        )
    query = _TRAILING.sub("", raw.query) if raw.query else None
    if raw.query and not query:
        raise ManifestError(f"{where}.query: is empty; write {HINTS['query']}")
    dump = {}
    if kind == "supabase_dump":
        if not raw.schema_file:
            raise ManifestError(
                f"{where}: a supabase_dump source needs `schema`: the dump (plain SQL or pg_dump -Fc), "
                "or its schema part with the data part in `data`"
            )
        if not _expand(raw.schema_file).strip():
            raise ManifestError(
                f"{where}.schema: {_show(raw.schema_file)} is empty once expanded; write {HINTS['schema']}"
            )
        for key, value in (("schema", raw.schema_file), ("data", raw.data)):
            if value and _expand(value).strip():  # data: "${VITAL_DUMP_DATA}" set empty: a one-file dump
                path = _resolve(base, value)
                if not (path.is_file() or (path / "toc.dat").is_file()):  # a file, or a pg_dump -Fd folder
                    raise ManifestError(f"{where}: dump file {_shown_path(value, path)} does not exist")
                dump[f"dump_{key}"] = path
    label = f"{'dump' if kind == 'supabase_dump' else 'postgres'}:{raw.table or 'query'}"
    return SourceSpec(
        entity,
        kind,
        table=raw.table,
        query=query,
        rename=dict(raw.rename),
        tenants=tenants,
        label=label,
        where=where,
        **dump,
    )


def _resolve(base: Path, written: str) -> Path:
    return (base / _expand(written)).resolve()


def _shown_path(written: str, path: Path) -> str:
    """A path for an error message: as written when it holds ${VAR} (the expanded value may be
    a secret), else resolved."""
    return repr(written) if "$" in written else str(path)


def _expand(text: str) -> str:
    """${VAR} in paths; ${VITAL_HOME} defaults like everywhere else (.vital)."""
    from core.settings import vital_home

    return string.Template(text).safe_substitute({**os.environ, "VITAL_HOME": str(vital_home())})


def _sample_hint(path: Path) -> str:
    from core.settings import vital_home

    if (vital_home() / "sample") in path.parents:
        return "; build the bundled sample first: `.venv/bin/vital-etl sample` (make demo does)"
    return ""


def parse_manifest(data: Any, path: Path) -> ManifestModel:
    """The manifest's YAML document as a typed model; a value of the wrong shape is one
    ManifestError naming its key path and the fix."""
    try:
        return ManifestModel.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(f"{path}: {describe_error(exc.errors()[0])}") from None


def load_manifest(path: Path | str) -> Manifest:
    """Parse and check a manifest: wrong shapes, unknown entities or kinds and missing files are
    named here, before any work starts. (Database checks: `check_sources`.)"""
    path = Path(path).resolve()
    model = parse_manifest(read_yaml(path, "manifest", ManifestError), path)
    base = path.parent
    entities = {
        entity: tuple(_source(entity, s, base, f"{path}: entities.{entity}[{i}]") for i, s in enumerate(sources))
        for entity, sources in model.entities.items()
    }
    labels = {}
    for entity, spec in model.tenant_labels.items():
        src = _source(entity, spec, base, f"{path}: tenant_labels.{entity}")
        labels[entity] = LabelSpec(entity, src, spec.key, spec.labels)
    tenants_file = _resolve(base, model.tenants) if model.tenants else None
    if tenants_file and not tenants_file.is_file():
        raise ManifestError(f"{path}: tenants file {_shown_path(model.tenants, tenants_file)} does not exist")
    dsn_env = model.legacy_db.dsn_env if model.legacy_db else "VITAL_SOURCE_DSN"
    return Manifest(path, entities, labels, tenants_file, dsn_env, model.timezone)


def legacy_dsn(manifest: Manifest) -> str:
    """The legacy database: the manifest's DSN variable, else the embedded `vital_legacy`."""
    from core.connections import source_dsn

    return source_dsn(manifest.dsn_env)


def check_sources(manifest: Manifest, tenant_slugs: set[str]) -> None:
    """The checks that need more than the file system: tenants named by sources exist, the
    legacy database answers, every `table:` exists and every `query:` is one read-only
    statement (tried in a READ ONLY transaction that is rolled back: nothing runs)."""
    for specs in manifest.entities.values():
        for s in specs:
            for t in s.tenants:
                if t not in tenant_slugs:
                    raise ManifestError(
                        f"{manifest.path}: source {s.label} names unknown tenant {t!r} "
                        f"(known: {', '.join(sorted(tenant_slugs))})"
                    )
    import psycopg

    from core.connections import mask_dsn
    from core.retry import is_transient
    from sources.legacy_pg import UnknownTimeZone, Unreadable, check_statement, read_only

    for specs in manifest.entities.values():
        for s in specs:
            if s.kind not in ("postgres", "supabase_dump"):
                continue
            dsn = source_dsn_of(s, manifest)
            where = f"{manifest.path}: entities.{s.entity} source {s.label}"
            try:
                with read_only(dsn, manifest.timezone, connect_timeout=10) as conn:
                    check_statement(conn, s.sql, s.relation)
            except UnknownTimeZone:
                raise ManifestError(
                    f"{manifest.path}: timezone: {_show(manifest.timezone)} is not a time zone the legacy "
                    f"database knows; write {HINTS['timezone']}"
                ) from None
            except Unreadable as exc:
                raise ManifestError(f"{where} fails on {mask_dsn(dsn)}: {exc}") from None
            except psycopg.Error as exc:
                if is_transient(exc):
                    raise
                raise ManifestError(f"{where} fails on {mask_dsn(dsn)}: {' '.join(str(exc).split())}") from None


def source_dsn_of(spec: SourceSpec, manifest: Manifest) -> str:
    """Where a database source reads: the legacy DB, or the embedded copy of a dump."""
    if spec.kind == "supabase_dump":
        from sources.supabase_dump import restored_copy

        return restored_copy(spec.dump_schema, spec.dump_data)[0]
    return legacy_dsn(manifest)
