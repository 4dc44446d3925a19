"""Loading: binary COPY with the target's own column types, one transaction per batch.

- Values go to PostgreSQL as their types' binary form (uuid, jsonb, text[], numeric,
  timestamptz, enums, vector), so nothing is turned into text in Python or cast in SQL. A batch
  holding a value Python cannot type (a date in a legacy spelling, an array written as text)
  takes the text path instead: all-text staging cast by the database, which judges the value
  with its own message.
- Into a table that holds no row of the tenant yet, batches are COPYed straight into the table;
  otherwise into a typed temporary table, then `INSERT ... ON CONFLICT DO UPDATE ... WHERE
  ... IS DISTINCT FROM`, so an unchanged row is not touched (updated_at included).
- With a tenant, each row carries a hash of the values it loads (etl.id_map.row_hash, written
  in the batch's own transaction): a row whose hash and presence in the target are unchanged is
  not sent at all, and a batch of such rows writes nothing.
- Searchable tables take their vector from etl.embedding_cache by (model, content_sha256).
- Errors are classified by SQLSTATE (core/retry.py). Transient ones (08 connection, 40
  serialization/deadlock, 57P01-03 shutdown) retry the batch on a new connection (tenacity).
  A batch that fails for a data reason (22, 23, 54, P0001) is bisected, never retried, until
  the bad rows are isolated; they are returned for quarantine with the database's message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from core.catalogue import SELF_REFERENCES
from core.connections import connect, target_dsn
from core.errors import TransientError
from core.retry import IO_RETRIES, is_data_error, is_transient

log = logging.getLogger(__name__)
SKIP_UPDATE = {"id", "created_at", "updated_at"}


class Untypable(ValueError):
    """A value Python cannot put in its column's binary form: the batch takes the text path."""


@dataclass(frozen=True)
class TableSpec:
    """A target table as the loader needs it: column types, conflict key, vector column."""

    name: str
    types: dict[str, str]  # column -> format_type(), e.g. "numeric(4,2)"
    oids: dict[str, int]
    kinds: dict[str, str]  # column -> how its values are typed in Python (KINDS)
    key: tuple[str, ...]
    has_embedding: bool
    defaults: dict[str, str]  # NOT NULL columns with a default: NULL from a source takes the default


def table_spec(conn: psycopg.Connection, table: str) -> TableSpec:
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid::int, t.typtype,
                  t.typcategory, coalesce(e.typname, t.typname)
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
           WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
        (table,),
    ).fetchall()
    key = conn.execute(
        """SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i
           CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE i.indrelid = %s::regclass AND i.indisprimary""",
        (table,),
    ).fetchone()[0]
    defaults = dict(
        conn.execute(
            """SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a
           JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = %s::regclass AND a.attnotnull""",
            (table,),
        ).fetchall()
    )
    types = {r[0]: r[1] for r in rows}
    kinds = {name: _kind(typtype, category, base) for name, _, _, typtype, category, base in rows}
    return TableSpec(table, types, {r[0]: r[2] for r in rows}, kinds, tuple(key), "embedding" in types, defaults)


def _kind(typtype: str, category: str, base: str) -> str:
    if typtype == "e":
        return "enum"
    if category == "A":
        return "text[]" if base in {"text", "varchar"} else "other"
    return KIND_OF_TYPE.get(base, "text" if category == "S" else "other")


KIND_OF_TYPE = {
    "uuid": "uuid",
    "jsonb": "json",
    "json": "json",
    "vector": "vector",
    "timestamptz": "timestamptz",
    "timestamp": "timestamp",
    "date": "date",
    "numeric": "numeric",
    "int2": "int",
    "int4": "int",
    "int8": "int",
    "float4": "float",
    "float8": "float",
    "bool": "bool",
}
TRUE, FALSE = {"t", "true", "y", "yes", "on", "1"}, {"f", "false", "n", "no", "off", "0"}


def _uuid(v):
    return v if isinstance(v, uuid.UUID) else uuid.UUID(v)


def _json(v):
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)


def _datetime(v, aware: bool):
    if isinstance(v, datetime):
        out = v
    elif isinstance(v, str):
        out = datetime.fromisoformat(v)
    else:
        raise Untypable(v)
    if (out.tzinfo is not None) != aware:  # e.g. a zone-less time for timestamptz: the database
        raise Untypable(v)  # reads it in its session zone, so let it
    return out


def _text(v):
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
        return str(v)
    raise Untypable(v)


def _date(v):
    if isinstance(v, datetime):
        raise Untypable(v)
    return v if isinstance(v, date) else date.fromisoformat(v)


def _int(v):
    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
        raise Untypable(v)
    return int(v)


def _bool(v):
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in TRUE or s in FALSE:
        return s in TRUE
    raise Untypable(v)


def _text_list(v):
    if not isinstance(v, (list, tuple)):
        raise Untypable(v)
    return [None if x is None else str(x) for x in v]


def _vector(v):
    return np.asarray(json.loads(v) if isinstance(v, str) else v, dtype=np.float32)


CONVERT: dict[str, Callable] = {
    "text": _text,
    "enum": _text,
    "uuid": _uuid,
    "json": _json,
    "vector": _vector,
    "timestamptz": lambda v: _datetime(v, aware=True),
    "timestamp": lambda v: _datetime(v, aware=False),
    "date": _date,
    "numeric": lambda v: Decimal(str(v)) if not isinstance(v, Decimal) else v,
    "int": _int,
    "float": float,
    "bool": _bool,
    "text[]": _text_list,
}


class _Utf8Dumper(Dumper):
    """An enum label in its binary form (its text)."""

    format = Format.BINARY

    def dump(self, obj):
        return obj.encode()


class _JsonbTextDumper(Dumper):
    """jsonb's binary form (version 1, then the JSON text) from text already encoded."""

    format = Format.BINARY

    def dump(self, obj):
        return b"\x01" + obj.encode()


def _prepare(conn: psycopg.Connection, spec: TableSpec) -> None:
    """Dumpers for the table's enum and jsonb columns (by oid: set_types picks by oid)."""
    register_vector(conn)
    for column, kind in spec.kinds.items():
        base = {"enum": _Utf8Dumper, "json": _JsonbTextDumper}.get(kind)
        if base:
            conn.adapters.register_dumper(
                f"vital_etl.{kind}_{spec.oids[column]}", type(base.__name__, (base,), {"oid": spec.oids[column]})
            )


def to_text(value) -> str | None:
    """A Python value as PostgreSQL input text (the text path's staging table is all text)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, np.ndarray):
        return "[" + ",".join(map(repr, value.tolist())) + "]"
    if isinstance(value, (list, tuple)):
        items = []
        for x in value:
            if x is None:
                items.append("NULL")
            else:
                x = to_text(x)
                items.append('"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"')
        return "{" + ",".join(items) + "}"
    return str(value)


def row_hash(row: dict, columns: list[str], has_vector: bool) -> str:
    """What the loader writes of a row, hashed: equal hashes, equal rows."""
    payload = json.dumps([row.get(c) for c in columns] + [has_vector], default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class LoadResult:
    table: str
    loaded: int = 0  # rows now in the target as given (written, equal, or unchanged)
    written: int = 0  # rows actually inserted or changed
    unchanged: int = 0  # rows not sent: their hash equals what the last load wrote
    batches: int = 0
    retries: int = 0
    failed: list[tuple[dict, str]] = field(default_factory=list)  # (row, database error)

    def add(self, other: LoadResult) -> None:
        for name in ("loaded", "written", "unchanged", "batches", "retries"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed += other.failed


@dataclass
class _Plan:
    """How one load_rows call writes: statements built once, for the columns its rows have."""

    spec: TableSpec
    columns: list[str]  # the rows' columns, plus `embedding` where the table has one
    direct: bool  # the tenant has no row in the table yet: COPY straight in
    tenant: str | None
    defaults: dict[str, object] = field(default_factory=dict)


def _typed_rows(plan: _Plan, rows: list[dict], vectors: dict) -> list[list]:
    """Rows as lists of typed values in column order; raises Untypable for the text path."""
    spec, out = plan.spec, []
    converters = [CONVERT.get(spec.kinds[c]) for c in plan.columns]
    if any(f is None for f in converters):
        raise Untypable("a column type the binary path does not know")
    for row in rows:
        values = []
        for c, convert in zip(plan.columns, converters):
            v = vectors.get((row.get("embedding_model"), row.get("content_sha256"))) if c == "embedding" else row.get(c)
            if v is None and c in plan.defaults:
                v = plan.defaults[c]
            try:
                values.append(None if v is None else convert(v))
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise Untypable(f"{c}: {v!r}") from exc
        out.append(values)
    return out


def _cached_vectors(conn: psycopg.Connection, rows: list[dict]) -> dict:
    keys = {(r.get("embedding_model"), r.get("content_sha256")) for r in rows if r.get("content_sha256")}
    if not keys:
        return {}
    models, hashes = zip(*keys)
    found = (
        conn.cursor(binary=True)
        .execute(  # binary: vectors arrive as float32 buffers, not text to parse
            """SELECT c.model, c.content_sha256, c.embedding FROM etl.embedding_cache c
           JOIN unnest(%s::text[], %s::text[]) AS k(model, h) ON c.model = k.model AND c.content_sha256 = k.h""",
            (list(models), list(hashes)),
        )
        .fetchall()
    )
    return {(m, h): v.to_numpy() if hasattr(v, "to_numpy") else np.asarray(v, dtype=np.float32) for m, h, v in found}


def load_columns(spec: TableSpec, rows: list[dict]) -> list[str]:
    """The columns a load writes: those the rows have, the vector where the table has one, and
    `deleted_at` (NULL: a row in the sources is live, so a soft-pruned one comes back)."""
    columns = [c for c in spec.types if any(c in r for r in rows[:50]) and c not in ("embedding", "deleted_at")]
    if spec.has_embedding and "content_sha256" in columns and "embedding_model" in columns:
        columns.append("embedding")
    if "deleted_at" in spec.types:
        columns.append("deleted_at")
    return columns


def _upsert(spec: TableSpec, columns: list[str], source: sql.Composable) -> sql.Composed:
    ident = sql.Identifier
    update = [c for c in columns if c not in SKIP_UPDATE and c not in spec.key]
    if update:
        sets = [sql.SQL("{} = EXCLUDED.{}").format(ident(c), ident(c)) for c in update]
        if "updated_at" in spec.types:
            sets.append(sql.SQL("updated_at = now()"))
        on_conflict = sql.SQL("DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sets),
            sql.SQL(", ").join(sql.SQL("t.{}").format(ident(c)) for c in update),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(ident(c)) for c in update),
        )
    else:
        on_conflict = sql.SQL("DO NOTHING")
    return sql.SQL("INSERT INTO {} AS t ({}) {} ON CONFLICT ({}) {}").format(
        ident(spec.name),
        sql.SQL(", ").join(map(ident, columns)),
        source,
        sql.SQL(", ").join(map(ident, spec.key)),
        on_conflict,
    )


def _copy_typed(cur: psycopg.Cursor, plan: _Plan, values: list[list], table: str) -> None:
    cols = sql.SQL(", ").join(map(sql.Identifier, plan.columns))
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), cols)) as copy:
        copy.set_types([plan.spec.oids[c] for c in plan.columns])
        for row in values:
            copy.write_row(row)


def _copy_text(cur: psycopg.Cursor, plan: _Plan, rows: list[dict], vectors: dict, table: str) -> None:
    """The text path: all-text staging, each value cast by the database (its own messages)."""
    spec, ident = plan.spec, sql.Identifier
    stage = sql.SQL(", ").join(sql.SQL("{} text").format(ident(c)) for c in plan.columns)
    cur.execute(sql.SQL("CREATE TEMP TABLE vital_text ({}) ON COMMIT DROP").format(stage))
    cols = sql.SQL(", ").join(map(ident, plan.columns))
    with cur.copy(sql.SQL("COPY vital_text ({}) FROM STDIN (FORMAT BINARY)").format(cols)) as copy:
        copy.set_types(["text"] * len(plan.columns))
        for row in rows:
            copy.write_row(
                [
                    to_text(vectors.get((row.get("embedding_model"), row.get("content_sha256"))))
                    if c == "embedding"
                    else to_text(row.get(c))
                    for c in plan.columns
                ]
            )
    selects = [
        sql.SQL("coalesce(s.{}::{}, {})").format(ident(c), sql.SQL(spec.types[c]), sql.SQL(spec.defaults[c]))
        if c in spec.defaults
        else sql.SQL("s.{}::{}").format(ident(c), sql.SQL(spec.types[c]))
        for c in plan.columns
    ]
    cur.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM vital_text s").format(
            ident(table), cols, sql.SQL(", ").join(selects)
        )
    )
    cur.execute("DROP TABLE vital_text")


def _stage(cur: psycopg.Cursor, plan: _Plan, rows: list[dict], vectors: dict, table: str) -> None:
    """`rows` into a temporary table typed like the target: binary and typed where Python can
    type every value, else through the text path."""
    cols = sql.SQL(", ").join(map(sql.Identifier, plan.columns))
    cur.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            sql.Identifier(table), cols, sql.Identifier(plan.spec.name)
        )
    )
    if not _try_typed(cur, plan, rows, vectors, table):
        _copy_text(cur, plan, rows, vectors, table)


def _try_typed(cur: psycopg.Cursor, plan: _Plan, rows: list[dict], vectors: dict, table: str) -> bool:
    """COPY the typed rows into `table`; False (and nothing written) when a value cannot be typed
    in Python. The database's own errors propagate."""
    try:
        values = _typed_rows(plan, rows, vectors)
    except Untypable as exc:
        log.info("%s: a batch of %d rows takes the text path (%s)", plan.spec.name, len(rows), exc)
        return False
    try:
        with cur.connection.transaction():
            _copy_typed(cur, plan, values, table)
        return True
    except psycopg.Error as exc:
        if exc.sqlstate:
            raise
        log.info("%s: a batch of %d rows takes the text path (%s)", plan.spec.name, len(rows), exc)
        return False


def _record_hashes(cur: psycopg.Cursor, plan: _Plan, rows: list[dict], vectors: dict) -> None:
    """Each row's hash into etl.id_map, in the batch's transaction (so it never claims a row the
    target does not hold)."""
    if plan.tenant is None or not rows or "legacy_key" not in rows[0]:
        return
    plain = [c for c in plan.columns if c != "embedding"]
    cur.execute(
        """INSERT INTO etl.id_map (tenant_slug, entity, legacy_key, id, row_hash)
           SELECT %s, %s, k, i, h FROM unnest(%s::text[], %s::uuid[], %s::text[]) AS x(k, i, h)
           ON CONFLICT (tenant_slug, entity, legacy_key) DO UPDATE SET row_hash = EXCLUDED.row_hash
           WHERE etl.id_map.row_hash IS DISTINCT FROM EXCLUDED.row_hash""",
        (
            plan.tenant,
            plan.spec.name,
            [r["legacy_key"] for r in rows],
            [r["id"] for r in rows],
            [row_hash(r, plain, (r.get("embedding_model"), r.get("content_sha256")) in vectors) for r in rows],
        ),
    )


def _write_batch(conn: psycopg.Connection, plan: _Plan, rows: list[dict], on_batch: Callable | None) -> int:
    vectors = _cached_vectors(conn, rows) if "embedding" in plan.columns else {}
    with conn.transaction(), conn.cursor() as cur:
        if on_batch:
            on_batch(conn)
        if plan.direct and _try_typed(cur, plan, rows, vectors, plan.spec.name):
            written = len(rows)
        else:
            _stage(cur, plan, rows, vectors, "vital_stage")
            cols = sql.SQL(", ").join(map(sql.Identifier, plan.columns))
            cur.execute(_upsert(plan.spec, plan.columns, sql.SQL("SELECT {} FROM vital_stage").format(cols)))
            written = cur.rowcount
        _record_hashes(cur, plan, rows, vectors)
        return written


def _defaults(conn: psycopg.Connection, spec: TableSpec, columns: list[str]) -> dict[str, object]:
    """The values of the NOT NULL columns' defaults (now(), '{}', an enum label), evaluated once."""
    wanted = [c for c in columns if c in spec.defaults]
    if not wanted:
        return {}
    exprs = sql.SQL(", ").join(sql.SQL(spec.defaults[c]) for c in wanted)
    values = conn.execute(sql.SQL("SELECT {}").format(exprs)).fetchone()
    return {c: (json.dumps(v) if spec.kinds[c] == "json" else v) for c, v in zip(wanted, values)}


def _unchanged(
    conn: psycopg.Connection, spec: TableSpec, columns: list[str], rows: list[dict], tenant: str | None
) -> set[str]:
    """The ids of rows whose hash equals the last load's and that the target still holds."""
    if tenant is None or "legacy_key" not in columns:
        return set()
    keys = [(r.get("embedding_model"), r.get("content_sha256")) for r in rows if r.get("content_sha256")]
    cached = set()
    if keys:
        cached = {
            (m, h)
            for m, h in conn.execute(
                """SELECT model, content_sha256 FROM etl.embedding_cache
                   WHERE (model, content_sha256) IN (SELECT * FROM unnest(%s::text[], %s::text[]))""",
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
        }
    plain = [c for c in columns if c != "embedding"]
    hashes = {r["id"]: row_hash(r, plain, (r.get("embedding_model"), r.get("content_sha256")) in cached) for r in rows}
    stored = conn.execute(
        """SELECT id::text, row_hash FROM etl.id_map
           WHERE tenant_slug = %s AND entity = %s AND id = ANY(%s::uuid[]) AND row_hash IS NOT NULL""",
        (tenant, spec.name, list(hashes)),
    ).fetchall()
    same = [i for i, h in stored if hashes.get(i) == h]
    if not same:
        return set()
    visible = sql.SQL(" AND deleted_at IS NULL") if "deleted_at" in spec.types else sql.SQL("")
    present = conn.execute(
        sql.SQL("SELECT id::text FROM {} WHERE id = ANY(%s::uuid[]){}").format(sql.Identifier(spec.name), visible),
        (same,),
    ).fetchall()
    return {i for (i,) in present}


def _has_tenant_rows(conn: psycopg.Connection, spec: TableSpec, rows: list[dict]) -> bool:
    if "tenant_id" not in spec.types:
        return True
    tenants = list({str(r["tenant_id"]) for r in rows if r.get("tenant_id")})
    return conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE tenant_id = ANY(%s::uuid[]))").format(sql.Identifier(spec.name)),
        (tenants,),
    ).fetchone()[0]


def one_row_per_key(rows: list[dict], key: tuple[str, ...]) -> list[dict]:
    """One row per conflict key (the last), as a single upsert could not take two."""
    if not rows or not all(k in rows[0] for k in key):
        return rows
    seen: dict[tuple, dict] = {}
    for r in rows:
        seen[tuple(str(r.get(k)) for k in key)] = r
    return list(seen.values()) if len(seen) < len(rows) else rows


def load_rows(
    dsn: str,
    table: str,
    rows: list[dict],
    batch_size: int = 1000,
    on_batch: Callable[[psycopg.Connection], None] | None = None,
    attempts: int = 4,
    tenant: str | None = None,
) -> LoadResult:
    """Load `rows` (dicts of column -> value; unknown keys ignored) into `table`. With `tenant`
    (its slug), rows are hashed and those unchanged since the last load are not sent."""
    result = LoadResult(table)
    if not rows:
        return result
    conn_box: dict = {}

    def conn() -> psycopg.Connection:
        if conn_box.get("c") is None or conn_box["c"].closed or conn_box["c"].broken:
            conn_box["c"] = c = connect(dsn, autocommit=True, application_name="vital-etl-loader")
            if "spec" in conn_box:
                _prepare(c, conn_box["spec"])
        return conn_box["c"]

    spec = conn_box["spec"] = table_spec(conn(), table)
    _prepare(conn(), spec)
    given = len(rows)
    rows = one_row_per_key(rows, spec.key)
    columns = load_columns(spec, rows)
    plan = _Plan(spec, columns, direct=not _has_tenant_rows(conn(), spec, rows), tenant=tenant)
    plan.defaults = _defaults(conn(), spec, columns)
    unchanged = set() if plan.direct else _unchanged(conn(), spec, columns, rows, tenant)
    result.unchanged = len(unchanged)
    result.loaded = result.unchanged + given - len(rows)  # a repeated key loads once
    rows = [r for r in rows if r["id"] not in unchanged] if unchanged else rows

    def attempt(batch: list[dict]) -> int:
        for tryno in Retrying(
            stop=stop_after_attempt(attempts),
            reraise=True,
            wait=wait_exponential_jitter(multiplier=0.2, max=5),
            retry=retry_if_exception(is_transient),
        ):
            with tryno:
                if tryno.retry_state.attempt_number > 1:
                    result.retries += 1
                    log.warning(
                        "%s: retrying a batch of %d rows after a transient error (attempt %d)",
                        table,
                        len(batch),
                        tryno.retry_state.attempt_number,
                    )
                return _write_batch(conn(), plan, batch, on_batch)
        raise AssertionError("unreachable")

    def load(batch: list[dict]) -> None:
        try:
            result.written += attempt(batch)
            result.loaded += len(batch)
        except psycopg.Error as exc:
            if not is_data_error(exc):  # by SQLSTATE: 22, 23, 54, P0001 (core/retry.py)
                raise
            if plan.direct:  # e.g. a row that another run loaded meanwhile: upsert from now on
                plan.direct = False
                return load(batch)
            if len(batch) == 1:
                result.failed.append((batch[0], _reason(exc)))
                return
            mid = len(batch) // 2
            load(batch[:mid])
            load(batch[mid:])

    try:
        for start in range(0, len(rows), batch_size):
            result.batches += 1
            load(rows[start : start + batch_size])
    except psycopg.Error as exc:
        if is_transient(exc):
            raise TransientError(f"{table}: the database connection failed {attempts} times: {exc}") from None
        raise
    finally:
        if conn_box.get("c") is not None:
            conn_box["c"].close()
    return result


def _reason(exc: psycopg.Error) -> str:
    diag = exc.diag
    reason = (diag.message_primary or str(exc)).strip()
    if diag.message_detail:
        detail = diag.message_detail.strip()
        reason += f" ({detail[:200]}{'...' if len(detail) > 200 else ''})"
    return reason


def parents_first(rows: list[dict], column: str) -> list[dict]:
    """Rows ordered by depth in their hierarchy (roots first); cycles are left to the database."""
    parent = {r["id"]: r.get(column) for r in rows}

    def depth(node: str) -> int:
        seen, d = set(), 0
        while parent.get(node) and node not in seen:
            seen.add(node)
            node, d = parent[node], d + 1
        return d

    return sorted(rows, key=lambda r: depth(r["id"]))


@task(name="copy-batch", task_run_name="copy-{table}-{tenant}-{batch_no}", cache_policy=NO_CACHE, **IO_RETRIES)
def copy_batch(table: str, tenant: str, batch_no: int, rows: list[dict]) -> LoadResult:
    return load_rows(target_dsn(), table, rows, batch_size=len(rows) or 1, tenant=tenant)


def load_table(table: str, rows: list[dict], tenant: str, batch_size: int) -> LoadResult:
    """One copy-batch task per batch, submitted to the flow's task runner (threads or Dask);
    their results summed. A self-referencing table loads its batches in order, parents first."""
    total = LoadResult(table)
    if table in SELF_REFERENCES:
        rows = parents_first(rows, SELF_REFERENCES[table])
    batches = [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
    if table in SELF_REFERENCES:
        results = [copy_batch(table, tenant, n, b) for n, b in enumerate(batches, start=1)]
    else:
        futures = [copy_batch.submit(table, tenant, n, b) for n, b in enumerate(batches, start=1)]
        results = [f.result() for f in futures]
    for r in results:
        total.add(r)
    return total
