"""Removing what the sources no longer have (migrate-tenant prune=True, or prune="soft").

A row is removed when all of these hold:
- the run covers every entity of the manifest (a subset run prunes nothing: the caller decides);
- it is the tenant's row in an entity table of this run, and its id is not among the ids this
  run read from the sources (its valid rows, and the ids of its quarantined rows: a row that
  is still in the sources but failed validation stays);
- an earlier run of vital-etl derived it (etl.id_map has it for this tenant and entity):
  never delete what the tool did not create.

Its junction rows and, for a document, its chunks go with it: the foreign keys of
schema/0005 and 0006 cascade (ON DELETE CASCADE), so a hard prune deletes the entity rows only
and counts what cascades first. A soft prune sets `deleted_at` on the rows, their junction rows
and chunks (schema/0014: Row Level Security hides them; the owner keeps them); the loader
sets it back to NULL when a row is in the sources again.

The guard (check_guard) runs before anything is written: a prune that would remove more than
max_delete_ratio of an entity's rows (rules/prune.yaml, default 0.1) is refused with the entity,
the count, the total and the override, the "export came back empty" accident."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import sql

from core.catalogue import ENTITY_NAMES, JUNCTIONS
from core.catalogue import entity as entity_of
from core.connections import connect, target_dsn
from core.errors import ConfigError, PruneRefused
from core.identity import row_id
from core.retry import IO_RETRIES
from core.settings import RULES_DIR
from core.yamlfile import read_yaml

RULES_FILE = "prune.yaml"


def load_max_delete_ratio(path: Path | str | None = None) -> float:
    """rules/prune.yaml max_delete_ratio: a share in 0..1."""
    path = Path(path) if path else RULES_DIR / RULES_FILE
    data = read_yaml(path, "prune rules") or {}
    ratio = data.get("max_delete_ratio") if isinstance(data, dict) else None
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise ConfigError(f"{path}: max_delete_ratio must be a number from 0 to 1 (e.g. 0.1), got {ratio!r}")
    return float(ratio)


def max_ratio_or_rule(max_ratio: float | None) -> float:
    """The run's max_delete_ratio: the parameter when given, else rules/prune.yaml."""
    if max_ratio is None:
        return load_max_delete_ratio()
    if isinstance(max_ratio, bool) or not 0 <= max_ratio <= 1:
        raise ConfigError(f"max_delete_ratio must be a number from 0 to 1 (e.g. 0.1), got {max_ratio!r}")
    return float(max_ratio)


def source_ids(part) -> dict[str, list[str]]:
    """entity -> the ids this run read from the sources for the tenant (a TenantSlice): its
    valid rows and its quarantined rows (by their deterministic id)."""
    out = {}
    for entity, s in part.entities.items():
        ids = [str(i) for i in s.frame["id"].to_list()] if s.frame.height else []
        if s.quarantined.height and "legacy_key" in s.quarantined.columns:
            ids += [str(row_id(part.tenant.id, entity, k)) for k in s.quarantined["legacy_key"].to_list() if k]
        out[entity] = ids
    return out


@dataclass(frozen=True)
class Absent:
    """A row of the tenant that this run's sources do not have."""

    id: str
    legacy_key: str
    derived: bool  # etl.id_map has it: an earlier run of vital-etl made it
    hidden: bool  # an earlier soft prune set its deleted_at


def absent_rows(conn: psycopg.Connection, tenant_slug: str, tenant_id: str, table: str, ids: list[str]) -> list[Absent]:
    """The tenant's rows in `table` whose id is not in `ids`, by legacy key."""
    rows = conn.execute(
        sql.SQL(
            """SELECT t.id::text, t.legacy_key,
                      EXISTS (SELECT 1 FROM etl.id_map m WHERE m.id = t.id AND m.tenant_slug = %s AND m.entity = %s),
                      t.deleted_at IS NOT NULL
               FROM {} t WHERE t.tenant_id = %s AND NOT (t.id = ANY(%s::uuid[])) ORDER BY t.legacy_key, t.id"""
        ).format(sql.Identifier(table)),
        (tenant_slug, table, tenant_id, ids),
    ).fetchall()
    return [Absent(*r) for r in rows]


def deletions(
    conn: psycopg.Connection,
    tenant_slug: str,
    tenant_id: str,
    ids_by_entity: dict[str, list[str]],
    *,
    soft: bool = False,
) -> dict[str, list[str]]:
    """entity -> ids of the rows a prune removes: not in the sources, derived by vital-etl. A
    soft prune leaves rows an earlier soft prune hid; a hard prune removes those too."""
    out = {}
    for entity in _entities(ids_by_entity):
        rows = absent_rows(conn, tenant_slug, tenant_id, entity, ids_by_entity[entity])
        out[entity] = [r.id for r in rows if r.derived and not (soft and r.hidden)]
    return out


def totals(conn: psycopg.Connection, tenant_id: str, entities, *, soft: bool = False) -> dict[str, int]:
    """entity -> the tenant's rows the guard measures a prune against: the visible ones for a
    soft prune, all of them (hidden included) for a hard one."""
    where = sql.SQL(" AND deleted_at IS NULL") if soft else sql.SQL("")
    return {
        e: conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s{}").format(sql.Identifier(e), where), (tenant_id,)
        ).fetchone()[0]
        for e in _entities(entities)
    }


def guard_problem(
    deletions: dict[str, list[str]], totals: dict[str, int], max_ratio: float, tenant: str = ""
) -> PruneRefused | None:
    """The refusal a prune of `deletions` earns (None: within max_ratio)."""
    over = {
        e: (len(ids), totals.get(e, 0))
        for e, ids in deletions.items()
        if ids and len(ids) > max_ratio * totals.get(e, 0)
    }
    if not over:
        return None
    needed = max(n / total for n, total in over.values() if total) if any(t for _, t in over.values()) else 1.0
    needed = min(1.0, math.ceil(needed * 100) / 100)
    lines = ", ".join(f"{e} {n} of {total} rows ({n / total:.0%})" for e, (n, total) in over.items() if total)
    who = f" of {tenant}" if tenant else ""
    return PruneRefused(
        f"prune refused: the run would remove {lines}{who}, more than max_delete_ratio {max_ratio:g} allows "
        f"(rules/prune.yaml). Nothing was written. If the sources really no longer have these rows, run again "
        f"with max_delete_ratio={needed:g} (vital-etl migrate --max-delete-ratio {needed:g}); otherwise check "
        f"the sources of {', '.join(over)} (an empty or truncated export?)",
        over=over,
        max_ratio=max_ratio,
    )


def check_guard(deletions: dict[str, list[str]], totals: dict[str, int], max_ratio: float, tenant: str = "") -> None:
    """Raise PruneRefused when an entity would lose more than max_ratio of its rows."""
    problem = guard_problem(deletions, totals, max_ratio, tenant)
    if problem is not None:
        raise problem


def _entities(names) -> list[str]:
    """Entity tables among `names`, in reverse load order (referencing rows before referenced)."""
    return [e for e in reversed(ENTITY_NAMES) if e in names]


def _ends(entity: str):
    """(junction, end column) of every junction end that references `entity`."""
    for j in JUNCTIONS:
        for end, col in ((j.a, j.a_col), (j.b, j.b_col)):
            if end == entity:
                yield j.name, col


def _linked(conn: psycopg.Connection, tenant_id: str, deletions: dict[str, list[str]], *, soft: bool) -> dict:
    """junction -> how many of the tenant's rows reference a row of `deletions` (a junction row
    with both ends removed counts once)."""
    hidden = sql.SQL(" AND deleted_at IS NULL") if soft else sql.SQL("")
    out = {}
    for j in JUNCTIONS:
        a_ids, b_ids = deletions.get(j.a) or [], deletions.get(j.b) or []
        if not a_ids and not b_ids:
            continue
        out[j.name] = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {} WHERE tenant_id = %s AND ({} = ANY(%s::uuid[]) OR {} = ANY(%s::uuid[])){}"
            ).format(sql.Identifier(j.name), sql.Identifier(j.a_col), sql.Identifier(j.b_col), hidden),
            (tenant_id, a_ids, b_ids),
        ).fetchone()[0]
    return out


def prune_rows(
    conn: psycopg.Connection, tenant_id: str, deletions: dict[str, list[str]], soft: bool = False
) -> dict[str, int]:
    """Remove (soft: hide) the rows of `deletions` with their junction rows and chunks, in one
    transaction; returns rows removed (hidden) per table, junctions and chunks included."""
    removed: dict[str, int] = {}
    with conn.transaction():
        if soft:
            _hide(conn, tenant_id, deletions, removed)
        else:
            removed.update({j: n for j, n in _linked(conn, tenant_id, deletions, soft=False).items() if n})
            for entity in _entities(deletions):
                ids = deletions[entity]
                if not ids:
                    continue
                for derived in entity_of(entity).derived:  # chunks: ON DELETE CASCADE from the document
                    removed[derived] = removed.get(derived, 0) + _count_derived(conn, derived, tenant_id, ids)
                removed[entity] = conn.execute(
                    sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = ANY(%s::uuid[])").format(
                        sql.Identifier(entity)
                    ),
                    (tenant_id, ids),
                ).rowcount
    return {t: n for t, n in removed.items() if n}


# the column of a derived table that names the row it was derived from
DERIVED_FROM = {"knowledge_chunks": "document_id"}


def _count_derived(conn: psycopg.Connection, table: str, tenant_id: str, ids: list[str]) -> int:
    return conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s AND {} = ANY(%s::uuid[])").format(
            sql.Identifier(table), sql.Identifier(DERIVED_FROM[table])
        ),
        (tenant_id, ids),
    ).fetchone()[0]


def _hide(conn: psycopg.Connection, tenant_id: str, deletions: dict[str, list[str]], removed: dict[str, int]) -> None:
    """deleted_at = now() on the rows, then on their chunks and junction rows (those not hidden yet)."""
    for j in JUNCTIONS:
        a_ids, b_ids = deletions.get(j.a) or [], deletions.get(j.b) or []
        if a_ids or b_ids:
            removed[j.name] = conn.execute(
                sql.SQL(
                    "UPDATE {} SET deleted_at = now() WHERE tenant_id = %s AND deleted_at IS NULL "
                    "AND ({} = ANY(%s::uuid[]) OR {} = ANY(%s::uuid[]))"
                ).format(sql.Identifier(j.name), sql.Identifier(j.a_col), sql.Identifier(j.b_col)),
                (tenant_id, a_ids, b_ids),
            ).rowcount
    for entity in _entities(deletions):
        ids = deletions[entity]
        if not ids:
            continue
        for derived in entity_of(entity).derived:
            removed[derived] = (
                removed.get(derived, 0)
                + conn.execute(
                    sql.SQL(
                        "UPDATE {} SET deleted_at = now(), updated_at = now() WHERE tenant_id = %s "
                        "AND deleted_at IS NULL AND {} = ANY(%s::uuid[])"
                    ).format(sql.Identifier(derived), sql.Identifier(DERIVED_FROM[derived])),
                    (tenant_id, ids),
                ).rowcount
            )
        removed[entity] = conn.execute(
            sql.SQL(
                "UPDATE {} SET deleted_at = now(), updated_at = now() WHERE tenant_id = %s "
                "AND deleted_at IS NULL AND id = ANY(%s::uuid[])"
            ).format(sql.Identifier(entity)),
            (tenant_id, ids),
        ).rowcount


def planned_deletions(
    conn: psycopg.Connection,
    tenant_slug: str,
    tenant_id: str,
    ids_by_entity: dict[str, list[str]],
    soft: bool,
    max_ratio: float | None = None,
) -> dict[str, list[str]]:
    """deletions() checked by the guard (raises PruneRefused); writes nothing."""
    gone = deletions(conn, tenant_slug, tenant_id, ids_by_entity, soft=soft)
    check_guard(gone, totals(conn, tenant_id, gone, soft=soft), max_ratio_or_rule(max_ratio), tenant_slug)
    return gone


@task(name="guard-prune", task_run_name="guard-prune-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def guard_prune(
    tenant: str, tenant_id: str, ids_by_entity: dict[str, list[str]], soft: bool, max_ratio: float | None = None
) -> dict[str, list[str]]:
    """Before anything is written: what the prune will remove, or PruneRefused (the run stops)."""
    with connect(target_dsn(), autocommit=True) as conn:
        conn.read_only = True
        with conn.transaction():
            return planned_deletions(conn, tenant, tenant_id, ids_by_entity, soft, max_ratio)


@task(name="prune-rows", task_run_name="prune-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def prune_tenant_rows(tenant: str, tenant_id: str, deletions: dict[str, list[str]], soft: bool) -> dict[str, int]:
    """After the load: remove (or hide) what guard_prune found; returns rows per table."""
    with connect(target_dsn(), autocommit=True) as conn:
        return prune_rows(conn, tenant_id, deletions, soft)
