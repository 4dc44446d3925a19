"""The plan of a migrate-tenant run (plan=True; `vital-etl migrate --plan`): what the run would
change in the live target, computed without writing anything.

Per entity, derived table and junction: the rows that would be inserted, updated (with the
columns that change), left unchanged, and removed (or kept though the sources no longer have
them); the texts that would be embedded (content hashes etl.embedding_cache lacks for the
model) and how long that would take at an encode rate measured now; the decisions and
overrides that would change against etl.decisions; whether the prune guard would refuse the run.

Nothing is written. Everything runs in one REPEATABLE READ transaction that is rolled back:
the temporary staging tables are created first, then the transaction is made READ ONLY
(PostgreSQL refuses CREATE TABLE, temporary or not, in a read-only transaction, but lets one
write into temporary tables that already exist), so every query after that point provably
reads only. The rows are the ones load_tenant would write (tasks/prepare.py, tasks/chunk.py,
tasks/sync.stamp_links), staged as the loader stages them (the target's column types, NOT NULL
defaults, vectors from the cache, one row per key) and compared in SQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import IsolationLevel, sql

from core.catalogue import JUNCTION_BY_NAME
from core.catalogue import entity as entity_of
from core.catalogue import junction as junction_of
from core.connections import connect, target_dsn
from core.settings import ModelSpec, model_spec
from tasks.chunk import chunk_documents
from tasks.embed import content_sha256
from tasks.links import INFERRED
from tasks.load import SKIP_UPDATE, load_columns, one_row_per_key, table_spec, to_text
from tasks.prepare import rows_for_load, with_hashes
from tasks.prune import DERIVED_FROM, absent_rows, guard_problem, max_ratio_or_rule, source_ids, totals
from tasks.review import read_decisions
from tasks.sync import stamp_links

ENCODE_SAMPLE = 64  # texts encoded to measure the rate the estimate uses
DECISION_FIELDS = ("name", "value", "source", "confidence", "margin", "evidence", "reviewed")
SHOWN = 20  # rows listed per table and change in the Markdown rendering


# ---------------------------------------------------------------------------------------------
# vectors for the decide step of a plan


def plan_vectors(dsn: str | None = None, encode: Callable | None = None) -> Callable[[list[str]], np.ndarray]:
    """texts -> vectors as a real run's decide step gets them (etl.embedding_cache first, so the
    decisions come out the same), except that texts the cache lacks are encoded in memory and
    not stored. `.encoded` counts those texts."""
    spec = model_spec()

    def vectors(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, spec.dim), np.float32)
        uniq = sorted(set(texts))
        hashes = [content_sha256(spec.model_id, t) for t in uniq]
        from pgvector.psycopg import register_vector

        with connect(dsn or target_dsn(), autocommit=True) as conn:
            register_vector(conn)
            got = dict(
                conn.execute(
                    "SELECT content_sha256, embedding FROM etl.embedding_cache WHERE model = %s AND content_sha256 = ANY(%s)",
                    (spec.model_id, hashes),
                ).fetchall()
            )
        missing = [t for t, h in zip(uniq, hashes) if h not in got]
        fresh: dict[str, np.ndarray] = {}
        if missing:
            fn = encode
            if fn is None:
                from tasks.model import encode as fn
            fresh = dict(zip(missing, fn(spec, missing)))
            vectors.encoded += len(missing)
        found = {t: _array(got[h]) if h in got else fresh[t] for t, h in zip(uniq, hashes)}
        return np.array([found[t] for t in texts], dtype=np.float32)

    vectors.encoded = 0
    return vectors


def _array(value) -> np.ndarray:
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# the row diff


def stage_name(table: str) -> str:
    return f"vital_plan_{table}"


def stage_tables(conn: psycopg.Connection, tables: list[str]) -> None:
    """One temporary staging table per table, typed like it, dropped at the end of the
    transaction; created before the transaction turns READ ONLY."""
    for table in tables:
        conn.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT * FROM {} WITH NO DATA").format(
                sql.Identifier(stage_name(table)), sql.Identifier(table)
            )
        )


def row_key(spec_key: tuple[str, ...]) -> tuple[str, ...]:
    """The columns that name a row within a tenant: `id`, or a junction's key without tenant_id."""
    return tuple(k for k in spec_key if k != "tenant_id") or spec_key


def _diff_rows(conn: psycopg.Connection, table: str, rows: list[dict]) -> dict:
    """What loading `rows` into `table` would do: {"insert": [keys], "update": {key: [changed
    columns]}, "unchanged": [keys]}; a key is the id, or a junction's end ids (and kind) joined
    by '/'. The rows go into the table's staging table (stage_tables) as the loader sends them:
    the same columns, the same NOT NULL defaults, the embedding from etl.embedding_cache, and
    `deleted_at` NULL (a loaded row is live)."""
    out: dict = {"insert": [], "update": {}, "unchanged": []}
    if not rows:
        return out
    spec = table_spec(conn, table)
    rows = one_row_per_key(rows, spec.key)
    columns = [c for c in load_columns(spec, rows) if c != "embedding"]
    ident, stage = sql.Identifier, sql.Identifier(stage_name(table))
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DELETE FROM {}").format(stage))
        with cur.copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(stage, sql.SQL(", ").join(map(ident, columns)))
        ) as copy:
            for r in rows:
                copy.write_row([to_text(r.get(c)) for c in columns])
        new = {
            c: sql.SQL("coalesce(s.{}, {})").format(ident(c), sql.SQL(spec.defaults[c]))
            if c in spec.defaults
            else sql.SQL("s.{}").format(ident(c))
            for c in columns
        }
        join = sql.SQL("")
        if spec.has_embedding and "content_sha256" in columns and "embedding_model" in columns:
            new["embedding"] = sql.SQL("c.embedding")
            join = sql.SQL(
                " LEFT JOIN etl.embedding_cache c ON c.model = s.embedding_model AND c.content_sha256 = s.content_sha256"
            )
        compared = [c for c in new if c not in SKIP_UPDATE and c not in spec.key]
        changed = sql.SQL(", ").join(
            sql.SQL("CASE WHEN {} IS DISTINCT FROM t.{} THEN {} END").format(new[c], ident(c), sql.Literal(c))
            for c in compared
        )
        key = sql.SQL("concat_ws('/', {})").format(
            sql.SQL(", ").join(sql.SQL("s.{}::text").format(ident(k)) for k in row_key(spec.key))
        )
        found = cur.execute(
            sql.SQL(
                "SELECT {key}, t.{first} IS NULL, array_remove(ARRAY[{changed}]::text[], NULL) "
                "FROM {stage} s{join} LEFT JOIN {table} t ON {on} ORDER BY 1"
            ).format(
                key=key,
                first=ident(spec.key[0]),
                changed=changed if compared else sql.SQL("NULL"),
                stage=stage,
                join=join,
                table=ident(table),
                on=sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=ident(k)) for k in spec.key),
            )
        ).fetchall()
    for k, is_new, diff in found:
        if is_new:
            out["insert"].append(k)
        elif diff:
            out["update"][k] = sorted(diff)
        else:
            out["unchanged"].append(k)
    return out


# ---------------------------------------------------------------------------------------------
# the rows load_tenant would write


def run_rows(part, model_id: str) -> tuple[dict[str, list[dict]], dict[str, list[str]], dict]:
    """As load_tenant builds them: table -> rows (entities, their derived tables, junctions),
    table -> texts to embed (searchable tables), and origins (table -> {id: source})."""
    tenant = part.tenant
    rows_by_table: dict[str, list[dict]] = {}
    texts: dict[str, list[str]] = {}
    origins: dict[str, dict[str, str | None]] = {}
    for entity, s in part.entities.items():
        rows = rows_for_load(s.rows)
        derived = {"knowledge_chunks": chunk_documents(rows, str(tenant.id))} if entity == "knowledge_documents" else {}
        for table, table_rows in [(entity, rows), *derived.items()]:
            texts[table] = with_hashes(table, table_rows, model_id)
            rows_by_table[table] = table_rows
            origins[table] = {r["id"]: r.get("_source") for r in table_rows}
    for junction, frame in part.junctions.items():
        rows_by_table[junction] = stamp_links(junction, frame.to_dicts(), origins)
    return rows_by_table, texts, origins


# ---------------------------------------------------------------------------------------------
# what would be removed


def _entity_removals(conn, tenant, tenant_id, entity, ids, prune) -> tuple[list, list, list[str]]:
    """(removed, kept, removed ids) of an entity: rows not in the sources; removed = derived by
    vital-etl when the run prunes (a soft prune skips rows already hidden)."""
    soft = prune == "soft"
    removed, kept, removed_ids = [], [], []
    for r in absent_rows(conn, tenant, tenant_id, entity, ids):
        if prune and r.derived and not (soft and r.hidden):
            removed.append(r.legacy_key)
            removed_ids.append(r.id)
        elif not r.hidden:
            kept.append(r.legacy_key)
    return removed, kept, removed_ids


def _derived_removals(conn, table, tenant_id, ids, parents: set[str], removed_parents: set[str], prune) -> tuple:
    """Rows of a derived table (chunks) not produced now: those of a document this run read are
    replaced (tasks/sync.prune_chunks); those of a removed document go with it."""
    rows = conn.execute(
        sql.SQL(
            "SELECT legacy_key, {}::text, deleted_at IS NOT NULL FROM {} WHERE tenant_id = %s "
            "AND NOT (id = ANY(%s::uuid[])) ORDER BY legacy_key"
        ).format(sql.Identifier(DERIVED_FROM[table]), sql.Identifier(table)),
        (tenant_id, ids),
    ).fetchall()
    removed, kept = [], []
    for key, parent, hidden in rows:
        if parent in parents or (prune and parent in removed_parents and not (prune == "soft" and hidden)):
            removed.append(key)
        elif not hidden:
            kept.append(key)
    return removed, kept


def _junction_removals(conn, junction, tenant_id, rows, origins, inferred: bool, removed_ids, prune) -> tuple:
    """The tenant's links this run does not make: removed when the run no longer derives them
    from the same sources (tasks/sync.prune_links), no longer infers them (tasks/links.
    prune_inferred, for `inferred` junctions) or prunes one of their ends; kept otherwise."""
    j = junction_of(junction)
    kind = sql.Identifier(j.kind) if j.kind else None
    keys = [(r[j.a_col], r[j.b_col], r.get(j.kind) if j.kind else "") for r in rows]
    found = conn.execute(
        sql.SQL(
            """SELECT j.{a}::text, j.{b}::text, {kind_col}, j.mapping_source::text,
                      j.metadata -> 'derived_from' ->> %s, j.metadata -> 'derived_from' ->> %s, j.deleted_at IS NOT NULL
               FROM {j} j WHERE j.tenant_id = %s AND NOT EXISTS (
                 SELECT 1 FROM unnest(%s::uuid[], %s::uuid[], %s::text[]) AS k(a, b, t)
                 WHERE k.a = j.{a} AND k.b = j.{b} {kind_match})
               ORDER BY 1, 2, 3"""
        ).format(
            a=sql.Identifier(j.a_col),
            b=sql.Identifier(j.b_col),
            j=sql.Identifier(junction),
            kind_col=sql.SQL("j.{}").format(kind) if kind else sql.SQL("''"),
            kind_match=sql.SQL("AND k.t = j.{}").format(kind) if kind else sql.SQL(""),
        ),
        (j.a_col, j.b_col, tenant_id, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
    ).fetchall()
    pairs = {(str(k[0]), str(k[1])) for k in keys}
    a_src, b_src = origins.get(j.a, {}), origins.get(j.b, {})
    removed, kept = [], []
    for a, b, kind_value, source, from_a, from_b, hidden in found:
        key = "/".join(x for x in (a, b, kind_value) if x)
        end_removed = a in removed_ids.get(j.a, set()) or b in removed_ids.get(j.b, set())
        no_longer_derived = (
            source == "automated"
            and from_a is not None
            and a_src.get(a) == from_a
            and from_b is not None
            and b_src.get(b) == from_b
        )
        no_longer_inferred = inferred and source in INFERRED and (a, b) not in pairs
        if no_longer_derived or no_longer_inferred or (prune and end_removed and not (prune == "soft" and hidden)):
            removed.append(key)
        elif not hidden:
            kept.append(key)
    return removed, kept


# ---------------------------------------------------------------------------------------------
# decisions


def _decision_value(field: str, value):
    if field in ("name", "value", "source"):
        return value or ""
    if field == "confidence":
        return round(float(value), 3)
    if field == "margin":
        return None if value in (None, "") else round(float(value), 3)
    if field == "evidence":
        return json.loads(value) if isinstance(value, str) else value
    return value is True or value == "true"  # reviewed


def decision_changes(conn: psycopg.Connection, tenant: str, decided) -> dict:
    """This run's decisions against etl.decisions (what the tenant's last run recorded)."""

    def key(r: dict) -> str:
        target = f" -> {r['target_key']}" if r["target_key"] else ""
        return f"{r['kind']} {r['entity']} {r['key']}{target}"

    old = {key(r): r for r in read_decisions(conn, tenant)}
    new = {key(r): r for r in (d.row(tenant) for d in decided.decisions)} if decided is not None else {}
    out: dict = {"insert": [], "update": {}, "remove": sorted(set(old) - set(new)), "unchanged": 0}
    for k, r in sorted(new.items()):
        if k not in old:
            out["insert"].append(k)
            continue
        diff = [f for f in DECISION_FIELDS if _decision_value(f, r[f]) != _decision_value(f, old[k][f])]
        if diff:
            out["update"][k] = diff
        else:
            out["unchanged"] += 1
    out["overrides"] = sorted(
        k for k in (*out["insert"], *out["update"]) if new[k]["source"] == "override"
    )  # reviewers' answers this run applies for the first time (or differently)
    out["stale_overrides"] = list(decided.stale_overrides) if decided is not None else []
    return out


# ---------------------------------------------------------------------------------------------
# embedding


def embedding_plan(conn: psycopg.Connection, spec: ModelSpec, texts: dict[str, list[str]], encode=None) -> dict:
    """Texts whose (model, content hash) etl.embedding_cache lacks, per table and in all (a text
    shared by tables or rows is embedded once), with the time they would take at an encode rate
    measured now on up to ENCODE_SAMPLE of them."""
    by_hash: dict[str, str] = {}
    per_table: dict[str, set[str]] = {}
    for table, table_texts in texts.items():
        hashes = [content_sha256(spec.model_id, t) for t in table_texts]
        by_hash.update(zip(hashes, table_texts))
        per_table[table] = set(hashes)
    cached = {
        r[0]
        for r in conn.execute(
            "SELECT content_sha256 FROM etl.embedding_cache WHERE model = %s AND content_sha256 = ANY(%s)",
            (spec.model_id, list(by_hash)),
        )
    }
    missing = sorted(h for h in by_hash if h not in cached)
    out = {
        "model": spec.model_id,
        "texts": len(missing),
        "by_table": {t: len(hs - cached) for t, hs in per_table.items() if hs - cached},
        "rate_per_s": None,
        "estimated_s": 0.0,
    }
    if missing:
        if encode is None:
            from tasks.model import encode
        sample = [by_hash[h] for h in missing[:ENCODE_SAMPLE]]
        encode(spec, sample[:1])  # loads the model: not part of the rate
        started = time.perf_counter()
        encode(spec, sample)
        rate = len(sample) / max(time.perf_counter() - started, 1e-6)
        out["rate_per_s"] = round(rate, 1)
        out["estimated_s"] = round(len(missing) / rate, 3)
    return out


# ---------------------------------------------------------------------------------------------
# the plan


def plan_tenant(
    conn: psycopg.Connection,
    part,
    decided=None,
    *,
    complete: bool,
    prune: bool | str = False,
    max_delete_ratio: float | None = None,
    encode=None,
) -> dict:
    """The plan of one tenant's run (a TenantSlice after decide) against the target on `conn`
    (autocommit), in one read-only transaction that is rolled back. complete: the run covers
    every entity of the manifest (else nothing is pruned or counted as gone)."""
    spec = model_spec()
    tenant, tenant_id = part.tenant.slug, str(part.tenant.id)
    prune = "soft" if prune == "soft" else bool(prune)
    prune_now = prune if complete else False
    ratio = max_ratio_or_rule(max_delete_ratio)
    rows_by_table, texts, origins = run_rows(part, spec.model_id)
    ids = source_ids(part)
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction(force_rollback=True):
            stage_tables(conn, list(rows_by_table))
            conn.execute("SET TRANSACTION READ ONLY")
            tables: dict[str, dict] = {}
            removed_ids: dict[str, set[str]] = {}
            for table, rows in rows_by_table.items():
                d = _diff_rows(conn, table, rows)
                tables[table] = {
                    "kind": _kind(table, part),
                    "insert": _named(d["insert"], rows),
                    "update": dict(zip(_named(list(d["update"]), rows), d["update"].values())),
                    "unchanged": len(d["unchanged"]),
                    "remove": [],
                    "kept": [],
                }
            guard = {"max_delete_ratio": ratio, "refused": None}
            if complete:
                for entity in part.entities:
                    removed, kept, gone_ids = _entity_removals(conn, tenant, tenant_id, entity, ids[entity], prune_now)
                    tables[entity]["remove"], tables[entity]["kept"] = removed, kept
                    removed_ids[entity] = set(gone_ids)
                if prune_now:
                    gone = {e: sorted(i) for e, i in removed_ids.items()}
                    problem = guard_problem(
                        gone, totals(conn, tenant_id, gone, soft=prune_now == "soft"), ratio, tenant
                    )
                    guard["refused"] = str(problem) if problem else None
            for table in rows_by_table:
                if table in DERIVED_FROM:
                    parent = next(e for e in part.entities if table in entity_of(e).derived)
                    tables[table]["remove"], tables[table]["kept"] = _derived_removals(
                        conn,
                        table,
                        tenant_id,
                        [r["id"] for r in rows_by_table[table]],
                        {r["id"] for r in rows_by_table[parent]},
                        removed_ids.get(parent, set()),
                        prune_now,
                    )
                elif table in JUNCTION_BY_NAME:
                    inferred = decided is not None and table in decided.complete_links
                    tables[table]["remove"], tables[table]["kept"] = _junction_removals(
                        conn, table, tenant_id, rows_by_table[table], origins, inferred, removed_ids, prune_now
                    )
            _legacy_keys(conn, tables, rows_by_table)
            embed = embedding_plan(conn, spec, texts, encode)
            decisions = decision_changes(conn, tenant, decided)
    finally:
        conn.isolation_level = None
    return {
        "tenant": tenant,
        "complete": complete,
        "prune": {False: "keep", True: "delete", "soft": "hide"}[prune_now],
        "tables": tables,
        "totals": {
            "insert": sum(len(t["insert"]) for t in tables.values()),
            "update": sum(len(t["update"]) for t in tables.values()),
            "unchanged": sum(t["unchanged"] for t in tables.values()),
            "remove": sum(len(t["remove"]) for t in tables.values()),
            "kept": sum(len(t["kept"]) for t in tables.values()),
        },
        "embed": embed,
        "decisions": decisions,
        "guard": guard,
        "written": "nothing: planned in a read-only transaction that was rolled back",
    }


def _kind(table: str, part) -> str:
    return "junction" if table in JUNCTION_BY_NAME else ("entity" if table in part.entities else "derived")


def _named(keys: list[str], rows: list[dict]) -> list[str]:
    """Entity and chunk rows by legacy key (what a data engineer recognizes); junction keys as they are."""
    if not rows or "legacy_key" not in rows[0]:
        return keys
    names = {str(r["id"]): r["legacy_key"] for r in rows}
    return [names.get(k, k) for k in keys]


def _legacy_keys(conn: psycopg.Connection, tables: dict, rows_by_table: dict) -> None:
    """Junction keys (end ids) spelled with the ends' legacy keys: `a_key -> b_key [kind]`."""
    names = {str(r["id"]): r["legacy_key"] for rows in rows_by_table.values() for r in rows if "legacy_key" in r}
    for table, t in tables.items():
        if t["kind"] != "junction":
            continue
        j = junction_of(table)
        ends = {e for k in (*t["insert"], *t["update"], *t["remove"], *t["kept"]) for e in k.split("/")[:2]}
        unknown = sorted(e for e in ends if e not in names)
        for end_table in sorted({j.a, j.b}) if unknown else ():
            names.update(
                conn.execute(
                    sql.SQL("SELECT id::text, legacy_key FROM {} WHERE id = ANY(%s::uuid[])").format(
                        sql.Identifier(end_table)
                    ),
                    (unknown,),
                ).fetchall()
            )

        def spell(k: str) -> str:
            a, b, *kind = k.split("/")
            return f"{names.get(a, a)} -> {names.get(b, b)}" + (f" [{kind[0]}]" if kind else "")

        t["insert"] = [spell(k) for k in t["insert"]]
        t["update"] = {spell(k): v for k, v in t["update"].items()}
        t["remove"] = [spell(k) for k in t["remove"]]
        t["kept"] = [spell(k) for k in t["kept"]]


@task(name="plan-tenant", task_run_name="plan-{part.tenant.slug}", cache_policy=NO_CACHE)
def plan_changes(
    part, decided, complete: bool, prune: bool | str = False, max_delete_ratio: float | None = None
) -> dict:
    """What the run would change in the target, written nowhere (see plan_tenant)."""
    with connect(target_dsn(), autocommit=True) as conn:
        return plan_tenant(conn, part, decided, complete=complete, prune=prune, max_delete_ratio=max_delete_ratio)


# ---------------------------------------------------------------------------------------------
# rendering


def _listed(items, shown: int = SHOWN) -> str:
    items = list(items)
    more = f", ... ({len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(f"`{x}`" for x in items[:shown]) + more


def plan_markdown(plan: dict) -> str:
    """The plan as the Prefect artifact and `vital-etl migrate --plan` show it."""
    action = {"keep": "kept (prune not asked)", "delete": "deleted", "hide": "hidden (soft delete)"}[plan["prune"]]
    lines = [
        f"# Plan: migrate-tenant `{plan['tenant']}`",
        "",
        f"Nothing was written ({plan['written'].split(': ', 1)[-1]}).",
        "",
        "| table | insert | update | unchanged | remove | kept, not in the sources |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for table, t in plan["tables"].items():
        lines.append(
            f"| {table} | {len(t['insert'])} | {len(t['update'])} | {t['unchanged']} | {len(t['remove'])} | {len(t['kept'])} |"
        )
    tot = plan["totals"]
    lines.append(
        f"| **total** | {tot['insert']} | {tot['update']} | {tot['unchanged']} | {tot['remove']} | {tot['kept']} |"
    )
    lines.append("")
    if not plan["complete"]:
        lines += ["The run covers a subset of the manifest's entities: nothing is pruned or counted as gone.", ""]
    else:
        lines += [f"Rows the sources no longer have that vital-etl derived: {action}.", ""]
    if plan["guard"]["refused"]:
        lines += [f"**The run would be refused:** {plan['guard']['refused']}", ""]
    for table, t in plan["tables"].items():
        parts = []
        if t["insert"]:
            parts.append(f"- insert: {_listed(t['insert'])}")
        if t["update"]:
            shown = [f"{k} ({', '.join(cols)})" for k, cols in t["update"].items()]
            parts.append(f"- update: {_listed(shown)}")
        if t["remove"]:
            parts.append(f"- remove: {_listed(t['remove'])}")
        if t["kept"]:
            parts.append(f"- kept, not in the sources: {_listed(t['kept'])}")
        if parts:
            lines += [f"## {table}", "", *parts, ""]
    e = plan["embed"]
    lines += ["## Embedding", ""]
    if e["texts"]:
        lines.append(
            f"{e['texts']} text(s) to embed with `{e['model']}` "
            f"({', '.join(f'{t} {n}' for t, n in e['by_table'].items())}): about {e['estimated_s']:g} s "
            f"at {e['rate_per_s']:g} texts/s measured now."
        )
    else:
        lines.append(f"Nothing to embed: every text is in etl.embedding_cache for `{e['model']}`.")
    d = plan["decisions"]
    lines += [
        "",
        "## Decisions",
        "",
        f"{len(d['insert'])} new, {len(d['update'])} changed, {len(d['remove'])} no longer made, "
        f"{d['unchanged']} unchanged (against etl.decisions).",
    ]
    if d["update"]:
        changed = [f"{k} ({', '.join(v)})" for k, v in d["update"].items()]
        lines.append(f"- changed: {_listed(changed)}")
    if d["overrides"]:
        lines.append(f"- overrides applied now: {_listed(d['overrides'])}")
    if d["stale_overrides"]:
        lines += [f"- {x}" for x in d["stale_overrides"]]
    return "\n".join(lines) + "\n"
