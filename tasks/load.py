"""Loading: binary COPY with the target's own column types, one transaction per batch.

- The loader works on columns: `load_frame` takes a Polars frame (target columns with Polars
  dtypes, `metadata` as JSON text, extra `_`-columns kept only for failed rows); `load_rows`
  (dicts, `metadata` a dict) builds such a frame and loads it the same way.
- Each column is turned into its binary COPY values at once (uuid text to its 16 bytes, JSON text
  to jsonb's binary form, timestamps to microseconds since 2000, List(Utf8) to text[]), so nothing
  is typed cell by cell in Python or cast in SQL. A column of an unexpected dtype (e.g. Python
  objects) is typed cell by cell; a batch holding a value Python cannot type (a date in a legacy
  spelling, an array written as text) takes the text path instead: all-text staging cast by the
  database, which judges the value with its own message.
- A batch is COPYed into a typed temporary table, then inserted into the target with its vector
  joined from etl.embedding_cache by (model, content_sha256) in the database: the cache is read
  once per batch and vectors never travel to Python and back. Into a table that holds no row of
  the tenant yet the insert has no conflict handling; otherwise it is `INSERT ... ON CONFLICT DO
  UPDATE ... WHERE ... IS DISTINCT FROM`, so an unchanged row is not touched (updated_at included).
- With a tenant, each row carries a hash of the values it loads (etl.id_map.row_hash, written in
  the batch's own transaction), computed once per load over the frame's columns: a row whose hash
  is unchanged, which the target still holds, and whose vector presence in the target matches the
  cache, is not sent at all, and a batch of such rows writes nothing.
- mark_unchanged does that check before a batch is written as a file (and, for a table without
  row hashes, junctions, compares the rows with the target's own): a batch of only unchanged rows
  gets no file, and the file of one that has changed rows carries the hashes and marks, so the
  loader neither hashes nor queries again.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import psycopg
from psycopg import sql
from psycopg.adapt import Dumper, PyFormat
from psycopg.pq import Format
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from core.connections import connect
from core.errors import TransientError
from core.retry import is_data_error, is_transient

log = logging.getLogger(__name__)
SKIP_UPDATE = {"id", "created_at", "updated_at"}
POS = "__vital_pos"  # internal columns of a load: each row's position in what was given, its hash
HASH = "vital_hash"  # (also the staging table's column: no target has it)
STAGE = "vital_stage"
UNCHANGED = "vital_unchanged"  # a batch file's column: the row need not be sent (mark_unchanged)


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
INT_RANGE = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}

# -- one value at a time: for columns of an unexpected dtype (Python objects, text for a date)


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


def _numeric(v):
    if isinstance(v, bool):
        raise Untypable(v)
    return v if isinstance(v, Decimal) else Decimal(str(v))


CONVERT: dict[str, Callable] = {
    "text": _text,
    "enum": _text,
    "uuid": _uuid,
    "json": _json,
    "vector": _vector,
    "timestamptz": lambda v: _datetime(v, aware=True),
    "timestamp": lambda v: _datetime(v, aware=False),
    "date": _date,
    "numeric": _numeric,
    "int": _int,
    "float": float,
    "bool": _bool,
    "text[]": _text_list,
}
PG_EPOCH = datetime(2000, 1, 1)
PG_EPOCH_TZ = PG_EPOCH.replace(tzinfo=UTC)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
PG_EPOCH_DAYS = 10_957  # ... in Unix days
US = timedelta(microseconds=1)

# A value as COPY BINARY takes it, by kind: (the type psycopg dumps it as, the value). uuid, jsonb
# and timestamps travel as their binary form already made (bytes, int8 microseconds): the type
# named here only picks psycopg's dumper for that form; the server reads the target's type.
ENCODE_CELL: dict[str, Callable] = {
    "uuid": lambda v: _uuid(v).bytes,
    "json": lambda v: b"\x01" + _json(v).encode(),
    "timestamptz": lambda v: (_datetime(v, aware=True) - PG_EPOCH_TZ) // US,
    "timestamp": lambda v: (_datetime(v, aware=False) - PG_EPOCH) // US,
    "date": lambda v: (_date(v) - PG_EPOCH.date()).days,
}
WIRE_TYPE = {"uuid": "bytea", "json": "bytea", "timestamptz": "int8", "timestamp": "int8", "date": "int4"}
WIRE_TYPE |= {"text": "text", "enum": "text", "numeric": "numeric", "bool": "bool"}


class _Utf8Dumper(Dumper):
    """An enum label in its binary form (its text)."""

    format = Format.BINARY

    def dump(self, obj):
        return obj.encode()


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
    """How one load writes: its columns and statements, built once."""

    spec: TableSpec
    staged: list[str]  # the frame's target columns, in table order (what is COPYed)
    direct: bool  # the tenant has no row in the table yet: no conflict handling
    tenant: str | None
    hashed: bool  # row hashes are kept in etl.id_map (a tenant, and rows with id and legacy_key)
    vector: bool  # the vector is joined from etl.embedding_cache
    zone: str | None = None  # the session's TimeZone: where a zone-less time for timestamptz is read

    @property
    def columns(self) -> list[str]:
        """What the insert writes: the staged columns, the vector, deleted_at (NULL: a row in the
        sources is live, so a soft-pruned one comes back)."""
        extra = (["embedding"] if self.vector else []) + (["deleted_at"] if "deleted_at" in self.spec.types else [])
        return self.staged + extra


# -- column-wise typing: a Polars column to the values COPY BINARY takes


def _column(plan: _Plan, name: str, s: pl.Series) -> tuple[str | int, list]:
    """(the type psycopg dumps the column's values as, the values); raises Untypable."""
    kind = plan.spec.kinds[name]
    wire = WIRE_TYPE.get(kind) or plan.spec.oids[name]
    if kind == "other" or kind == "vector":
        raise Untypable(f"{name}: a column type the binary path does not know")
    dtype = s.dtype
    if s.null_count() == len(s):
        return wire, [None] * len(s)
    try:
        fast = _fast_column(plan, name, kind, s)
    except pl.exceptions.PolarsError as exc:
        raise Untypable(f"{name}: {exc}".splitlines()[0]) from exc
    if fast is not None:
        return wire, fast
    encode = ENCODE_CELL.get(kind) or CONVERT[kind]
    out = []
    for v in s.to_list():  # a dtype the column-wise path does not take (Python objects, text for a date)
        try:
            out.append(None if v is None else encode(v))
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise Untypable(f"{name} ({dtype}): {v!r}") from exc
    if kind == "int":
        _check_range(plan, name, out)
    return wire, out


def _fast_column(plan: _Plan, name: str, kind: str, s: pl.Series) -> list | None:
    """The column's values typed at once, or None where its dtype has no column-wise path."""
    dtype = s.dtype
    text = dtype in (pl.Utf8, pl.Categorical) or isinstance(dtype, pl.Enum)
    if kind in ("text", "enum"):
        if text:
            return s.cast(pl.Utf8).to_list()
        return s.cast(pl.Utf8).to_list() if dtype.is_integer() or isinstance(dtype, pl.Decimal) else None
    if kind == "uuid" and dtype == pl.Utf8:
        raw = s.str.replace_all("-", "", literal=True).str.decode("hex", strict=False)
        if (raw.is_null() & s.is_not_null()).any() or (raw.bin.size() != 16).any():
            return None  # braces, a urn: prefix or not a uuid: cell by cell (then the text path)
        return raw.to_list()
    if kind == "json" and dtype == pl.Utf8:
        return _jsonb_column(s)
    if kind in ("timestamptz", "timestamp") and isinstance(dtype, pl.Datetime):
        aware = dtype.time_zone is not None
        if kind == "timestamp" and aware:
            raise Untypable(f"{name}: a time with a zone for a column without one")
        if kind == "timestamptz" and not aware:
            if not plan.zone:
                raise Untypable(f"{name}: a zone-less time, and no session zone to read it in")
            s = s.dt.replace_time_zone(plan.zone, ambiguous="raise", non_existent="raise")
        return (s.dt.epoch("us") - PG_EPOCH_US).to_list()
    if kind == "date" and dtype == pl.Date:
        return (s.cast(pl.Int32) - PG_EPOCH_DAYS).to_list()
    if kind == "numeric" and (isinstance(dtype, pl.Decimal) or dtype.is_integer()):
        return [None if v is None else Decimal(v) for v in s.to_list()]
    if kind == "numeric" and dtype.is_float():
        return [None if v is None else Decimal(repr(v)) for v in s.to_list()]
    if kind == "int" and dtype.is_integer():
        out = s.to_list()
        _check_range(plan, name, [s.min(), s.max()])
        return out
    if kind == "int" and dtype.is_float():
        if not (s.is_null() | (s == s.floor())).all():
            raise Untypable(f"{name}: a fraction for an integer column")
        _check_range(plan, name, [s.min(), s.max()])
        return [None if v is None else int(v) for v in s.to_list()]
    if kind == "float" and (dtype.is_float() or dtype.is_integer()):
        return s.cast(pl.Float64).to_list()
    if kind == "bool" and dtype == pl.Boolean:
        return s.to_list()
    if kind == "text[]" and isinstance(dtype, pl.List) and (dtype.inner == pl.Utf8 or dtype.inner.is_integer()):
        return s.cast(pl.List(pl.Utf8)).to_list()
    return None


def _jsonb_column(s: pl.Series) -> list:
    """JSON text as jsonb's binary form (version 1, then the text), without decoding it."""
    return pl.select(pl.when(s.is_not_null()).then(pl.lit("\x01") + s).cast(pl.Binary)).to_series().to_list()


def _check_range(plan: _Plan, name: str, values: list) -> None:
    limit = INT_RANGE.get(plan.spec.types[name])
    if limit and any(v is not None and not -limit <= v < limit for v in values):
        raise Untypable(f"{name}: out of the range of {plan.spec.types[name]}")


def _typed(plan: _Plan, batch: pl.DataFrame) -> tuple[list, list[list]]:
    """The batch's staged columns (and hashes) as COPY BINARY takes them; raises Untypable."""
    types, columns = [], []
    for name in plan.staged:
        wire, values = _column(plan, name, batch[name])
        types.append(wire)
        columns.append(values)
    types.append("text")
    columns.append(batch[HASH].to_list() if HASH in batch.columns else [None] * batch.height)
    return types, columns


@dataclass
class _Batch:
    """A batch ready to write: its rows (with their hashes) and their COPY values, or why
    Python could not type them (then the batch takes the text path)."""

    frame: pl.DataFrame
    typed: tuple[list, list[list]] | Untypable


def _prepare_batch(plan: _Plan, frame: pl.DataFrame) -> _Batch:
    """Python's share of a batch (hashes, typing): done while the database writes the one before."""
    if plan.hashed and HASH not in frame.columns:
        frame = frame.with_columns(pl.Series(HASH, frame_hashes(frame, plan.staged), dtype=pl.Utf8))
    try:
        return _Batch(frame, _typed(plan, frame))
    except Untypable as exc:
        return _Batch(frame, exc)


# -- row hashes: one pass over the frame's columns


def _canonical(s: pl.Series) -> pl.Series:
    """A column as text that tells its values apart: the same values give the same text in any
    process (no seeded hashing, nothing that depends on Python's repr of an object)."""
    dtype = s.dtype
    if dtype in (pl.Utf8, pl.Categorical) or isinstance(dtype, pl.Enum):
        return s.cast(pl.Utf8)
    if dtype.is_integer() or dtype.is_float() or dtype == pl.Boolean or isinstance(dtype, pl.Decimal):
        return s.cast(pl.Utf8)
    if isinstance(dtype, pl.Datetime):
        return s.dt.epoch("us").cast(pl.Utf8) + ("Z" if dtype.time_zone else "")
    if dtype == pl.Date:
        return s.cast(pl.Int32).cast(pl.Utf8)
    if dtype == pl.Binary:
        return s.bin.encode("hex")
    if isinstance(dtype, pl.List) and (dtype.inner == pl.Utf8 or dtype.inner.is_integer()):
        items = s.cast(pl.List(pl.Utf8)).list.eval(_framed(pl.element()))
        return s.list.len().cast(pl.Utf8) + "[" + items.list.join("")
    return pl.Series(
        [None if v is None else json.dumps(v, ensure_ascii=False, default=str, sort_keys=True) for v in s.to_list()],
        dtype=pl.Utf8,
    )


def _framed(e: pl.Expr) -> pl.Expr:
    """A value as `<bytes>:<value>`, NULL as `~`: concatenated, they cannot run into each other."""
    return pl.when(e.is_null()).then(pl.lit("~")).otherwise(e.str.len_bytes().cast(pl.Utf8) + ":" + e)


def frame_hashes(frame: pl.DataFrame, columns: list[str]) -> list[str]:
    """Each row's hash over `columns` (sha256, hex): equal hashes, equal values. The columns'
    names are hashed too, so a load that writes other columns does not match."""
    head = json.dumps(columns).encode()
    if not columns:
        return [hashlib.sha256(head).hexdigest()] * frame.height
    canonical = pl.DataFrame([_canonical(frame[c]).alias(c) for c in columns])
    rows = canonical.select(pl.concat_str([_framed(pl.col(c)) for c in columns])).to_series().to_list()
    return [hashlib.sha256(head + r.encode()).hexdigest() for r in rows]


# -- statements


def load_columns(spec: TableSpec, rows: list[dict]) -> list[str]:
    """The columns a load of `rows` (dicts) writes: those the rows have, the vector where the table
    has one, and `deleted_at` (NULL: a row in the sources is live, so a soft-pruned one comes back)."""
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


def _source(plan: _Plan, position: bool = False) -> sql.Composed:
    """The staged rows as the target takes them: a NOT NULL column's default for NULL, the vector
    from etl.embedding_cache (read here, once per batch, in the database), deleted_at NULL.
    position: also the staging table's text column (where _same_in_target keeps row positions)."""
    spec, ident = plan.spec, sql.Identifier
    items = [
        sql.SQL("coalesce(s.{}, {}) AS {}").format(ident(c), sql.SQL(spec.defaults[c]), ident(c))
        if c in spec.defaults
        else sql.SQL("s.{}").format(ident(c))
        for c in plan.staged
    ]
    join = sql.SQL("")
    if plan.vector:
        items.append(sql.SQL("c.embedding"))
        join = sql.SQL(
            " LEFT JOIN etl.embedding_cache c ON c.model = s.embedding_model AND c.content_sha256 = s.content_sha256"
        )
    if "deleted_at" in spec.types:
        items.append(sql.SQL("NULL::{} AS deleted_at").format(sql.SQL(spec.types["deleted_at"])))
    if position:
        items.append(sql.SQL("s.{}").format(ident(HASH)))
    return sql.SQL("SELECT {} FROM {} s{}").format(sql.SQL(", ").join(items), ident(STAGE), join)


def _insert(plan: _Plan) -> sql.Composed:
    if plan.direct:
        return sql.SQL("INSERT INTO {} ({}) {}").format(
            sql.Identifier(plan.spec.name), sql.SQL(", ").join(map(sql.Identifier, plan.columns)), _source(plan)
        )
    return _upsert(plan.spec, plan.columns, _source(plan))


RECORD_HASHES = sql.SQL(
    """INSERT INTO etl.id_map (tenant_slug, entity, legacy_key, id, row_hash)
       SELECT %s, %s, legacy_key, id, {hash} FROM {stage}
       ON CONFLICT (tenant_slug, entity, legacy_key) DO UPDATE SET row_hash = EXCLUDED.row_hash
       WHERE etl.id_map.row_hash IS DISTINCT FROM EXCLUDED.row_hash"""
).format(hash=sql.Identifier(HASH), stage=sql.Identifier(STAGE))


# -- writing one batch


def _copy_typed(cur: psycopg.Cursor, plan: _Plan, types: list, columns: list[list]) -> None:
    cols = sql.SQL(", ").join(map(sql.Identifier, [*plan.staged, HASH]))
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(STAGE), cols)) as copy:
        copy.set_types(types)
        write = copy.write_row
        for row in zip(*columns):
            write(row)


def _text_column(plan: _Plan, name: str, s: pl.Series) -> list:
    if s.dtype == pl.Utf8:
        return s.to_list()
    return [to_text(v) for v in s.to_list()]


def _copy_text(cur: psycopg.Cursor, plan: _Plan, batch: pl.DataFrame) -> None:
    """The text path: all-text staging, each value cast by the database (its own messages)."""
    spec, ident = plan.spec, sql.Identifier
    names = [*plan.staged, HASH]
    stage = sql.SQL(", ").join(sql.SQL("{} text").format(ident(c)) for c in names)
    cur.execute(sql.SQL("CREATE TEMP TABLE vital_text ({}) ON COMMIT DROP").format(stage))
    columns = [_text_column(plan, c, batch[c]) for c in plan.staged]
    columns.append(batch[HASH].to_list() if HASH in batch.columns else [None] * batch.height)
    with cur.copy(
        sql.SQL("COPY vital_text ({}) FROM STDIN (FORMAT BINARY)").format(sql.SQL(", ").join(map(ident, names)))
    ) as copy:
        copy.set_types(["text"] * len(names))
        for row in zip(*columns):
            copy.write_row(row)
    casts = [sql.SQL("s.{}::{}").format(ident(c), sql.SQL(spec.types[c])) for c in plan.staged]
    cur.execute(
        sql.SQL("INSERT INTO {} SELECT {}, s.{} FROM vital_text s").format(
            ident(STAGE), sql.SQL(", ").join(casts), ident(HASH)
        )
    )
    cur.execute("DROP TABLE vital_text")


def _stage(cur: psycopg.Cursor, plan: _Plan, batch: _Batch) -> None:
    """`batch` into a temporary table typed like the target: binary and typed where Python can
    type every value, else through the text path."""
    cols = sql.SQL(", ").join(map(sql.Identifier, plan.staged))
    cur.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {}, NULL::text AS {} FROM {} WITH NO DATA").format(
            sql.Identifier(STAGE), cols, sql.Identifier(HASH), sql.Identifier(plan.spec.name)
        )
    )
    if not _try_typed(cur, plan, batch):
        _copy_text(cur, plan, batch.frame)


def _try_typed(cur: psycopg.Cursor, plan: _Plan, batch: _Batch) -> bool:
    """COPY the typed batch into the staging table; False (and nothing written) when a value
    cannot be typed in Python. The database's own errors propagate."""
    if isinstance(batch.typed, Untypable):
        log.info("%s: a batch of %d rows takes the text path (%s)", plan.spec.name, batch.frame.height, batch.typed)
        return False
    types, columns = batch.typed
    try:
        with cur.connection.transaction():
            _copy_typed(cur, plan, types, columns)
        return True
    except psycopg.Error as exc:
        if exc.sqlstate:
            raise
        log.info("%s: a batch of %d rows takes the text path (%s)", plan.spec.name, batch.frame.height, exc)
        return False


def _write_batch(conn: psycopg.Connection, plan: _Plan, batch: _Batch, on_batch: Callable | None) -> int:
    with conn.transaction(), conn.cursor() as cur:
        if on_batch:
            on_batch(conn)
        _stage(cur, plan, batch)
        cur.execute(_insert(plan))
        written = cur.rowcount
        if plan.hashed:  # in the batch's transaction: a hash never claims a row the target does not hold
            cur.execute(RECORD_HASHES, (plan.tenant, plan.spec.name))
        return written


# -- what a load sends


UUID_RE = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"


def _as_text(s: pl.Series) -> pl.Series:
    if s.dtype == pl.Object:
        return pl.Series(s.name, [None if v is None else str(v) for v in s.to_list()], dtype=pl.Utf8)
    return s.cast(pl.Utf8)


def _array(s: pl.Series) -> str:
    """A column as a PostgreSQL array literal (one parameter, however many values)."""
    quoted = pl.lit('"') + s.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True) + '"'
    return "{" + pl.select(pl.when(s.is_null()).then(pl.lit("NULL")).otherwise(quoted).str.join(",")).item() + "}"


def _unchanged(conn: psycopg.Connection, plan: _Plan, frame: pl.DataFrame, cached: bool = False) -> set[int]:
    """The positions of rows whose hash equals the last load's, that the target still holds, and
    whose vector there matches the cache (one held there, or none). cached: and whose vector is
    in the cache (nothing for the embed step to do)."""
    ids = _as_text(frame["id"])
    ok = ids.str.contains(UUID_RE).fill_null(False)  # a malformed id is sent, and refused there
    if not ok.any():
        return set()
    part = frame.filter(ok)
    args = [_array(ids.filter(ok)), _array(part[HASH]), _array(part[POS].cast(pl.Utf8))]
    unnest = sql.SQL("unnest(%s::uuid[], %s::text[], %s::bigint[]")
    where = sql.SQL("")
    if plan.vector:
        args += [_array(_as_text(part["embedding_model"])), _array(_as_text(part["content_sha256"]))]
        unnest += sql.SQL(", %s::text[], %s::text[]")
        where = sql.SQL(
            """ WHERE (t.embedding IS NOT NULL) = EXISTS (SELECT FROM etl.embedding_cache c
                WHERE c.model = k.model AND c.content_sha256 = k.sha)"""
        )
        if cached:
            where += sql.SQL(" AND t.embedding IS NOT NULL")
    visible = sql.SQL(" AND t.deleted_at IS NULL") if "deleted_at" in plan.spec.types else sql.SQL("")
    query = sql.SQL(
        """SELECT k.pos FROM {}) AS k(id, h, pos{})
           JOIN etl.id_map m ON m.id = k.id AND m.tenant_slug = %s AND m.entity = %s AND m.row_hash = k.h
           JOIN {} t ON t.id = k.id{}{}"""
    ).format(
        unnest,
        sql.SQL(", model, sha") if plan.vector else sql.SQL(""),
        sql.Identifier(plan.spec.name),
        visible,
        where,
    )
    return {p for (p,) in conn.execute(query, (*args, plan.tenant, plan.spec.name))}


def _has_tenant_rows(conn: psycopg.Connection, spec: TableSpec, frame: pl.DataFrame) -> bool:
    if "tenant_id" not in spec.types:
        return True
    if "tenant_id" not in frame.columns:
        return False  # no tenant to look for
    tenants = _as_text(frame["tenant_id"]).unique().drop_nulls()
    if not tenants.str.contains(UUID_RE).all():
        return True  # malformed tenant ids: upsert, and let the database judge them
    return conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE tenant_id = ANY(%s::uuid[]))").format(sql.Identifier(spec.name)),
        (_array(tenants),),
    ).fetchone()[0]


def one_row_per_key(rows: list[dict], key: tuple[str, ...]) -> list[dict]:
    """One row per conflict key (the last), as a single upsert could not take two."""
    if not rows or not all(k in rows[0] for k in key):
        return rows
    seen: dict[tuple, dict] = {}
    for r in rows:
        seen[tuple(str(r.get(k)) for k in key)] = r
    return list(seen.values()) if len(seen) < len(rows) else rows


def _one_row_per_key(frame: pl.DataFrame, key: tuple[str, ...]) -> pl.DataFrame:
    if not all(k in frame.columns for k in key) or any(frame[k].dtype == pl.Object for k in key):
        return frame
    out = frame.unique(subset=list(key), keep="last", maintain_order=True)
    return out if out.height < frame.height else frame


def _plan(conn: psycopg.Connection, spec: TableSpec, frame: pl.DataFrame, tenant: str | None) -> _Plan:
    staged = [c for c in spec.types if c in frame.columns and c not in ("embedding", "deleted_at")]
    vector = spec.has_embedding and "content_sha256" in staged and "embedding_model" in staged
    hashed = tenant is not None and "legacy_key" in staged and "id" in staged
    zone = conn.execute("SHOW TimeZone").fetchone()[0]
    return _Plan(spec, staged, not _has_tenant_rows(conn, spec, frame), tenant, hashed, vector, zone)


def mark_unchanged(
    conn: psycopg.Connection,
    table: str,
    frame: pl.DataFrame,
    tenant: str,
    vectors: bool,
    spec: TableSpec | None = None,
) -> pl.DataFrame:
    """The frame with what load_frame would otherwise work out itself, found once, before the
    batch is written: each row's hash (HASH, where rows are hashed) and UNCHANGED, True where the
    loader need not send the row. With row hashes, that is the loader's own check (hash, presence,
    vector); without (junction tables), the target holds the row with the values the upsert would
    write. vectors: the run embeds, so the row's vector must also be in etl.embedding_cache.
    The frame as given where there is nothing to compare with (no row of the tenant in the table
    yet): the loader decides then. A batch whose rows are all UNCHANGED need not be loaded."""
    spec = spec or table_spec(conn, table)
    given = frame.with_row_index(POS)
    plan = _plan(conn, spec, given, tenant)
    if frame.height == 0 or plan.direct:
        return frame
    if plan.hashed:
        given = given.with_columns(pl.Series(HASH, frame_hashes(given, plan.staged), dtype=pl.Utf8))
        same = _unchanged(conn, plan, _one_row_per_key(given, spec.key), cached=vectors)
    elif spec.key and all(k in plan.staged for k in spec.key):
        same = _same_in_target(conn, plan, _one_row_per_key(given, spec.key))
    else:
        return frame
    marks = given[POS].is_in(list(same)).alias(UNCHANGED)
    return given.with_columns(marks).drop(POS)


def _same_in_target(conn: psycopg.Connection, plan: _Plan, frame: pl.DataFrame) -> set[int]:
    """The positions of rows the target holds as the upsert would leave them: a row with the same
    key whose other columns are not distinct from what the upsert would write. The rows are staged
    as a load stages them (the staging table's text column carries each row's position), in a
    transaction rolled back at the end. A value the database refuses: none known unchanged."""
    batch = _prepare_batch(plan, frame.with_columns(pl.col(POS).cast(pl.Utf8).alias(HASH)))
    ident = sql.Identifier
    update = [c for c in plan.columns if c not in SKIP_UPDATE and c not in plan.spec.key]
    on = sql.SQL(" AND ").join(sql.SQL("t.{} = s.{}").format(ident(k), ident(k)) for k in plan.spec.key)
    same = sql.SQL("")
    if update:
        same = sql.SQL(" WHERE ({}) IS NOT DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("t.{}").format(ident(c)) for c in update),
            sql.SQL(", ").join(sql.SQL("s.{}").format(ident(c)) for c in update),
        )
    query = sql.SQL("SELECT s.{}::bigint FROM ({}) s JOIN {} t ON {}{}").format(
        ident(HASH), _source(plan, position=True), ident(plan.spec.name), on, same
    )
    try:
        with conn.transaction(force_rollback=True), conn.cursor() as cur:
            _stage(cur, plan, batch)
            return {p for (p,) in cur.execute(query)}
    except psycopg.Error as exc:
        if is_data_error(exc):
            return set()
        raise


# -- the entry points


def load_frame(
    dsn: str,
    table: str,
    frame: pl.DataFrame,
    batch_size: int = 1000,
    tenant: str | None = None,
    on_batch: Callable[[psycopg.Connection], None] | None = None,
    attempts: int = 4,
    conn: psycopg.Connection | None = None,
) -> LoadResult:
    """Load `frame` into `table`: its target columns with Polars dtypes (`metadata` JSON text);
    other columns are ignored, and those starting with `_` (`_source`, `_row`, ...) come back
    with a failed row. With `tenant` (its slug), rows are hashed and those unchanged since the
    last load are not sent; a frame that mark_unchanged has marked (HASH, UNCHANGED columns) is
    taken as marked. conn: a connection to load on (left open; one that breaks is replaced by
    the loader's own)."""
    if frame.height == 0:
        return LoadResult(table)
    given = frame.with_row_index(POS)

    def prepare(spec: TableSpec) -> pl.DataFrame:
        return _one_row_per_key(given, spec.key)

    def row_of(pos: int) -> dict:
        row = given.row(pos, named=True)
        for internal in (POS, HASH, UNCHANGED):
            row.pop(internal, None)
        return row

    return _load(dsn, table, prepare, frame.height, row_of, batch_size, tenant, on_batch, attempts, conn)


def load_rows(
    dsn: str,
    table: str,
    rows: list[dict],
    batch_size: int = 1000,
    on_batch: Callable[[psycopg.Connection], None] | None = None,
    attempts: int = 4,
    tenant: str | None = None,
) -> LoadResult:
    """Load `rows` (dicts of column -> value, `metadata` a dict; unknown keys ignored) into
    `table`, as load_frame does: the rows become a frame, typed by the target's columns. A failed
    row comes back as the dict that was given."""
    if not rows:
        return LoadResult(table)
    kept: list[dict] = []

    def prepare(spec: TableSpec) -> pl.DataFrame:
        kept[:] = one_row_per_key(rows, spec.key)
        present = set().union(*kept)
        columns = {
            c: _series(c, [r.get(c) for r in kept], spec.kinds[c])
            for c in spec.types
            if c in present and c not in ("embedding", "deleted_at")
        }
        return pl.DataFrame(columns, height=len(kept)).with_row_index(POS)

    return _load(dsn, table, prepare, len(rows), kept.__getitem__, batch_size, tenant, on_batch, attempts)


def _series(name: str, values: list, kind: str) -> pl.Series:
    """A column of Python values: a Polars dtype where they have one, else Python objects
    (typed one by one when loaded)."""
    if kind == "json":
        values = [None if v is None else _json(v) for v in values]
    elif kind == "uuid":
        values = [str(v) if isinstance(v, uuid.UUID) else v for v in values]
    try:
        return pl.Series(name, values, strict=True)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        return pl.Series(name, values, dtype=pl.Object)


def _load(
    dsn: str,
    table: str,
    prepare: Callable[[TableSpec], pl.DataFrame],
    given: int,
    row_of: Callable[[int], dict],
    batch_size: int,
    tenant: str | None,
    on_batch: Callable | None,
    attempts: int,
    lent: psycopg.Connection | None = None,
) -> LoadResult:
    result = LoadResult(table)
    conn_box: dict = {}

    def binary_bytes(c: psycopg.Connection) -> psycopg.Connection:
        # bytes made here (uuid, jsonb) by oid: psycopg's own bytes dumper (C), not the DB-API one
        c.adapters.register_dumper(bytes, c.adapters.get_dumper(bytes, PyFormat.BINARY))
        return c

    if lent is not None and not (lent.closed or lent.broken):
        conn_box["c"] = binary_bytes(lent)

    def conn() -> psycopg.Connection:
        if conn_box.get("c") is None or conn_box["c"].closed or conn_box["c"].broken:
            conn_box["c"] = binary_bytes(connect(dsn, autocommit=True, application_name="vital-etl-loader"))
        return conn_box["c"]

    def close() -> None:
        if conn_box.get("c") is not None and conn_box["c"] is not lent:
            conn_box["c"].close()

    try:
        spec = table_spec(conn(), table)
        frame = prepare(spec)
        plan = _plan(conn(), spec, frame, tenant)
        unchanged: set[int] = set()  # none while the tenant has no row in the table, whatever a mark says
        if not plan.direct and UNCHANGED in frame.columns:  # marked by mark_unchanged before the file was written
            unchanged = set(frame.filter(pl.col(UNCHANGED))[POS].to_list())
        elif not plan.direct and plan.hashed:  # hashed once, here, to find the unchanged rows
            frame = frame.with_columns(pl.Series(HASH, frame_hashes(frame, plan.staged), dtype=pl.Utf8))
            unchanged = _unchanged(conn(), plan, frame)
        result.unchanged = len(unchanged)
        result.loaded = result.unchanged + given - frame.height  # a repeated key loads once
        if unchanged:
            frame = frame.filter(~pl.col(POS).is_in(list(unchanged)))
    except BaseException:
        close()
        raise

    def attempt(batch: _Batch) -> int:
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
                        batch.frame.height,
                        tryno.retry_state.attempt_number,
                    )
                return _write_batch(conn(), plan, batch, on_batch)
        raise AssertionError("unreachable")

    def load(batch: _Batch) -> None:
        rows = batch.frame
        try:
            result.written += attempt(batch)
            result.loaded += rows.height
        except psycopg.Error as exc:
            if not is_data_error(exc):  # by SQLSTATE: 22, 23, 54, P0001 (core/retry.py)
                raise
            if plan.direct:  # e.g. a row that another run loaded meanwhile: upsert from now on
                plan.direct = False
                return load(batch)
            if rows.height == 1:
                result.failed.append((row_of(rows[POS][0]), _reason(exc)))
                return
            mid = rows.height // 2
            load(_prepare_batch(plan, rows[:mid]))
            load(_prepare_batch(plan, rows[mid:]))

    starts = range(0, frame.height, batch_size)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="vital-load-prepare") as ahead:
            # batch n+1 is hashed and typed while the database writes batch n (psycopg waits for
            # the server without the GIL)
            upcoming = [ahead.submit(_prepare_batch, plan, frame[s : s + batch_size]) for s in starts[:1]]
            for n in range(len(starts)):
                batch = upcoming.pop().result()
                if n + 1 < len(starts):
                    upcoming.append(
                        ahead.submit(_prepare_batch, plan, frame[starts[n + 1] : starts[n + 1] + batch_size])
                    )
                result.batches += 1
                load(batch)
    except psycopg.Error as exc:
        if is_transient(exc):
            raise TransientError(f"{table}: the database connection failed {attempts} times: {exc}") from None
        raise
    finally:
        close()
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
