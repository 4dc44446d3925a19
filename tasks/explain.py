"""`vital-etl explain`: where one row of the target came from and what shaped it.

Everything comes from what a migration recorded, read in one read-only transaction: the row
itself (its columns, metadata `_etl` provenance, the raw spellings kept as `legacy_<field>`,
the functional-area evidence), etl.id_map (first loaded), etl.runs, etl.quarantine,
etl.decisions, the junction rows that touch it, and the tenant's reviewers' overrides
(rules/overrides/<tenant>.csv). Nothing is recomputed from the sources.

    fetch_records(conn, tenant, ...)  -> Records   the I/O: a handful of SELECTs
    explain(records, enums)           -> dict      pure: the explanation (JSON-ready)
    render_text(explanation)          -> str       the sections a person reads

What is not recorded anywhere is said so in the explanation's `not_recorded`, never guessed:
a run is named "running at that time" when only a timestamp ties it to the row.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from core.catalogue import CATALOGUE_TABLES, JUNCTIONS, REF_COLUMNS
from core.connections import connect, mask_dsn
from core.errors import ConfigError, VitalError
from core.identity import tenant_id as tenant_uuid
from tasks.normalize.base import RESERVED
from tasks.normalize.rules import EnumMap, enum_key

# a derived table's column that names the row it was derived from (knowledge_chunks.document_id)
DERIVED_FROM: dict[str, tuple[str, str]] = {"knowledge_chunks": ("knowledge_documents", "document_id")}
# _etl keys shown in their own sections; the rest are listed under "other"
SHOWN_ETL = ("source", "source_row", "tenant_rule", "created_from", "reference")
TEXT_LINKS = 20  # links listed per junction in the text output (--json lists all)
TEXT_VALUE = 100  # characters of a quarantined payload value in the text output


class RowNotFound(VitalError):
    """Neither the target nor etl.* knows the row asked for."""


@dataclass
class Records:
    """What the target holds about one row (the input of `explain`)."""

    target: str  # the target's DSN, password masked
    tenant: str
    entity: str
    key: str | None  # legacy key
    row: dict | None = None  # the catalogue row without its vector; None: never loaded
    has_embedding: bool = False
    enum_columns: dict[str, str] = field(default_factory=dict)  # column -> rules/enums.yaml name
    id_map: dict | None = None
    runs: list[dict] = field(default_factory=list)  # the tenant's etl.runs
    quarantine: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)
    links: list[dict] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)
    derived: dict[str, int] = field(default_factory=dict)  # derived table -> rows made from this one
    parent: dict | None = None  # a derived row's origin row: entity, legacy_key, metadata
    overrides: list[dict] = field(default_factory=list)
    overrides_file: str = ""


# ---------------------------------------------------------------------------------------------
# reading (read-only)


def _sides(entity: str) -> list[tuple]:
    """(junction, my column, other entity, other column) for every junction end that is `entity`."""
    out = []
    for j in JUNCTIONS:
        if j.a == entity:
            out.append((j, j.a_col, j.b, j.b_col))
        if j.b == entity:
            out.append((j, j.b_col, j.a, j.a_col))
    return out


def _columns(conn: psycopg.Connection, table: str) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s",
            (table,),
        )
    }


def _enum_columns(conn: psycopg.Connection, table: str, enums: dict[str, EnumMap]) -> dict[str, str]:
    """Columns of an enum type -> the rules/enums.yaml section of that type (`agent_status`,
    `complexity_type` -> `complexity`)."""
    rows = conn.execute(
        """SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
           WHERE a.attrelid = to_regclass(%s) AND t.typtype = 'e' AND a.attnum > 0 AND NOT a.attisdropped""",
        (table,),
    ).fetchall()
    out = {}
    for column, typname in rows:
        name = typname.removesuffix("_type") if typname.removesuffix("_type") in enums else typname
        out[column] = name
    return out


def _find_by_id(conn: psycopg.Connection, tenant: str, tenant_id: str, row_id: str) -> tuple[str, str]:
    found = conn.execute(
        "SELECT entity, legacy_key FROM etl.id_map WHERE tenant_slug = %s AND id = %s", (tenant, row_id)
    ).fetchone()
    if found:
        return found[0], found[1]
    for table in CATALOGUE_TABLES:
        hit = conn.execute(
            sql.SQL("SELECT legacy_key FROM {} WHERE tenant_id = %s AND id = %s").format(sql.Identifier(table)),
            (tenant_id, row_id),
        ).fetchone()
        if hit:
            return table, hit[0]
    other = conn.execute(
        "SELECT tenant_slug, entity FROM etl.id_map WHERE id = %s ORDER BY tenant_slug LIMIT 1", (row_id,)
    ).fetchone()
    if other:
        raise RowNotFound(
            f"id {row_id} is a row of {other[1]} in tenant {other[0]!r}, not of {tenant!r}; pass --tenant {other[0]}"
        )
    raise RowNotFound(
        f"no row with id {row_id} in tenant {tenant!r}: no catalogue table and no etl.id_map entry has it"
    )


def fetch_records(
    conn: psycopg.Connection,
    tenant: str,
    *,
    row_id: str | None = None,
    entity: str | None = None,
    key: str | None = None,
    enums: dict[str, EnumMap] | None = None,
    target: str = "",
) -> Records:
    """Read what the target holds about one row: by id, or by entity and legacy key. Run it
    inside a read-only transaction (`explain_row` does)."""
    enums = enums or {}
    found = conn.execute("SELECT id FROM tenants WHERE slug = %s", (tenant,)).fetchone()
    if found is None:
        known = [r[0] for r in conn.execute("SELECT slug FROM tenants ORDER BY slug")]
        raise ConfigError(
            f"tenant {tenant!r} is not in the target (its tenants: {', '.join(known) or 'none'}); "
            "pass one of them with --tenant"
        )
    tenant_id = str(found[0])
    if row_id is not None:
        entity, key = _find_by_id(conn, tenant, tenant_id, row_id)
    if entity not in CATALOGUE_TABLES:
        raise ConfigError(f"unknown entity {entity!r}; one of: {', '.join(CATALOGUE_TABLES)}")
    rec = Records(target=target, tenant=tenant, entity=entity, key=key)
    table = sql.Identifier(entity)
    hit = conn.execute(
        sql.SQL("SELECT to_jsonb(t) FROM {} t WHERE tenant_id = %s AND legacy_key = %s").format(table),
        (tenant_id, key),
    ).fetchone()
    if hit:
        rec.row = hit[0]
        rec.has_embedding = rec.row.pop("embedding", None) is not None
        rec.enum_columns = _enum_columns(conn, entity, enums)
    dicts = conn.cursor(row_factory=dict_row)
    rec.id_map = dicts.execute(
        "SELECT id, first_seen_at FROM etl.id_map WHERE tenant_slug = %s AND entity = %s AND legacy_key = %s",
        (tenant, entity, key),
    ).fetchone()
    rec.runs = dicts.execute(
        "SELECT id, flow, status, started_at, finished_at FROM etl.runs WHERE tenant_slug = %s ORDER BY started_at",
        (tenant,),
    ).fetchall()
    this_id = str(rec.row["id"]) if rec.row else (str(rec.id_map["id"]) if rec.id_map else None)
    sides = _sides(entity)
    junction_rows = [
        sql.SQL("(q.entity = {} AND q.payload ->> {} = %(id)s)").format(sql.Literal(j.name), sql.Literal(mine))
        for j, mine, _, _ in sides
        if this_id
    ]
    rec.quarantine = dicts.execute(
        sql.SQL(
            """SELECT q.run_id, q.entity, q.legacy_key, q.reason, q.payload, q.created_at, r.status AS run_status,
                      q.source, q.source_row
               FROM etl.quarantine q LEFT JOIN etl.runs r ON r.id = q.run_id
               WHERE q.tenant_slug = %(tenant)s AND ((q.entity = %(entity)s AND q.legacy_key = %(key)s) {more})
               ORDER BY q.created_at, q.id"""
        ).format(more=sql.SQL("").join(sql.SQL(" OR ") + c for c in junction_rows)),
        {"tenant": tenant, "entity": entity, "key": key, "id": this_id},
    ).fetchall()
    rec.decisions = dicts.execute(
        """SELECT kind, entity, legacy_key, target_key, name, value, source::text AS source, confidence, margin,
                  evidence, reviewed, run_id, decided_at
           FROM etl.decisions WHERE tenant_slug = %s AND ((entity = %s AND legacy_key = %s)
             OR (entity = ANY(%s) AND legacy_key = %s) OR (entity = ANY(%s) AND target_key = %s))
           ORDER BY kind, entity, legacy_key, target_key""",
        (
            tenant,
            entity,
            key,
            [j.name for j in JUNCTIONS if j.a == entity],
            key,
            [j.name for j in JUNCTIONS if j.b == entity],
            key,
        ),
    ).fetchall()
    if rec.row:
        rec.links = _links(conn, tenant_id, this_id, sides)
        rec.references = _references(conn, tenant_id, entity, rec.row)
        rec.derived = {
            child: conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s AND {} = %s").format(
                    sql.Identifier(child), sql.Identifier(column)
                ),
                (tenant_id, this_id),
            ).fetchone()[0]
            for child, (origin, column) in DERIVED_FROM.items()
            if origin == entity
        }
        if entity in DERIVED_FROM:
            origin, column = DERIVED_FROM[entity]
            parent = dicts.execute(
                sql.SQL("SELECT legacy_key, metadata FROM {} WHERE tenant_id = %s AND id = %s").format(
                    sql.Identifier(origin)
                ),
                (tenant_id, rec.row.get(column)),
            ).fetchone()
            rec.parent = {"entity": origin, **parent} if parent else None
    return rec


def _name_sql(columns: set[str]) -> sql.Composable:
    names = [sql.SQL("o.{}").format(sql.Identifier(c)) for c in ("display_name", "name", "title") if c in columns]
    return sql.SQL("coalesce({})").format(sql.SQL(", ").join(names)) if names else sql.SQL("NULL")


def _links(conn: psycopg.Connection, tenant_id: str, row_id: str, sides: list[tuple]) -> list[dict]:
    out = []
    columns: dict[str, set[str]] = {}
    for j, mine, other, other_col in sides:
        cols = columns.setdefault(other, _columns(conn, other))
        rows = conn.execute(
            sql.SQL(
                """SELECT to_jsonb(j), o.legacy_key, {name} FROM {junction} j
                   LEFT JOIN {other} o ON o.tenant_id = j.tenant_id AND o.id = j.{other_col}
                   WHERE j.tenant_id = %s AND j.{mine} = %s ORDER BY o.legacy_key"""
            ).format(
                name=_name_sql(cols),
                junction=sql.Identifier(j.name),
                other=sql.Identifier(other),
                other_col=sql.Identifier(other_col),
                mine=sql.Identifier(mine),
            ),
            (tenant_id, row_id),
        ).fetchall()
        for link, other_key, other_name in rows:
            out.append(
                {
                    "junction": j.name,
                    "column": mine,
                    "other_entity": other,
                    "other_column": other_col,
                    "other_key": other_key,
                    "other_name": other_name,
                    "kind": link.get(j.kind) if j.kind else None,
                    "row": link,
                }
            )
    return out


def _references(conn: psycopg.Connection, tenant_id: str, entity: str, row: dict) -> list[dict]:
    """Rows this one names through a reference column (a domain's parent, a document's domain,
    a chunk's document)."""
    refs = [(target, column) for target, column in REF_COLUMNS.get(entity, {}).values()]
    if entity in DERIVED_FROM:
        refs.append(DERIVED_FROM[entity])
    out = []
    for target, column in refs:
        value = row.get(column)
        if value is None:
            continue
        name = _name_sql(_columns(conn, target))
        hit = conn.execute(
            sql.SQL("SELECT o.legacy_key, {} FROM {} o WHERE o.tenant_id = %s AND o.id = %s").format(
                name, sql.Identifier(target)
            ),
            (tenant_id, value),
        ).fetchone()
        out.append(
            {
                "column": column,
                "entity": target,
                "id": value,
                "key": hit[0] if hit else None,
                "name": hit[1] if hit else None,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# the explanation (pure)


def _etl(metadata: dict | None) -> dict:
    value = (metadata or {}).get(RESERVED)
    return value if isinstance(value, dict) else {}


def _json_obj(value) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _time(value) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def runs_at(runs: list[dict], at: datetime | None) -> list[dict]:
    """The runs that were going on at `at` (started before, not finished before)."""
    if at is None:
        return []
    return [
        _run(r)
        for r in runs
        if _time(r["started_at"]) <= at and (r.get("finished_at") is None or at <= _time(r["finished_at"]))
    ]


def _run(r: dict) -> dict:
    return {
        "id": str(r["id"]),
        "flow": r.get("flow"),
        "status": r.get("status"),
        "started_at": _iso(r.get("started_at")),
        "finished_at": _iso(r.get("finished_at")),
    }


def _iso(value) -> str | None:
    t = _time(value)
    return t.isoformat() if t else (None if value is None else str(value))


def describe_enum(enum: EnumMap, raw: str, value: str) -> str:
    """How rules/enums.yaml maps `raw` today, said against the value the row holds."""
    now = enum.map(raw)
    where = f"{enum.source} {enum.name}"
    if now is None:
        return f"{where}: no mapping for it today (the row holds {value!r})"
    if now != value:
        return f"{where}: maps it to {now!r} today, but the row holds {value!r} (decided otherwise: see the area)"
    if raw == value:
        return f"{where}: the label itself"
    if enum_key(raw) == enum_key(value):
        return f"{where}: the label {value!r}, spelled differently (case, '_', '-' and spaces are ignored)"
    return f"{where}.synonyms: {value!r} lists {enum_key(raw)!r}"


def enum_mappings(
    row: dict, enum_columns: dict[str, str], enums: dict[str, EnumMap], area_evidence: dict | None = None
) -> list[dict]:
    """Each mapped column with the raw spelling the source had (metadata `legacy_<field>`) and
    the rule that maps it. The field a raw value came from is tied to its column by name, by the
    area evidence (`explicit[].column`), or, failing both, by the enum rule mapping the raw value
    to the column's value. An enum column with a value but no raw spelling kept is listed too."""
    metadata = row.get("metadata") or {}
    kept = {k.removeprefix("legacy_"): v for k, v in metadata.items() if k.startswith("legacy_") and isinstance(v, str)}
    explicit = {
        e.get("column"): e
        for e in (area_evidence or {}).get("explicit") or []
        if isinstance(e, dict) and e.get("column")
    }
    out, mapped = [], set()
    for source_field, raw in sorted(kept.items()):
        column, matched = None, None
        if source_field in enum_columns:
            column, matched = source_field, "field name"
        elif source_field in explicit and "functional_area" in enum_columns:
            column, matched = "functional_area", "area evidence"
        else:
            for c, name in sorted(enum_columns.items()):
                if c not in mapped and name in enums and row.get(c) is not None and enums[name].map(raw) == row.get(c):
                    column, matched = c, "value"
                    break
        if column is None:
            if source_field in row and source_field not in ("metadata", "id", "legacy_key"):
                out.append(
                    {
                        "column": source_field,
                        "field": source_field,
                        "raw": raw,
                        "value": row.get(source_field),
                        "enum": None,
                        "rule": "the raw spelling is kept beside the column's normalized value",
                        "matched_by": "field name",
                    }
                )
            continue
        mapped.add(column)
        name = enum_columns[column]
        value = row.get(column)
        out.append(
            {
                "column": column,
                "field": source_field,
                "raw": raw,
                "value": value,
                "enum": name,
                "rule": describe_enum(enums[name], raw, value) if name in enums and value is not None else None,
                "matched_by": matched,
            }
        )
    for column, name in sorted(enum_columns.items()):
        if column in mapped or name not in enums or row.get(column) is None or column == "functional_area":
            continue  # functional_area without a raw value: the area section says how it was decided
        out.append(
            {
                "column": column,
                "field": None,
                "raw": None,
                "value": row.get(column),
                "enum": name,
                "rule": "no raw spelling kept: the source had no value (the column default applies)",
                "matched_by": None,
            }
        )
    return out


def _decision(d: dict) -> dict:
    return {
        "kind": d["kind"],
        "entity": d["entity"],
        "key": d["legacy_key"],
        "target_key": d["target_key"],
        "value": d["value"],
        "source": d["source"],
        "confidence": None if d["confidence"] is None else round(float(d["confidence"]), 3),
        "margin": None if d.get("margin") is None else round(float(d["margin"]), 3),
        "evidence": _json_obj(d.get("evidence")),
        "reviewed": bool(d.get("reviewed")),
        "run_id": None if d.get("run_id") is None else str(d["run_id"]),
        "decided_at": _iso(d.get("decided_at")),
    }


def _quarantine(rows: list[dict]) -> list[dict]:
    """One entry per distinct (entity, key, reason), with every run that quarantined it."""
    groups: dict[tuple, dict] = {}
    for q in rows:
        k = (q["entity"], q["legacy_key"], q["reason"])
        g = groups.setdefault(
            k, {"entity": q["entity"], "key": q["legacy_key"], "reason": q["reason"], "runs": [], "payload": None}
        )
        if q.get("source") is not None or q.get("source_row") is not None:
            g["source"], g["row"] = q.get("source"), q.get("source_row")
        g["runs"].append(
            {
                "run_id": None if q.get("run_id") is None else str(q["run_id"]),
                "at": _iso(q.get("created_at")),
                "run_status": q.get("run_status"),
            }
        )
        g["payload"] = _json_obj(q.get("payload"))  # the latest run's
    return list(groups.values())


def _link(link: dict) -> dict:
    row = link["row"]
    meta = _json_obj(row.get("metadata"))
    rest = {k: v for k, v in meta.items() if k not in ("derived_from", "source", "confidence", "evidence")}
    return {
        "junction": link["junction"],
        "column": link["column"],
        "other_entity": link["other_entity"],
        "other_column": link["other_column"],
        "other_id": row.get(link["other_column"]),
        "other_key": link["other_key"],
        "other_name": link["other_name"],
        "kind": link.get("kind"),
        "mapping_source": row.get("mapping_source"),
        "relevance_score": row.get("relevance_score"),
        "derived_from": meta.get("derived_from"),
        "decided_by": meta.get("source"),
        "confidence": meta.get("confidence"),
        "evidence": meta.get("evidence"),
        "metadata": rest,
        "created_at": row.get("created_at"),
        "deleted_at": row.get("deleted_at"),
    }


def explain(rec: Records, enums: dict[str, EnumMap]) -> dict:
    """The explanation of one row, from the records alone."""
    row = rec.row
    metadata = (row or {}).get("metadata") or {}
    etl = _etl(metadata)
    decisions = [_decision(d) for d in rec.decisions]
    quarantine = _quarantine(rec.quarantine)
    not_recorded: list[str] = []

    sources = []
    if etl.get("created_from"):
        sources.append(
            {"source": etl.get("source"), "created_from": etl["created_from"], "reference": etl.get("reference")}
        )
    elif etl.get("source") is not None or etl.get("source_row") is not None:
        sources.append({"source": etl.get("source"), "row": etl.get("source_row")})
    if rec.parent:
        parent_etl = _etl(rec.parent.get("metadata"))
        sources.append(
            {
                "derived_from": rec.parent["entity"],
                "key": rec.parent["legacy_key"],
                "source": parent_etl.get("source"),
                "row": parent_etl.get("source_row"),
            }
        )
    if row is None and quarantine:
        sources += [{"source": q["source"], "row": q.get("row")} for q in quarantine if q.get("source")][:1]
        if not sources:
            not_recorded.append(
                "the source file and row number of this quarantined row (quarantined before etl.quarantine kept them)"
            )
    elif row is not None and not sources:
        not_recorded.append("the source of this row: its metadata has no _etl.source (loaded before provenance)")

    area = None
    if row is not None and "functional_area" in row:
        area = {
            "value": row.get("functional_area"),
            "source": row.get("functional_area_source"),
            "confidence": row.get("functional_area_confidence"),
            "evidence": _json_obj(row.get("functional_area_evidence")),
            "rule": row.get("functional_area_rule") or etl.get("functional_area_rule"),
        }
    enums_used = enum_mappings(row, rec.enum_columns, enums, area and area["evidence"]) if row else []
    if enums_used:
        not_recorded.append(
            "the rule that mapped each raw spelling at load time: the rules shown are rules/enums.yaml as it is now"
        )

    tenant_decision = next(
        (d for d in decisions if d["kind"] == "tenant" and d["entity"] == rec.entity and d["key"] == rec.key), None
    )
    tenant_rule = etl.get("tenant_rule")
    if tenant_rule is None and rec.parent:
        origin_rule = _etl(rec.parent.get("metadata")).get("tenant_rule")
        tenant_rule = f"follows its {rec.parent['entity']} row {rec.parent['legacy_key']!r} (there: {origin_rule})"
    tenant = {
        "rule": tenant_rule,
        "label_file": metadata.get("label_file"),
        "decision": tenant_decision,
    }

    runs: dict = {}
    first_at = _time(rec.id_map["first_seen_at"]) if rec.id_map else None
    if rec.id_map:
        runs["first_loaded"] = {"at": _iso(first_at), "runs": runs_at(rec.runs, first_at)}
    if row is not None:
        changed = _time(row.get("updated_at"))
        runs["created_at"] = _iso(row.get("created_at"))
        runs["last_changed"] = {"at": _iso(changed), "runs": runs_at(rec.runs, changed)}
        if not runs["last_changed"]["runs"]:
            not_recorded.append(
                "which run last changed the row: no recorded run was running at its updated_at "
                "(backfill-embeddings records no etl.runs row)"
            )
    if rec.id_map or row is not None:
        not_recorded.append(
            "the run that first loaded / last changed the row: etl.id_map and updated_at hold times only; "
            "the run(s) shown were running at that time"
        )
    decided_by = {d["run_id"] for d in decisions if d["run_id"]}
    quarantined_by = {r["run_id"] for q in quarantine for r in q["runs"] if r["run_id"]}
    runs["decided_by"] = [_run(r) for r in rec.runs if str(r["id"]) in decided_by]
    runs["quarantined_by"] = [_run(r) for r in rec.runs if str(r["id"]) in quarantined_by]

    other = {k: v for k, v in etl.items() if k not in SHOWN_ETL}
    loaded = row is not None
    status = "loaded" if loaded else ("quarantined" if quarantine else "not loaded")
    if loaded and row.get("deleted_at"):
        status = f"hidden since {row['deleted_at']} (soft-deleted: the sources no longer had it)"
    if loaded and any(q["entity"] == rec.entity for q in quarantine):
        status += " (etl.quarantine also has rows with this key: see Quarantine)"
    return {
        "target": rec.target,
        "tenant": rec.tenant,
        "entity": rec.entity,
        "key": rec.key,
        "id": (row or {}).get("id") or (str(rec.id_map["id"]) if rec.id_map else None),
        "name": (row or {}).get("display_name") or (row or {}).get("name") or (row or {}).get("title"),
        "status": status,
        "sources": sources,
        "enums": enums_used,
        "area": area,
        "tenant_rule": tenant,
        "overrides": {"file": rec.overrides_file, "rows": rec.overrides},
        "decisions": decisions,
        "runs": runs,
        "quarantine": quarantine,
        "links": [_link(x) for x in rec.links],
        "references": rec.references,
        "derived": rec.derived,
        "other_etl": other,
        "embedding": (
            {
                "present": rec.has_embedding,
                "model": row.get("embedding_model"),
                "content_sha256": row.get("content_sha256"),
            }
            if row is not None and "content_sha256" in row
            else None
        ),
        "row": row,
        "not_recorded": not_recorded,
    }


def overrides_for(rows: dict[tuple[str, str, str, str], dict], entity: str, key: str | None) -> list[dict]:
    """The reviewers' decisions (rules/overrides/<tenant>.csv rows) on this row or its links."""
    a_side = {j.name for j in JUNCTIONS if j.a == entity}
    b_side = {j.name for j in JUNCTIONS if j.b == entity}
    out = []
    for (kind, ent, k, target), r in sorted(rows.items()):
        if (ent == entity and k == key) or (ent in a_side and k == key) or (ent in b_side and target == key):
            out.append({"kind": kind, "entity": ent, "key": k, "target_key": target, "decision": r.get("decision")})
    return out


# ---------------------------------------------------------------------------------------------
# text


def _fmt(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _clip(value, limit: int = TEXT_VALUE) -> str:
    text = value if isinstance(value, str) else _fmt(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _runs_text(runs: list[dict]) -> str:
    if not runs:
        return "no recorded run was running then"
    return "; ".join(f"run {r['id']} ({r['flow']}, {r['status']}, started {r['started_at']})" for r in runs)


def render_text(x: dict) -> str:
    """The explanation as sections a person reads."""
    lines = [
        f"{x['entity']} {x['key']!r}" + (f" ({x['name']})" if x.get("name") else "") + f" in tenant {x['tenant']}",
        f"  id: {x['id'] or '-'}",
        f"  status: {x['status']}",
        f"  target: {x['target']}",
    ]

    def section(title: str, body: list[str]) -> None:
        lines.append("")
        lines.append(title)
        lines.extend(f"  {b}" for b in (body or ["none"]))

    src = []
    for s in x["sources"]:
        if "created_from" in s:
            src.append(f"created for the reference {s.get('reference')!r} of {s['created_from']} ({s.get('source')})")
        elif "derived_from" in s:
            src.append(f"derived from {s['derived_from']} {s['key']!r}: {s.get('source')} row {s.get('row')}")
        else:
            src.append(f"{s.get('source')} row {s.get('row')}")
    section("Source", src)

    if x["status"] != "quarantined" or x["enums"]:
        section(
            "Enum mappings",
            [
                f"{e['column']} = {e['value']!r}"
                + (f" from {e['field']} {e['raw']!r}" if e["raw"] is not None else "")
                + (f": {e['rule']}" if e.get("rule") else "")
                for e in x["enums"]
            ],
        )
    if x["area"]:
        a = x["area"]
        body = [f"{a['value']} ({a['source']}, confidence {a['confidence']})"]
        if a.get("rule"):
            body.append(f"rule: {a['rule']}")
        body += [f"{k}: {_fmt(v)}" for k, v in sorted(a["evidence"].items())]
        section("Functional area", body)

    t = x["tenant_rule"]
    if x["status"] != "quarantined" or t["rule"]:
        body = [f"rule: {t['rule'] or '-'}"]
        if t.get("label_file"):
            body.append(f"label file row: {_fmt(t['label_file'])}")
        d = t.get("decision")
        if d:
            body.append(
                f"decision: {d['value']} ({d['source']}, confidence {d['confidence']}), evidence {_fmt(d['evidence'])}"
            )
        section("Tenant", body)

    o = x["overrides"]
    section(
        f"Overrides ({o['file'] or 'rules/overrides/'})",
        [
            f"{r['kind']} {r['entity']} {r['key']!r}"
            + (f" -> {r['target_key']!r}" if r["target_key"] else "")
            + f": {r['decision']}"
            for r in o["rows"]
        ],
    )
    area_evidence = (x["area"] or {}).get("evidence")
    section(
        "Decisions (etl.decisions)",
        [
            f"{d['kind']} {d['entity']}"
            + (f" {d['key']!r} -> {d['target_key']!r}" if d["target_key"] else "")
            + f": {d['value']!r} by {d['source']}, confidence {d['confidence']}"
            + (", reviewed" if d["reviewed"] else "")
            + f" (run {d['run_id']}, {d['decided_at']}); evidence "
            + ("as above" if d["kind"] == "area" and d["evidence"] == area_evidence else _fmt(d["evidence"]))
            for d in x["decisions"]
        ],
    )

    r = x["runs"]
    body = []
    if "first_loaded" in r:
        body.append(f"first loaded {r['first_loaded']['at']} (etl.id_map): {_runs_text(r['first_loaded']['runs'])}")
    if "last_changed" in r:
        body.append(f"last changed {r['last_changed']['at']} (updated_at): {_runs_text(r['last_changed']['runs'])}")
    for what in ("decided_by", "quarantined_by"):
        if r.get(what):
            body.append(
                f"{what.replace('_', ' ')} (etl.{what.split('_')[0].replace('decided', 'decisions').replace('quarantined', 'quarantine')}): {_runs_text(r[what])}"
            )
    section("Runs", body)

    body = []
    for q in x["quarantine"]:
        runs = q["runs"]
        where = f"{q['entity']} {q['key']!r}: " if q["entity"] != x["entity"] or q["key"] != x["key"] else ""
        body.append(
            f"{where}{q['reason']} (in {len(runs)} run(s), first {runs[0]['at']} run {runs[0]['run_id']}, "
            f"last {runs[-1]['at']} run {runs[-1]['run_id']})"
        )
        if q["payload"]:
            body.append("  payload: " + ", ".join(f"{k}={_clip(v)}" for k, v in sorted(q["payload"].items())))
    section("Quarantine (etl.quarantine)", body)

    body = []
    shown: dict[str, int] = {}
    for link in x["links"]:
        n = shown[link["junction"]] = shown.get(link["junction"], 0) + 1
        if n > TEXT_LINKS:
            continue
        how = link["mapping_source"] + (f" {link['relevance_score']}" if link["relevance_score"] is not None else "")
        if link["decided_by"]:
            how += f", decided by {link['decided_by']} (confidence {link['confidence']})"
        kind = f" [{link['kind']}]" if link["kind"] else ""
        if link.get("deleted_at"):
            how += f", hidden since {link['deleted_at']}"
        body.append(
            f"{link['junction']}{kind} -> {link['other_entity']} {link['other_key']!r}"
            + (f" ({link['other_name']})" if link["other_name"] else "")
            + f": {how}; derived from {_fmt(link['derived_from'])}"
        )
        if link["evidence"]:
            body.append(f"  evidence {_fmt(link['evidence'])}")
    for junction, n in shown.items():
        if n > TEXT_LINKS:
            body.append(f"{junction}: {n - TEXT_LINKS} more (--json lists all)")
    section(f"Links ({len(x['links'])})", body)

    if x["references"] or x["derived"]:
        section(
            "References",
            [f"{ref['column']} -> {ref['entity']} {ref['key']!r} ({ref['name']})" for ref in x["references"]]
            + [f"{table}: {n} row(s) derived from it" for table, n in x["derived"].items()],
        )
    if x["other_etl"]:
        section(
            "Other recorded decisions (metadata._etl)", [f"{k}: {_fmt(v)}" for k, v in sorted(x["other_etl"].items())]
        )
    if x["embedding"]:
        e = x["embedding"]
        section(
            "Embedding",
            [
                f"{'present' if e['present'] else 'not embedded yet (backfill-embeddings fills it)'}, model {e['model']}, content_sha256 {e['content_sha256']}"
            ],
        )
    if x["not_recorded"]:
        section("Not recorded (shown as far as the records go)", x["not_recorded"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the whole step


def explain_row(
    dsn: str,
    tenant: str,
    *,
    row_id: str | None = None,
    entity: str | None = None,
    key: str | None = None,
    rules=None,
    overrides=None,
) -> dict:
    """Fetch (one read-only transaction) and explain one row: by id, or by entity and legacy key.
    RowNotFound when neither the target nor etl.* knows it."""
    from tasks.normalize.rules import load_rules
    from tasks.review import load_overrides

    if row_id is not None:
        try:
            row_id = str(uuid.UUID(row_id))
        except ValueError:
            raise ConfigError(f"--id {row_id!r} is not a UUID") from None
    enums = (rules or load_rules()).enums
    overrides = overrides if overrides is not None else load_overrides(tenant)
    with connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        # a role under Row Level Security sees the tenant's rows (the loader's role owns them anyway)
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_uuid(tenant)),))
        rec = fetch_records(conn, tenant, row_id=row_id, entity=entity, key=key, enums=enums, target=mask_dsn(dsn))
    rec.overrides = overrides_for(overrides.rows, rec.entity, rec.key)
    rec.overrides_file = overrides.file
    if rec.row is None and rec.id_map is None and not rec.quarantine and not rec.decisions:
        raise RowNotFound(
            f"no {rec.entity} row with legacy key {rec.key!r} in tenant {tenant!r}: the target has none, and "
            "etl.id_map, etl.quarantine and etl.decisions name none; check the key (as the source writes it) "
            "and the tenant"
        )
    return explain(rec, enums)
