"""The legacy PostgreSQL database: a table or a query, streamed through a server-side cursor
in batches of `batch_rows` (memory holds one batch, whatever the table's size). uuid[],
text[], jsonb and vector columns arrive as JSON text, like every other source."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from core.connections import connect
from sources.files import frame_of


def read_postgres(dsn: str, sql: str, batch_rows: int, detected: dict | None = None) -> Iterator[pl.DataFrame]:
    """Stream `sql`. batch_rows trades memory for round trips: each fetch holds that many rows."""
    with connect(dsn) as conn, conn.transaction(), conn.cursor(name="vital_etl_extract") as cur:
        cur.itersize = batch_rows
        cur.execute(sql)
        columns = [d.name for d in cur.description]
        start, total = 1, 0
        while True:
            rows = cur.fetchmany(batch_rows)
            if not rows:
                break
            frame = frame_of([dict(zip(columns, r)) for r in rows], columns)
            yield frame.with_columns(pl.Series("_row", range(start, start + len(rows)), dtype=pl.Int64))
            start += len(rows)
            total += len(rows)
        if detected is not None:
            detected.update({"rows": total, "format": "postgres", "batches_of": batch_rows})
