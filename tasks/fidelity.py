"""Field-by-field fidelity: every record of the real VITAL exports against the rows vital-etl
loads for it, in every tenant it goes to.

The exports are read here with the standard library (json, csv), not with vital-etl's readers,
and each conversion is computed again independently, so a reader or a normalizer that drops or
changes a value shows up. Per field the outcome is one of:

    kept        a column holds the value as the source has it
    converted   a column holds it through a documented conversion (CONVERSIONS, README)
    metadata    metadata holds it under its own name, with its source type
    linked      a reference list: every element is a junction row, or is kept on the row in
                metadata._etl (unresolved, ambiguous, contradicted)
    lost        nothing holds it
    changed     something holds a different value

A record is loaded (into one or more tenants), quarantined (with its reason), or lost.
Empty values (null, '', []) have nothing to keep and are not counted.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tasks.normalize.common import ref_key
from tasks.normalize.rules import Rules

# conversion -> what it does (the README lists the same)
CONVERSIONS = {
    "key": "the natural key, trimmed, becomes legacy_key (and the deterministic id)",
    "trim": "names, codes and labels: surrounding spaces trimmed, odd spaces (NBSP) made plain",
    "unescape": "literal \\n, \\r\\n, \\t (backslash sequences) in prompts become real line breaks and tabs",
    "number": "numeric text (temperature '0.70') becomes a number",
    "integer": "whole-number text ('4000', tier '3') becomes an integer",
    "boolean": "t/f, true/false, yes/no become booleans",
    "timestamp": "timestamp text without a zone becomes timestamptz, read as UTC",
    "array": "an array (JSON array or PostgreSQL literal) becomes text[]: elements trimmed, empty ones dropped",
    "codes": "a comma list ('FDA Part 11, GxP') becomes text[]",
    "range": "a year range ('10-15', '15+') becomes years_experience_min/max",
    "enum": "free text becomes an enum label (rules/enums.yaml); the raw spelling stays as metadata.legacy_<field>",
    "lower": "expertise_level lower-cased; the raw spelling stays as metadata.legacy_<field>",
    "ref": "a parent reference becomes the parent's id (unresolved: kept in metadata._etl.unresolved)",
    "csv_json": "a CSV cell that is JSON (a number, true/false, an array, an object) is kept as that JSON value",
    "metadata_object": "the keys of a legacy `metadata` object are kept at the top level of metadata",
    "label_file": "the columns of the tenant-label file are kept on the agent as metadata.label_file",
}


@dataclass(frozen=True)
class Source:
    path: str  # relative to the shared VITAL folder
    entity: str
    key: tuple[str, ...]  # the fields that give the natural key, first non-empty wins
    fields: dict[str, tuple]  # field -> (conversion, column, ...) or a list of them
    records: str | None = None  # the key of the array in a JSON object


LINK = "link"


def _j(junction: str, side: str, match: str = "any") -> tuple:
    return (LINK, junction, side, match)


SOURCES: tuple[Source, ...] = (
    Source(
        "exports/agents.json",
        "agents",
        ("id",),
        {
            "id": ("key",),
            "name": ("text", "name"),
            "display_name": ("text", "display_name"),
            "description": ("text", "description"),
            "avatar": ("text", "avatar_url"),
            "color": ("text", "color"),
            "model": ("text", "model"),
            "system_prompt": ("unescape", "system_prompt"),
            "temperature": ("number", "temperature"),
            "max_tokens": ("integer", "max_tokens"),
            "capabilities": [("legacy_array", "legacy_capabilities"), _j("agent_capabilities", "a")],
            "knowledge_domains": [("legacy_array", "legacy_knowledge_domains"), _j("agent_knowledge_domains", "a")],
            "business_function": ("enum", "functional_area", "functional_area", "legacy_business_function"),
            "role": ("text", "role"),
            "tier": ("integer", "tier"),
            "status": ("enum", "status", "agent_status"),
            "department": ("text", "department"),
            "is_custom": ("boolean", "is_custom"),
            "is_public": ("boolean", "is_public"),
            "created_at": ("timestamp", "legacy_created_at"),
            "updated_at": ("timestamp", "legacy_updated_at"),
        },
    ),
    Source("exports/agent_tenant_labels.json", "agents", ("agent_id",), {"*": ("label_file",)}),
    Source(
        "exports/capabilities.json",
        "capabilities",
        ("capability_slug", "capability_name"),
        {
            "capability_name": ("text", "name"),
            "capability_slug": [("key",), ("text", "slug")],
            "display_name": ("text", "display_name"),
            "description": ("text", "description"),
            "category": ("text", "category"),
            "complexity_level": ("enum", "complexity", "complexity"),
            "is_active": ("boolean", "is_active"),
        },
    ),
    Source(
        "exports/tools.json",
        "tools",
        ("slug", "name"),
        {
            "name": ("text", "name"),
            "slug": [("key",), ("text", "slug")],
            "description": ("text", "description"),
            "tool_type": ("text", "tool_type"),
            "integration_name": ("text", "integration_name"),
            "endpoint_url": ("text", "endpoint_url"),
            "is_active": ("boolean", "is_active"),
            "tags": ("array", "tags"),
            "metadata": ("metadata_object",),
        },
    ),
    Source(
        "exports/knowledge_domains.json",
        "knowledge_domains",
        ("slug",),
        {
            "name": ("text", "name"),
            "slug": [("key",), ("text", "slug")],
            "description": ("text", "description"),
            "parent_slug": ("ref", "parent_id", "knowledge_domains"),
            "domain_path": ("text", "domain_path"),
            "depth_level": ("integer", "depth_level"),
            "domain_type": ("text", "domain_type"),
            "is_active": ("boolean", "is_active"),
        },
    ),
    Source(
        "exports/knowledge_domains_full.json",
        "knowledge_domains",
        ("domain_id",),
        {
            "domain_id": ("key",),
            "domain_name": ("text", "name"),
            "domain_description_llm": ("text", "description"),
            "parent_domain_id": ("ref", "parent_id", "knowledge_domains"),
        },
        records="domains",
    ),
    Source(
        "exports/personas_medical_affairs.json",
        "personas",
        ("slug",),
        {
            "name": ("text", "name"),
            "slug": [("key",), ("text", "slug")],
            "title": ("text", "title"),
            "tagline": ("text", "department"),
            "seniority_level": ("text", "seniority_level"),
            "pain_points": ("array", "pain_points"),
            "goals": ("array", "goals"),
            "key_responsibilities": ("array", "responsibilities"),
            "is_active": ("boolean", "is_active"),
            "validation_status": ("enum", "validation_status", "validation_status"),
            "metadata": ("metadata_object",),
        },
    ),
    Source(
        "exports/dh_personas.json",
        "personas",
        ("code",),
        {
            "code": ("key",),
            "name": ("text", "name"),
            "expertise_level": ("lower", "expertise_level"),
            "years_experience": ("range", "years_experience_min", "years_experience_max"),
            "key_responsibilities": ("array", "responsibilities"),
            "department": ("text", "department"),
            "description": ("text", "description"),
            "metadata": ("metadata_object",),
        },
    ),
    Source(
        "exports/jtbd_library.json",
        "jobs_to_be_done",
        ("code",),
        {
            "code": [("key",), ("text", "code")],
            "name": ("text", "name"),
            "description": ("text", "statement"),
            "job_category": ("enum", "job_category", "job_category"),
            "complexity": ("enum", "complexity", "complexity"),
            "frequency": ("enum", "frequency", "frequency"),
            "status": ("enum", "status", "jtbd_status"),
            "success_criteria": ("array", "success_criteria"),
            "desired_outcomes": ("array", "desired_outcomes"),
            "validation_score": ("number", "validation_score"),
            "metadata": ("metadata_object",),
        },
    ),
    Source(
        "exports/notion/functions.csv",
        "org_functions",
        ("Unique_ID",),
        {
            "Unique_ID": ("key",),
            "Department_Name": ("text", "name"),
            "Description": ("text", "description"),
            "Roles": _j("function_roles", "a", "name"),
            "🏫 Departments": _j("function_departments", "a", "name"),
        },
    ),
    Source(
        "exports/notion/departments.csv",
        "org_departments",
        ("Unique_ID", "Department_ID"),
        {
            "Department_Name": ("text", "name"),
            "Description": ("text", "description"),
            "Department_Type": ("text", "department_type"),
            "Data_Classification": ("enum", "data_classification", "data_classification"),
            "Compliance_Requirements": ("codes", "compliance_requirements"),
            "Critical_Systems": ("codes", "critical_systems"),
            "Mapped_to_Functions": _j("function_departments", "b", "code"),
            "🏫 Functions": _j("function_departments", "b", "name"),
            "Mapped_to_Roles": _j("department_roles", "a", "code"),
            "Roles": _j("department_roles", "a", "name"),
        },
    ),
    Source(
        "exports/notion/roles.csv",
        "org_roles",
        ("Unique_ID",),
        {
            "Unique_ID": ("key",),
            "Name": ("text", "name"),
            "Description": ("text", "description"),
            "Mapped_to_Departments": _j("department_roles", "b", "code"),
            "🏫 Departments": _j("department_roles", "b", "name"),
            "Mapped_to_Functions": _j("function_roles", "b", "code"),
            "🏫 Functions": _j("function_roles", "b", "name"),
            "Mapped_to_Responsibilities": _j("role_responsibilities", "a", "code"),
            "Responsibilities": _j("role_responsibilities", "a", "name"),
        },
    ),
    Source(
        "exports/notion/responsibilities.csv",
        "org_responsibilities",
        ("Unique_ID",),
        {
            "Unique_ID": ("key",),
            "Name": ("text", "name"),
            "Description": ("text", "description"),
            "Roles": _j("role_responsibilities", "b", "name"),
        },
    ),
    Source(
        "exports/prompts.csv",
        "prompts",
        ("id",),
        {
            "id": ("key",),
            "prompt_code": ("text", "code"),
            "name": ("text", "name"),
            "slug": ("text", "slug"),
            "prompt_starter": ("text", "prompt_starter"),
            "description": ("text", "description"),
            "detailed_prompt": ("unescape", "body"),
            "system_prompt": ("unescape", "system_prompt"),
            "user_template": ("text", "user_template"),
            "role_type": ("text", "role_type"),
            "category": ("text", "category"),
            "complexity": ("enum", "complexity", "complexity"),
            "tags": ("array", "tags"),
            "variables": ("array", "variables"),
            "version": ("text", "version"),
            "is_active": ("boolean", "is_active"),
            "expert_validated": ("boolean", "expert_validated"),
            "created_at": ("timestamp", "legacy_created_at"),
            "updated_at": ("timestamp", "legacy_updated_at"),
        },
    ),
    Source("knowledge", "knowledge_documents", ("path",), {"path": ("key",), "content": ("text", "content")}),
)


@dataclass
class Target:
    """What one tenant gets: rows per entity by legacy key (loader dicts, metadata a dict),
    junction rows, and the keys quarantined per entity."""

    rows: dict[str, dict[str, dict]]
    junctions: dict[str, list[dict]]
    quarantined: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class EntityReport:
    records: int = 0
    loaded: int = 0  # records loaded into at least one tenant
    copies: int = 0  # rows compared (a record in two tenants is two rows)
    quarantined: int = 0
    records_lost: int = 0
    unmatched_labels: int = 0  # label-file rows that name no row (reported as a finding)
    outcomes: Counter = field(default_factory=Counter)  # kept, converted, metadata, linked, lost, changed
    conversions: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def note(self, outcome: str, conversion: str | None = None, example: str | None = None) -> None:
        self.outcomes[outcome] += 1
        if conversion:
            self.conversions[conversion] += 1
        if example and outcome in ("lost", "changed") and len(self.examples) < 20:
            self.examples.append(example)


# ------------------------------------------------------------------------------------------------
# reading the exports, independently of vital-etl's readers


def read_source(shared: Path, src: Source) -> list[dict]:
    path = shared / src.path
    if src.path == "knowledge":
        return [{"path": p.name, "content": p.read_bytes().decode("utf-8-sig")} for p in sorted(path.glob("*.md"))]
    if path.suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(fh)]
    data = json.loads(path.read_text(encoding="utf-8"))
    return data[src.records] if src.records else data


def _csv_value(value):
    """A CSV cell's value under the documented convention: JSON text for a number, true/false,
    an array or an object is that JSON value."""
    s = value.strip()
    if re.fullmatch(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?|true|false", s) or s[:1] in "[{":
        try:
            decoded = json.loads(s)
        except ValueError:
            return value
        if not isinstance(decoded, str) and decoded is not None:
            return decoded
    return value


# ------------------------------------------------------------------------------------------------
# comparing


def same(a, b) -> bool:
    """JSON equality that keeps types apart (True is not 1, '1' is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _empty(value) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _clean(value: str) -> str:
    return re.sub(r"[\u00a0\u2000-\u200b\u202f\u205f\u3000\ufeff]", " ", value).strip()


def _array(value) -> list[str]:
    if isinstance(value, list):
        items = value
    elif isinstance(value, str) and value.strip().startswith("["):
        items = json.loads(value)
    elif isinstance(value, str) and value.strip().startswith("{"):
        body = value.strip()[1:-1]
        items = [
            m.group(1) if m.group(1) is not None else m.group(2)
            for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|([^,]+)', body)
        ]
        items = [re.sub(r"\\(.)", r"\1", x) for x in items if x.strip().upper() != "NULL"]
    else:
        raise ValueError(f"not an array: {value!r}")
    return [c for c in (_clean(x if isinstance(x, str) else json.dumps(x)) for x in items if x is not None) if c]


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).strip().casefold()
    if v in ("t", "true", "yes", "y", "1", "on"):
        return True
    if v in ("f", "false", "no", "n", "0", "off"):
        return False
    raise ValueError(value)


def _timestamp(value) -> datetime:
    v = str(value).strip().replace("Z", "+00:00")
    return datetime.fromisoformat(v)


def _as_utc(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _range(value) -> tuple:
    v = str(value).replace(" ", "")
    if m := re.fullmatch(r"(\d+)[-–](\d+)\+?", v):
        return int(m.group(1)), int(m.group(2))
    if m := re.fullmatch(r"(\d+)\+", v):
        return int(m.group(1)), None
    return int(v), int(v)


def _names(row: dict) -> set[str]:
    """Every way a reference can name a target row (folded)."""
    out = {ref_key(row["legacy_key"])}
    for col in ("name", "slug", "code", "display_name", "title"):
        if isinstance(row.get(col), str):
            out.add(ref_key(row[col]))
    meta = row.get("metadata") or {}
    for col in ("Department_ID", "unique_id"):
        if isinstance(meta.get(col), str):
            out.add(ref_key(meta[col]))
    ref = (meta.get("_etl") or {}).get("reference")
    if ref:
        out.add(ref_key(ref))
    return out


class Comparer:
    def __init__(self, shared: Path, targets: dict[str, Target], rules: Rules):
        self.shared, self.targets, self.rules = shared, targets, rules
        self.by_id: dict[str, dict[str, dict]] = {}
        for t in targets.values():
            for rows in t.rows.values():
                for row in rows.values():
                    self.by_id[row["id"]] = row
        self.links: dict[tuple[str, str, str], set[str]] = defaultdict(set)  # (junction, side, id) -> other ids
        from core.catalogue import junction as junction_of

        for t in targets.values():
            for name, rows in t.junctions.items():
                j = junction_of(name)
                for r in rows:
                    self.links[(name, "a", r[j.a_col])].add(r[j.b_col])
                    self.links[(name, "b", r[j.b_col])].add(r[j.a_col])

    def run(self) -> dict[str, EntityReport]:
        reports: dict[str, EntityReport] = defaultdict(EntityReport)
        for src in SOURCES:
            report = reports[src.path]
            for record in read_source(self.shared, src):
                self.record(src, record, report)
        return dict(reports)

    def record(self, src: Source, record: dict, report: EntityReport) -> None:
        report.records += 1
        key = next((_clean(str(record[k])) for k in src.key if not _empty(record.get(k))), None)
        copies = [t.rows.get(src.entity, {}).get(key) for t in self.targets.values()]
        copies = [c for c in copies if c is not None]
        if not copies:
            if src.fields.get("*") == ("label_file",):
                report.unmatched_labels += 1
            elif any(key in t.quarantined.get(src.entity, set()) for t in self.targets.values()):
                report.quarantined += 1
            else:
                report.records_lost += 1
                report.examples.append(f"record {key!r}: in no tenant and not quarantined")
            return
        report.loaded += 1
        for row in copies:
            report.copies += 1
            for name, value in record.items():
                if _empty(value):
                    continue
                spec = src.fields.get(name, src.fields.get("*", ("metadata",)))
                specs = spec if isinstance(spec, list) else [spec]
                results = [self.check(src, row, name, value, s) for s in specs]
                bad = next((r for r in results if r[0] in ("lost", "changed")), None)
                outcome, conversion, detail = bad or results[0]
                report.note(outcome, conversion, f"{key}.{name}: {detail}" if bad else None)

    # one field against one row: (outcome, conversion, detail)
    def check(self, src: Source, row: dict, name: str, value, spec: tuple):
        kind = spec[0]
        meta = row.get("metadata") or {}
        csv_source = src.path.endswith(".csv")
        try:
            if kind == "metadata":
                expected = _csv_value(value) if csv_source and isinstance(value, str) else value
                if name not in meta and name in src.key and row["legacy_key"] == _clean(str(value)):
                    return "converted", "key", ""
                if name not in meta:
                    return "lost", None, "not in metadata"
                if not same(meta[name], expected):
                    return "changed", None, f"metadata {meta[name]!r} != {expected!r}"
                return "metadata", "csv_json" if expected is not value else None, ""
            if kind == "metadata_object":
                for k, v in value.items():
                    if _empty(v):
                        continue
                    holder = meta if k in meta and same(meta[k], v) else meta.get("metadata") or {}
                    if k not in holder:
                        return "lost", None, f"metadata key {k!r} not kept"
                    if not same(holder[k], v):
                        return "changed", None, f"metadata key {k!r}: {holder[k]!r} != {v!r}"
                return "metadata", "metadata_object", ""
            if kind == "label_file":
                kept = (meta.get("label_file") or {}).get(name)
                if kept is None:
                    return "lost", None, "not in metadata.label_file"
                return ("metadata", "label_file", "") if same(kept, value) else ("changed", None, f"{kept!r}")
            if kind == "key":
                return ("converted", "key", "") if row["legacy_key"] == _clean(str(value)) else ("changed", None, "")
            column = spec[1]
            got = row.get(column)
            if kind == "text":
                if got == value:
                    return "kept", None, ""
                if isinstance(value, str) and got == _clean(value):
                    return "converted", "trim", ""
                return "changed", None, f"{column} {str(got)[:60]!r} != {str(value)[:60]!r}"
            if kind == "unescape":
                expected = value.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\\t", "\t")
                if got == value:
                    return "kept", None, ""
                return ("converted", "unescape", "") if got == expected else ("changed", None, f"{column} differs")
            if kind in ("number", "integer"):
                expected = float(value) if kind == "number" else int(str(value).strip())
                ok = got is not None and float(got) == float(expected)
                if ok and kind == "integer" and float(got) != int(float(got)):
                    ok = False
                if not ok:
                    return "changed", None, f"{column} {got!r} != {value!r}"
                return ("kept", None, "") if not isinstance(value, str) else ("converted", kind, "")
            if kind == "boolean":
                if got is not _bool(value):
                    return "changed", None, f"{column} {got!r} != {value!r}"
                return ("kept", None, "") if isinstance(value, bool) else ("converted", "boolean", "")
            if kind == "timestamp":
                if got is None or _as_utc(got) != _as_utc(_timestamp(value)):
                    return "changed", None, f"{column} {got!r} != {value!r}"
                return "converted", "timestamp", ""
            if kind in ("array", "codes", "legacy_array"):
                expected = [_clean(x) for x in value.split(",") if _clean(x)] if kind == "codes" else _array(value)
                got = meta.get(column) if kind == "legacy_array" else got
                if got is None or list(got) != expected:
                    return "changed", None, f"{column} {got!r} != {expected!r}"
                if kind == "legacy_array":
                    return "metadata", "array", ""
                return (
                    ("kept", None, "")
                    if isinstance(value, list) and list(value) == expected
                    else ("converted", kind, "")
                )
            if kind == "range":
                lo, hi = _range(value)
                if (row.get(spec[1]), row.get(spec[2])) != (lo, hi):
                    return "changed", None, f"{spec[1:]} {(row.get(spec[1]), row.get(spec[2]))} != {(lo, hi)}"
                return "converted", "range", ""
            if kind in ("enum", "lower"):
                raw_key = spec[3] if len(spec) > 3 else f"legacy_{name}"
                expected = value.lower() if kind == "lower" else self.rules.enum(spec[2]).map(value)
                if got != expected:
                    return "changed", None, f"{column} {got!r} != {expected!r}"
                if not same(meta.get(raw_key), value):
                    return "lost", None, f"raw spelling {value!r} not in metadata.{raw_key}"
                return "converted", kind, ""
            if kind == "ref":
                target = self.by_id.get(got) if got else None
                unresolved = (meta.get("_etl") or {}).get("unresolved", {}).get(column, [])
                if target is not None and ref_key(value) in _names(target):
                    return "converted", "ref", ""
                if got is None and value in unresolved:
                    return "metadata", "ref", ""
                return "changed" if got else "lost", None, f"{column} -> {target and target['legacy_key']!r}"
            if kind == LINK:
                return self.check_link(src, row, name, value, spec)
        except (ValueError, TypeError) as exc:
            return "changed", None, f"cannot compare: {exc}"
        raise ValueError(f"unknown conversion {kind!r}")

    def check_link(self, src: Source, row: dict, name: str, value, spec: tuple):
        _, junction, side, match = spec
        if match == "code" or src.path.endswith(".json"):
            elements = _array(value) if not isinstance(value, str) or value.strip()[:1] in "[{" else []
            if match == "code":
                elements = [_clean(x) for x in value.split(",") if _clean(x)]
        else:
            elements = [m.group(1).strip() for m in re.finditer(r"\s*(.+?)\s*\((https?://[^)\s]*)\)\s*(?:,|$)", value)]
            elements = elements or [_clean(x) for x in value.split(",") if _clean(x)]
        notes = (row.get("metadata") or {}).get("_etl") or {}
        kept = set()
        for what in ("unresolved", "ambiguous", "contradicted"):
            kept |= set(notes.get(what, {}).get(name, []))
        partners = [self.by_id.get(i) for i in self.links.get((junction, side, row["id"]), ())]
        names = set().union(*(_names(p) for p in partners if p)) if partners else set()
        missing = [e for e in elements if e not in kept and ref_key(e) not in names]
        if missing:
            return (
                "lost",
                None,
                f"{len(missing)} of {len(elements)} references neither linked nor kept, e.g. {missing[0]!r}",
            )
        return "linked", None, ""


def compare(shared: Path, targets: dict[str, Target], rules: Rules) -> dict[str, EntityReport]:
    return Comparer(shared, targets, rules).run()


# ------------------------------------------------------------------------------------------------
# what vital-etl loads, without a database (the rows and junction rows the loader is given)


def prepared_targets(manifest_path: Path | str, rules: Rules | None = None) -> dict[str, Target]:
    from sources.manifest import load_manifest
    from tasks.extract import extract_entity, read_labels
    from tasks.normalize import SHAPES
    from tasks.normalize.base import normalize_frame
    from tasks.normalize.resolve import slice_tenant
    from tasks.normalize.rules import load_rules
    from tasks.prepare import rows_for_load

    manifest = load_manifest(manifest_path)
    rules = rules or load_rules(tenants_file=manifest.tenants_file)
    labels = {e: read_labels(s, manifest) for e, s in manifest.tenant_labels.items()}
    normalized = {
        e: normalize_frame(e, extract_entity(manifest, e).frame, rules, SHAPES[e], labels=labels.get(e))
        for e in manifest.entities
    }
    targets = {}
    for tenant in rules.tenants.tenants:
        part = slice_tenant(normalized, tenant, rules.create_missing)
        targets[tenant.slug] = Target(
            {e: {r["legacy_key"]: r for r in rows_for_load(s.rows)} for e, s in part.entities.items()},
            {j: frame.to_dicts() for j, frame in part.junctions.items()},
            {e: set(s.quarantined["legacy_key"].drop_nulls().to_list()) for e, s in part.entities.items()},
        )
    return targets


def summary_table(reports: dict[str, EntityReport]) -> list[dict]:
    rows = []
    for path, r in reports.items():
        rows.append(
            {
                "source": path,
                "records": r.records,
                "loaded": r.loaded,
                "quarantined": r.quarantined,
                "unmatched": r.unmatched_labels,
                "records_lost": r.records_lost,
                "kept": r.outcomes["kept"],
                "converted": r.outcomes["converted"],
                "metadata": r.outcomes["metadata"],
                "linked": r.outcomes["linked"],
                "lost": r.outcomes["lost"],
                "changed": r.outcomes["changed"],
            }
        )
    return rows
