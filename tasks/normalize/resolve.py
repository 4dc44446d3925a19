"""From all-tenant normalized entities to one tenant's rows: deterministic ids, the tenant's
quarantined and skipped counts, and junction rows with both ends resolved to target ids.

A reference finds its row through tasks/normalize/refs.py: exact identifiers (legacy key, code,
slug, legacy id) before names, and a name is folded (case, spaces, '-' and '_') only when no
identifier matched, so two distinct keys are never merged. The rules, per reference:

- A row that states a relation both as codes ('ROLE-001, ROLE-049') and as names ('Formulation
  Scientist') is resolved by its codes; its names only confirm them. A name that matches a row
  the other end's own code column rules out is not linked (reported as contradicted).
- A name that matches several rows links nothing and is reported with its candidates.
- A reference that names no row is reported, and kept on the row that made it
  (metadata._etl.unresolved, by source column); for the origins of rules/references.yaml a
  minimal row is created instead, whose id can never be the id of a source row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from core.catalogue import JUNCTIONS, REF_COLUMNS
from core.identity import created_row_id, row_id
from core.tenants import Tenant
from tasks.normalize.base import RESERVED, Normalized
from tasks.normalize.common import ref_key
from tasks.normalize.refs import Index
from tasks.normalize.spill import Spill, restore, set_aside
from tasks.normalize.spill import batches as spilled_batches

SAMPLE = 5


@dataclass
class EntitySlice:
    entity: str
    frame: pl.DataFrame  # this tenant's valid rows, with id and tenant_id; some columns in `spills`
    quarantined: pl.DataFrame  # rejects that belong to this tenant (or to no known tenant)
    read: int
    skipped: int
    created: int = 0  # rows made for references that named no row (rules/references.yaml)
    spills: tuple[Spill, ...] = ()

    @property
    def loaded(self) -> int:
        return self.frame.height

    @property
    def rows(self) -> pl.DataFrame:
        """The whole rows, columns kept on disk read back (tasks/normalize/spill.py): every row
        at once, so the steps of a run read `frame`, or `batches()` where they need the texts."""
        return restore(self.frame, *self.spills)

    @rows.setter
    def rows(self, frame: pl.DataFrame) -> None:
        self.frame, self.spills = frame, ()

    def batches(self, size: int) -> Iterator[pl.DataFrame]:
        """The whole rows, size at a time."""
        return spilled_batches(self.frame, self.spills, size)

    def set_aside(self, folder: str | Path, keep: tuple[str, ...]) -> None:
        """Every column but those keep names to part files under folder, read back by `rows`
        and `batches()`: once decided, the rows wait for their load outside memory."""
        self.frame, spill = set_aside(self.frame, folder, self.entity, keep)
        self.spills += (spill,) if spill is not None else ()


@dataclass
class TenantSlice:
    tenant: Tenant
    entities: dict[str, EntitySlice]
    junctions: dict[str, pl.DataFrame]
    link_report: dict[str, dict] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)


def _ids(tenant: Tenant, entity: str, keys: list[str]) -> list[str]:
    return [str(row_id(tenant.id, entity, k)) for k in keys]


class _Notes:
    """What each row's references left open, for its metadata._etl: unresolved references,
    ambiguous names (with their candidates) and names its codes contradict, by source column."""

    def __init__(self):
        self.by_row: dict[tuple[str, str], dict] = defaultdict(dict)

    def add(self, entity: str, key: str, what: str, column: str, ref: str, candidates: list | dict | None = None):
        notes = self.by_row[(entity, key)].setdefault(what, {})
        if candidates is None:
            listed = notes.setdefault(column, [])
            if ref not in listed:
                listed.append(ref)
        else:
            notes.setdefault(column, {})[ref] = candidates

    def apply(self, part: EntitySlice) -> None:
        if part.frame.height == 0 or not any(e == part.entity for e, _ in self.by_row):
            return
        metadata = []
        for key, text in zip(part.frame["legacy_key"].to_list(), part.frame["metadata"].to_list()):
            notes = self.by_row.get((part.entity, key))
            if notes:
                meta = json.loads(text or "{}")
                meta.setdefault(RESERVED, {}).update(notes)
                text = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)
            metadata.append(text)
        part.frame = part.frame.with_columns(pl.Series("metadata", metadata, dtype=pl.Utf8))


def slice_tenant(
    normalized: dict[str, Normalized], tenant: Tenant, create_missing: dict[str, tuple[str, ...]] | None = None
) -> TenantSlice:
    entities: dict[str, EntitySlice] = {}
    for entity, n in normalized.items():
        ours = n.frame["tenants"].list.contains(tenant.slug) if n.frame.height else None
        mine = n.frame if ours is None or ours.all() else n.frame.filter(ours)  # all ours: no copy
        mine = mine.with_columns(
            pl.Series("id", _ids(tenant, entity, mine["legacy_key"].to_list()), dtype=pl.Utf8),
            pl.lit(str(tenant.id)).alias("tenant_id"),
        )
        rejects = n.rejects.filter(pl.col("tenants").list.contains(tenant.slug) | (pl.col("tenants").list.len() == 0))
        skipped = n.read - mine.height - rejects.height
        spills = (n.spill,) if n.spill is not None else ()
        entities[entity] = EntitySlice(entity, mine, rejects, n.read, skipped, spills=spills)

    indexes = _Indexes(entities)
    out = TenantSlice(tenant, entities, {})
    notes = _Notes()
    stubs: dict[str, dict[str, tuple[str, str]]] = {}
    for entity, refs in REF_COLUMNS.items():
        if entity in entities:
            _resolve_ref_columns(out, entities[entity], refs, indexes, notes)
    for j in JUNCTIONS:
        frames = [n.links[j.name] for e, n in normalized.items() if e in entities and n.links.get(j.name) is not None]
        frames = [f for f in frames if f.height]
        if not frames:
            continue
        links = pl.concat(frames)
        mine = {
            side: entities[e].frame["legacy_key"].to_list() if e in entities else []
            for side, e in (("a", j.a), ("b", j.b))
        }
        links = links.filter(
            ((pl.col("owner_side") == "a") & pl.col("owner_key").is_in(mine["a"]))
            | ((pl.col("owner_side") == "b") & pl.col("owner_key").is_in(mine["b"]))
        )
        if links.height == 0:
            continue
        creatable = set((create_missing or {}).get(j.name, ())) if j.b in entities else set()
        made = stubs.setdefault(j.b, {})
        taken = set(normalized[j.b].frame["legacy_key"].to_list()) if creatable and j.b in normalized else set()
        _resolve_junction(out, j, links, indexes, notes, creatable, made, taken)
    for entity, made in stubs.items():
        if made:
            _add_stubs(entities[entity], tenant, made)
    for part in entities.values():
        notes.apply(part)
    return out


class _Indexes(dict):
    """Entity -> its reference Index, made the first time a reference needs it: a large table
    that nothing names (prompts) is never indexed (~2 kB a row). An entity outside the slice
    has an empty one, which rows created for references are added to."""

    def __init__(self, entities: dict[str, EntitySlice]):
        super().__init__()
        self._entities = entities

    def __missing__(self, entity: str) -> Index:
        index = self[entity] = Index(self._entities[entity].frame if entity in self._entities else pl.DataFrame())
        return index


def _resolve_junction(out, j, links: pl.DataFrame, indexes, notes: _Notes, creatable, made, taken) -> None:
    tenant = out.tenant
    index = {"a": indexes[j.a], "b": indexes[j.b]}
    entity = {"a": j.a, "b": j.b}
    refs = list(links.iter_rows(named=True))
    # 1. each row's own code column (the codes that name a row): it decides, and rules out names
    # that disagree with it
    coded: dict[tuple[str, str], set[str]] = defaultdict(set)  # (side, row key) -> rows its codes name
    for r in refs:
        if r["match"] == "code":
            other = "b" if r["owner_side"] == "a" else "a"
            found = index[other].lookup(r[f"{other}_ref"], "code")
            if len(found) == 1:
                coded[(r["owner_side"], r["owner_key"])].add(found[0])
    resolved, missing, ambiguous, contradicted, decided = [], [], [], [], []
    for r in refs:
        side, owner = r["owner_side"], r["owner_key"]
        other = "b" if side == "a" else "a"
        ref, column = r[f"{other}_ref"], r["column"]
        found = index[other].lookup(ref, r["match"])
        if r["match"] != "code" and found:
            mine = coded.get((side, owner))
            if mine:  # the row states this relation by code too: its codes decide, names confirm
                kept = [k for k in found if k in mine]
            else:  # a candidate whose own code column names other rows than the owner is ruled out
                kept = [k for k in found if not coded.get((other, k)) or owner in coded[(other, k)]]
            if not kept:
                contradicted.append((owner, ref, found))
                notes.add(entity[side], owner, "contradicted", column, ref, found)
                continue
            if len(found) > 1 and len(kept) == 1:  # a shared name, decided by a code column
                decided.append((owner, ref, found, kept[0]))
                notes.add(entity[side], owner, "decided_by_code", column, ref, {"candidates": found, "linked": kept[0]})
            found = kept
        if len(found) > 1:
            ambiguous.append((owner, ref, found))
            notes.add(entity[side], owner, "ambiguous", column, ref, found)
            continue
        if not found and other == "b" and r["kind"] in creatable and ref:
            folded = ref_key(ref)
            if folded not in made:
                made[folded] = (_stub_key(ref, taken, made), ref, f"{j.name}.{r['kind']}")
                index["b"].add(made[folded][0], ref)
            found = [made[folded][0]]
        if not found:
            missing.append(f"{ref!r} ({entity[other]})")
            notes.add(entity[side], owner, "unresolved", column, ref)
            continue
        a_key, b_key = (owner, found[0]) if side == "a" else (found[0], owner)
        resolved.append((a_key, b_key, r["kind"] if j.kind else None))
    frame = pl.DataFrame(resolved, schema={"a_key": pl.Utf8, "b_key": pl.Utf8, "kind": pl.Utf8}, orient="row").unique(
        maintain_order=True
    )
    stub_ids = {v[0]: str(created_row_id(tenant.id, j.b, ref_key(v[1]))) for v in made.values()}
    cols = {
        "tenant_id": [str(tenant.id)] * frame.height,
        j.a_col: _ids(tenant, j.a, frame["a_key"].to_list()),
        j.b_col: [stub_ids.get(k) or str(row_id(tenant.id, j.b, k)) for k in frame["b_key"].to_list()],
    }
    if j.kind:
        cols[j.kind] = frame["kind"].to_list()
    out.junctions[j.name] = pl.DataFrame(cols, schema={k: pl.Utf8 for k in cols})
    out.link_report[j.name] = {
        "references": links.height,
        "rows": frame.height,
        "unresolved": len(missing),
        "ambiguous": len(ambiguous),
        "contradicted": len(contradicted),
        "decided_by_code": len(decided),
        "examples": sorted(set(missing))[:SAMPLE],
    }
    if missing:
        out.findings.append(
            f"{j.name}: {len(missing)} of {links.height} references name no {tenant.slug} row, e.g. "
            f"{', '.join(sorted(set(missing))[:3])} (kept in each row's metadata._etl.unresolved)"
        )
    for owner, ref, found in sorted(ambiguous):
        out.findings.append(
            f"{j.name}: {ref!r} (named by {owner}) matches {len(found)} rows: {', '.join(found)}; linked none. "
            "Name the row by its code in the source, or decide the link in rules/overrides/"
        )
    for owner, ref, found in sorted(contradicted):
        out.findings.append(
            f"{j.name}: {owner} names {ref!r}, which is {', '.join(found)}, but the code columns do not link "
            f"{owner} and {', '.join(found)}; not linked (codes decide). Make the names and the codes agree "
            "in the source"
        )
    for owner, ref, found, chosen in sorted(decided):
        out.findings.append(
            f"{j.name}: {ref!r} (named by {owner}) matches {len(found)} rows ({', '.join(found)}); linked "
            f"{chosen}, the one the code columns link to {owner}"
        )


def _stub_key(ref: str, taken: set[str], made: dict) -> str:
    """The legacy key of a row created for `ref`: `ref:<name>`, unless a source row has that key
    (a real row always keeps its key); then `ref:<name>#created`, `#created2`, ..."""
    base = f"ref:{ref_key(ref).replace(' ', '-')}"
    used = taken | {v[0] for v in made.values()}
    key, n = base, 1
    while key in used:
        key, n = f"{base}#created{n if n > 1 else ''}", n + 1
    return key


def _add_stubs(part: EntitySlice, tenant: Tenant, made: dict[str, tuple[str, str, str]]) -> None:
    """Minimal rows for references that named no row (rules/references.yaml). Their ids come from
    core.identity.created_row_id, so no source row can have one; they go first, so a created row
    that gives up its key to a new source row (on a re-run) has done so before that row loads."""
    refs = list(made)
    keys = [made[r][0] for r in refs]
    frame = pl.DataFrame(
        {
            "legacy_key": keys,
            "name": [made[r][1] for r in refs],
            "metadata": [
                json.dumps({RESERVED: {"created_from": made[r][2], "reference": made[r][1]}}, ensure_ascii=False)
                for r in refs
            ],
            "tenants": [[tenant.slug]] * len(keys),
            "tenant_rule": ["created for a reference"] * len(keys),
            "_source": ["rules/references.yaml"] * len(keys),
            "_codes": [[k] for k in keys],
            "_aliases": [[r] for r in refs],
            "id": [str(created_row_id(tenant.id, part.entity, r)) for r in refs],
            "tenant_id": [str(tenant.id)] * len(keys),
        }
    )
    part.frame = pl.concat([frame, part.frame], how="diagonal_relaxed")
    part.created += len(keys)


def _resolve_ref_columns(out: TenantSlice, part: EntitySlice, refs: dict, indexes: dict, notes: _Notes) -> None:
    for ref_col, (target, id_col) in refs.items():
        if ref_col not in part.frame.columns:
            continue
        index = indexes[target]
        values, missing, ambiguous = [], [], []
        for key, ref in zip(part.frame["legacy_key"].to_list(), part.frame[ref_col].to_list()):
            found = index.lookup(ref) if ref else []
            if ref and not found:
                missing.append(ref)
                notes.add(part.entity, key, "unresolved", id_col, ref)
            elif len(found) > 1:
                ambiguous.append((key, ref, found))
                notes.add(part.entity, key, "ambiguous", id_col, ref, found)
            values.append(str(row_id(out.tenant.id, target, found[0])) if len(found) == 1 else None)
        part.frame = part.frame.with_columns(pl.Series(id_col, values, dtype=pl.Utf8))
        if missing:
            out.findings.append(
                f"{part.entity}.{ref_col}: {len(missing)} reference(s) name no {out.tenant.slug} "
                f"{target} row, e.g. {', '.join(repr(m) for m in sorted(set(missing))[:3])} "
                "(kept in each row's metadata._etl.unresolved)"
            )
        for key, ref, found in ambiguous:
            out.findings.append(
                f"{part.entity}.{ref_col}: {ref!r} (named by {key}) matches {len(found)} {target} rows: "
                f"{', '.join(found)}; linked none. Name the row by its key in the source"
            )
