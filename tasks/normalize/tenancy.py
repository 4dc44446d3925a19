"""Tenant assignment (rules/tenancy.yaml): explicit labels, legacy tenant ids, keyword rules,
then a default. Pure: raw frame and rules in, one (tenants, deciding rule, problem) per row."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from core import jsontext
from tasks.normalize.common import clean_text, parse_uuid_list
from tasks.normalize.rules import EntityTenancy, Rules, enum_key


@dataclass(frozen=True)
class LabelFile:
    """A tenant-label file (manifest `tenant_labels`): row key -> tenant labels, and each row's
    other columns (typed), which are kept on the row they name (metadata.label_file)."""

    tenants: dict[str, list[str]]
    rows: dict[str, dict] = field(default_factory=dict)
    source: str | None = None


def label_to_slug(rules: Rules) -> dict[str, str]:
    out = {}
    for t in rules.tenants.tenants:
        for label in (t.slug, *t.labels):
            out[enum_key(label)] = t.slug
    return out


def assign_tenants(
    entity: str, raw: pl.DataFrame, rules: Rules, labels: dict[str, list[str]]
) -> list[tuple[list[str], str, str | None]]:
    spec = rules.tenancy.get(entity, EntityTenancy())
    slugs = label_to_slug(rules)
    by_legacy = {lid: t.slug for t in rules.tenants.tenants for lid in t.legacy_ids}
    every = sorted(t.slug for t in rules.tenants.tenants)
    platform = set(rules.tenants.platform_legacy_ids)
    out = []
    for row in raw.iter_rows(named=True):
        out.append(_assign(row, spec, slugs, by_legacy, platform, every, labels, entity))
    return out


def _field(row: dict, column: str) -> str:
    """A column's text; `metadata.sector` reads key `sector` of the JSON object in `metadata`."""
    name, _, key = column.partition(".")
    value = row.get(name)
    if not key or not value:
        return str(value or "")
    try:
        nested = jsontext.loads(value)
    except ValueError:
        return ""
    found = nested.get(key) if isinstance(nested, dict) else None
    return "" if found is None else (found if isinstance(found, str) else json.dumps(found))


def _from_labels(values: list[str], slugs: dict[str, str], where: str):
    found, unknown = [], []
    for v in values:
        slug = slugs.get(enum_key(v))
        (found if slug else unknown).append(slug or v)
    if unknown:
        return None, (
            f"{where}: tenant label {unknown[0]!r} names no tenant; add it to `labels` of a tenant "
            f"in rules/tenants.yaml (known: {', '.join(sorted(set(slugs.values())))})"
        )
    return sorted(set(found)), None


def _assign(row, spec, slugs, by_legacy, platform, every, labels, entity):
    explicit = row.get("_tenants")
    if explicit:
        tenants, problem = _from_labels(json.loads(explicit), slugs, "manifest")
        return (tenants or [], "explicit: manifest source", problem)
    if spec.label_key:
        key = clean_text(row.get(spec.label_key))
        if key is not None and key in labels:
            tenants, problem = _from_labels(labels[key], slugs, "label file")
            return (tenants or [], "explicit: label file", problem)
    if spec.legacy_ids:
        try:
            ids = parse_uuid_list(row.get(spec.legacy_ids))
        except ValueError as exc:
            return [], "legacy_ids", f"{spec.legacy_ids}: {exc}"
        if ids:
            found = set()
            for lid in ids:
                if lid in platform:
                    found.update(every)
                elif lid in by_legacy:
                    found.add(by_legacy[lid])
                else:
                    return (
                        [],
                        "legacy_ids",
                        (
                            f"{spec.legacy_ids}: legacy tenant id {lid} is not in rules/tenants.yaml "
                            "(add it to a tenant's legacy_ids, or to platform.legacy_ids)"
                        ),
                    )
            return sorted(found), f"legacy_ids: {spec.legacy_ids}", None
    matched, hits = set(), []
    for rule in spec.keywords:
        text = " ".join(_field(row, c) for c in rule.columns)
        for word in rule.words:
            if word.pattern.search(text):
                matched.update(rule.tenants)
                hits.append(word.text)
                break
    if matched:
        return sorted(matched), f"keywords: {', '.join(hits)}", None
    if spec.default:
        return list(spec.default), "default", None
    return [], "none", f"no tenant rule matched and rules/tenancy.yaml has no default for {entity}"
