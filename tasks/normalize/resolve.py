"""From all-tenant normalized entities to one tenant's rows: deterministic ids, the tenant's
quarantined and skipped counts, and junction rows with both ends resolved to target ids.

References are resolved through each entity's aliases (legacy key, slug, name, legacy id, code,
compared with common.ref_key); an exact legacy-key match wins over a name match. Unresolved
references are counted and sampled for the report, never silently dropped."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from core.catalogue import JUNCTIONS, REF_COLUMNS
from core.identity import row_id
from core.tenants import Tenant
from tasks.normalize.base import Normalized
from tasks.normalize.common import ref_key

SAMPLE = 5


@dataclass
class EntitySlice:
    entity: str
    rows: pl.DataFrame  # this tenant's valid rows, with id and tenant_id
    quarantined: pl.DataFrame  # rejects that belong to this tenant (or to no known tenant)
    read: int
    skipped: int
    created: int = 0  # rows made for references that named no row (rules/references.yaml)

    @property
    def loaded(self) -> int:
        return self.rows.height


@dataclass
class TenantSlice:
    tenant: Tenant
    entities: dict[str, EntitySlice]
    junctions: dict[str, pl.DataFrame]
    link_report: dict[str, dict] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)


def _ids(tenant: Tenant, entity: str, keys: list[str]) -> list[str]:
    return [str(row_id(tenant.id, entity, k)) for k in keys]


def _index(rows: pl.DataFrame) -> dict[str, str]:
    """alias -> legacy key; an alias that is some row's own key beats a name match."""
    index: dict[str, str] = {}
    keys = rows["legacy_key"].to_list()
    for key in keys:
        index.setdefault(ref_key(key), key)
    for key, aliases in zip(keys, rows["_aliases"].to_list()):
        for alias in aliases or ():
            index.setdefault(alias, key)
    return index


def slice_tenant(
    normalized: dict[str, Normalized], tenant: Tenant, create_missing: dict[str, tuple[str, ...]] | None = None
) -> TenantSlice:
    entities: dict[str, EntitySlice] = {}
    for entity, n in normalized.items():
        mine = n.rows.filter(pl.col("tenants").list.contains(tenant.slug)) if n.rows.height else n.rows
        mine = mine.with_columns(
            pl.Series("id", _ids(tenant, entity, mine["legacy_key"].to_list()), dtype=pl.Utf8),
            pl.lit(str(tenant.id)).alias("tenant_id"),
        )
        rejects = n.rejects.filter(pl.col("tenants").list.contains(tenant.slug) | (pl.col("tenants").list.len() == 0))
        entities[entity] = EntitySlice(entity, mine, rejects, n.read, n.read - mine.height - rejects.height)

    indexes = {e: _index(s.rows) for e, s in entities.items() if s.rows.height}
    out = TenantSlice(tenant, entities, {})
    stubs: dict[str, dict[str, tuple[str, str]]] = {}
    for entity, refs in REF_COLUMNS.items():
        if entity in entities:
            _resolve_ref_columns(out, entities[entity], refs, indexes)
    for j in JUNCTIONS:
        junction, a_entity, b_entity, a_col, b_col, kind_col = j.name, j.a, j.b, j.a_col, j.b_col, j.kind
        frames = [
            n.links[junction]
            for e, n in normalized.items()
            if junction in n.links and e in entities and n.links[junction].height
        ]
        owners = {e for e, n in normalized.items() if junction in n.links}
        if not frames:
            continue
        links = pl.concat(frames)
        owned = set().union(*(set(entities[e].rows["legacy_key"].to_list()) for e in owners if e in entities))
        links = links.filter(pl.col("owner_key").is_in(list(owned)))
        a_index, b_index = indexes.setdefault(a_entity, {}), indexes.setdefault(b_entity, {})
        creatable = set((create_missing or {}).get(junction, ())) if b_entity in entities else set()
        resolved, missing = [], []
        for a_ref, b_ref, kind, _ in links.iter_rows():
            a_key, b_key = a_index.get(ref_key(a_ref)), b_index.get(ref_key(b_ref))
            if a_key is not None and b_key is None and kind in creatable:
                b_key = f"ref:{ref_key(b_ref).replace(' ', '-')}"
                b_index[ref_key(b_ref)] = b_key
                stubs.setdefault(b_entity, {})[b_key] = (b_ref, f"{junction}.{kind}")
            if a_key is None:
                missing.append(f"{a_ref!r} ({a_entity})")
            elif b_key is None:
                missing.append(f"{b_ref!r} ({b_entity})")
            else:
                resolved.append((a_key, b_key, kind if kind_col else None))
        frame = pl.DataFrame(
            resolved, schema={"a_key": pl.Utf8, "b_key": pl.Utf8, "kind": pl.Utf8}, orient="row"
        ).unique(maintain_order=True)
        cols = {
            "tenant_id": [str(tenant.id)] * frame.height,
            a_col: _ids(tenant, a_entity, frame["a_key"].to_list()),
            b_col: _ids(tenant, b_entity, frame["b_key"].to_list()),
        }
        if kind_col:
            cols[kind_col] = frame["kind"].to_list()
        out.junctions[junction] = pl.DataFrame(cols, schema={k: pl.Utf8 for k in cols})
        out.link_report[junction] = {
            "references": links.height,
            "rows": frame.height,
            "unresolved": len(missing),
            "examples": sorted(set(missing))[:SAMPLE],
        }
        if missing:
            out.findings.append(
                f"{junction}: {len(missing)} of {links.height} references name no "
                f"{tenant.slug} row, e.g. {', '.join(sorted(set(missing))[:3])}"
            )
    for entity, made in stubs.items():
        _add_stubs(entities[entity], tenant, made)
    return out


def _add_stubs(part: EntitySlice, tenant: Tenant, made: dict[str, tuple[str, str]]) -> None:
    """Minimal rows for references that named no row (rules/references.yaml)."""
    import json

    keys = list(made)
    frame = pl.DataFrame(
        {
            "legacy_key": keys,
            "name": [made[k][0] for k in keys],
            "metadata": [json.dumps({"created_from": made[k][1], "reference": made[k][0]}) for k in keys],
            "tenants": [[tenant.slug]] * len(keys),
            "tenant_rule": ["created for a reference"] * len(keys),
            "_source": ["rules/references.yaml"] * len(keys),
            "_aliases": [[ref_key(made[k][0])] for k in keys],
            "id": _ids(tenant, part.entity, keys),
            "tenant_id": [str(tenant.id)] * len(keys),
        }
    )
    part.rows = pl.concat([part.rows, frame], how="diagonal_relaxed")
    part.created += len(keys)


def _resolve_ref_columns(out: TenantSlice, part: EntitySlice, refs: dict, indexes: dict) -> None:
    for ref_col, (target, id_col) in refs.items():
        if ref_col not in part.rows.columns:
            continue
        index = indexes.get(target, {})
        values, missing = [], []
        for ref in part.rows[ref_col].to_list():
            key = index.get(ref_key(ref)) if ref else None
            if ref and key is None:
                missing.append(ref)
            values.append(str(row_id(out.tenant.id, target, key)) if key else None)
        part.rows = part.rows.with_columns(pl.Series(id_col, values, dtype=pl.Utf8))
        if missing:
            out.findings.append(
                f"{part.entity}.{ref_col}: {len(missing)} reference(s) name no {out.tenant.slug} "
                f"{target} row, e.g. {', '.join(repr(m) for m in sorted(set(missing))[:3])}"
            )
