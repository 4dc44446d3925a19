"""Loading: binary COPY into a temporary staging table, then one INSERT ... ON CONFLICT DO
UPDATE into the target, one transaction per batch.

- Staging columns are text; the INSERT casts each to the target column's type, so a bad value
  fails inside the database with its own message.
- Unchanged rows are not touched (the update runs only WHERE the values are DISTINCT), so a
  re-run with no source change changes nothing, updated_at included.
- Searchable tables take their vector from etl.embedding_cache by (model, content_sha256).
- Errors are classified by SQLSTATE (core/retry.py). Transient ones (08 connection, 40
  serialization/deadlock, 57P01-03 shutdown) retry the batch on a new connection (tenacity).
  A batch that fails for a data reason (22, 23, 54 such as "index row size exceeds maximum",
  P0001 a trigger's RAISE EXCEPTION) is bisected, never retried, until the bad rows are
  isolated; they are returned for quarantine with the database's message, the rest loads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import sql
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from core.catalogue import SELF_REFERENCES
from core.connections import connect, target_dsn
from core.errors import TransientError
from core.retry import IO_RETRIES, is_data_error, is_transient

log = logging.getLogger(__name__)
SKIP_UPDATE = {"id", "created_at", "updated_at"}


@dataclass(frozen=True)
class TableSpec:
    """A target table as the loader needs it: column types, conflict key, vector column."""

    name: str
    types: dict[str, str]
    key: tuple[str, ...]
    has_embedding: bool
    defaults: dict[str, str]  # NOT NULL columns with a default: NULL from a source takes the default


def table_spec(conn: psycopg.Connection, table: str) -> TableSpec:
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
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
    types = dict(rows)
    defaults = dict(
        conn.execute(
            """SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a
           JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = %s::regclass AND a.attnotnull""",
            (table,),
        ).fetchall()
    )
    return TableSpec(table, types, tuple(key), "embedding" in types, defaults)


def to_text(value) -> str | None:
    """A Python value as PostgreSQL input text (the staging table is all text)."""
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
    loaded: int = 0  # rows inserted or updated, or already equal
    written: int = 0  # rows actually inserted or changed
    batches: int = 0
    retries: int = 0
    failed: list[tuple[dict, str]] = field(default_factory=list)  # (row, database error)


def _statements(spec: TableSpec, columns: list[str]) -> tuple[sql.Composed, sql.Composed, sql.Composed]:
    ident = sql.Identifier
    stage_cols = sql.SQL(", ").join(sql.SQL("{} text").format(ident(c)) for c in columns)
    create = sql.SQL("CREATE TEMP TABLE vital_stage ({}) ON COMMIT DROP").format(stage_cols)
    copy = sql.SQL("COPY vital_stage ({}) FROM STDIN (FORMAT BINARY)").format(sql.SQL(", ").join(map(ident, columns)))
    targets = list(columns)
    selects = [
        sql.SQL("coalesce(s.{}::{}, {})").format(ident(c), sql.SQL(spec.types[c]), sql.SQL(spec.defaults[c]))
        if c in spec.defaults
        else sql.SQL("s.{}::{}").format(ident(c), sql.SQL(spec.types[c]))
        for c in columns
    ]
    join = sql.SQL("")
    if spec.has_embedding and "content_sha256" in columns and "embedding_model" in columns:
        targets.append("embedding")
        selects.append(sql.SQL("c.embedding"))
        join = sql.SQL(
            " LEFT JOIN etl.embedding_cache c ON c.model = s.embedding_model AND c.content_sha256 = s.content_sha256"
        )
    update = [c for c in targets if c not in SKIP_UPDATE and c not in spec.key]
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
    insert = sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM vital_stage s{} ON CONFLICT ({}) {}").format(
        ident(spec.name),
        sql.SQL(", ").join(map(ident, targets)),
        sql.SQL(", ").join(selects),
        join,
        sql.SQL(", ").join(map(ident, spec.key)),
        on_conflict,
    )
    return create, copy, insert


def _write_batch(
    conn: psycopg.Connection, statements, columns: list[str], rows: list[dict], on_batch: Callable | None
) -> int:
    create, copy_sql, insert = statements
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(create)
        with cur.copy(copy_sql) as copy:
            copy.set_types(["text"] * len(columns))
            for row in rows:
                copy.write_row([to_text(row.get(c)) for c in columns])
        if on_batch:
            on_batch(conn)
        cur.execute(insert)
        return cur.rowcount


def load_rows(
    dsn: str,
    table: str,
    rows: list[dict],
    batch_size: int = 1000,
    on_batch: Callable[[psycopg.Connection], None] | None = None,
    attempts: int = 4,
) -> LoadResult:
    """Upsert `rows` (dicts of column -> value; unknown keys ignored) into `table`."""
    result = LoadResult(table)
    if not rows:
        return result
    conn_box: dict = {}

    def conn() -> psycopg.Connection:
        if conn_box.get("c") is None or conn_box["c"].closed or conn_box["c"].broken:
            conn_box["c"] = connect(dsn, autocommit=True, application_name="vital-etl-loader")
        return conn_box["c"]

    spec = table_spec(conn(), table)
    columns = [c for c in spec.types if any(c in r for r in rows[:50]) and c != "embedding"]
    statements = _statements(spec, columns)

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
                return _write_batch(conn(), statements, columns, batch, on_batch)
        raise AssertionError("unreachable")

    def load(batch: list[dict]) -> None:
        try:
            result.written += attempt(batch)
            result.loaded += len(batch)
        except psycopg.Error as exc:
            if not is_data_error(exc):  # by SQLSTATE: 22, 23, 54, P0001 (core/retry.py)
                raise
            if len(batch) == 1:
                diag = exc.diag
                reason = (diag.message_primary or str(exc)).strip()
                if diag.message_detail:
                    detail = diag.message_detail.strip()
                    reason += f" ({detail[:200]}{'...' if len(detail) > 200 else ''})"
                result.failed.append((batch[0], reason))
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
    return load_rows(target_dsn(), table, rows, batch_size=len(rows) or 1)


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
        total.loaded += r.loaded
        total.written += r.written
        total.batches += 1
        total.retries += r.retries
        total.failed += r.failed
    return total
