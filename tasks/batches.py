"""Batches as files: a table's rows, ready to embed and load, written as Parquet under the run's
folder (`$VITAL_HOME/runs/<run_id>/load/<table>.<n>.parquet`), and the task that embeds and
loads one of them. Tasks get a path and ids, never rows: a Dask worker reads its batch itself,
and Prefect does not walk thousands of values per task call. A run that completes removes its
folder; a run that crashes leaves it for inspection."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.connections import connect, target_dsn
from core.retry import IO_RETRIES
from core.settings import ModelSpec
from tasks.embed import EmbedStats, ensure_cached
from tasks.load import UNCHANGED, LoadResult, load_frame
from tasks.runs import quarantine, record_ids, run_folder

TEXT = "_text"  # the text a searchable row is embedded from; not a target column
STAGE = "load"


class BatchWriter:
    """A table's rows as Parquet files of at most batch_rows rows each, numbered in the order they
    are written; `paths` lists them."""

    def __init__(
        self, run_id: str, table: str, batch_rows: int, check: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    ):
        """check: marks the rows the loader need not send (tasks/load.py mark_unchanged); a batch
        of only such rows is not written (nothing in it to load), and its rows are counted in
        `skipped_rows`. Another batch is written with its marks, which the loader takes."""
        self.folder = run_folder(run_id) / STAGE
        self.table, self.batch_rows, self.paths, self.check = table, batch_rows, [], check
        self.skipped_rows = self.skipped_texts = 0  # rows not written; those of them with a text

    def write(self, rows: list[dict], texts: list[str]) -> None:
        """rows: dicts of target columns (`metadata` a dict); texts: their embedding texts (empty
        for a table without vectors)."""
        for start in range(0, len(rows), self.batch_rows):
            frame = pl.DataFrame(
                [_storable(r) for r in rows[start : start + self.batch_rows]], infer_schema_length=None
            )
            if texts:
                frame = frame.with_columns(pl.Series(TEXT, texts[start : start + self.batch_rows], dtype=pl.Utf8))
            if self.check is not None:
                frame = self.check(frame)
                if UNCHANGED in frame.columns and frame[UNCHANGED].all():
                    self.skipped_rows += frame.height
                    self.skipped_texts += frame.height if texts else 0
                    continue
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{self.table}.{len(self.paths) + 1}.parquet"
            frame.write_parquet(path)
            self.paths.append(str(path))


def _storable(row: dict) -> dict:
    meta = row.get("metadata")
    return row | {"metadata": json.dumps(meta, ensure_ascii=False)} if isinstance(meta, dict) else row


@dataclass
class BatchResult:
    """What a table's batches did: the loads' counts (`load`; its failed rows are returned as
    `refused`, quarantine entries), and the texts embedded or reused."""

    load: LoadResult
    embedded: int = 0
    reused: int = 0
    refused: list[dict] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        self.load.add(other.load)
        self.embedded += other.embedded
        self.reused += other.reused
        self.refused += other.refused


@task(
    name="embed-and-load",
    task_run_name="load-{table}-{tenant}-{batch_no}",
    cache_policy=NO_CACHE,
    **IO_RETRIES,
)
def embed_and_load(
    table: str, tenant: str, run_id: str, batch_no: int, path: str, spec: ModelSpec | None
) -> BatchResult:
    """One batch file: its missing vectors encoded into etl.embedding_cache (spec None: embedding
    deferred), its rows loaded, the rows the database refused quarantined, the legacy keys of the
    rest recorded in etl.id_map; on one connection (a new one only after it broke)."""
    from tasks.model import encode

    frame = pl.read_parquet(path)
    dsn = target_dsn()
    conn = connect(dsn, autocommit=True, application_name="vital-etl-loader")
    try:
        stats: EmbedStats | None = None
        if TEXT in frame.columns and spec is not None:
            texts, shas = frame[TEXT].to_list(), frame["content_sha256"].to_list()
            stats = ensure_cached(conn, spec, texts, shas, encode)
        result = load_frame(
            dsn, table, frame.drop(TEXT, strict=False), batch_size=frame.height or 1, tenant=tenant, conn=conn
        )
        if conn.broken or conn.closed:  # the loader went on on a new connection of its own
            conn.close()
            conn = connect(dsn, autocommit=True)
        refused = [
            {
                "entity": table,
                "source": row.get("_source"),
                "row": row.get("_row"),
                "legacy_key": row.get("legacy_key"),
                "reason": f"database refused the row: {reason}",
            }
            for row, reason in result.failed
        ]
        quarantine(
            conn,
            run_id,
            tenant,
            table,
            [(q["legacy_key"], q["reason"], row, q["source"], q["row"]) for q, (row, _) in zip(refused, result.failed)],
        )
        if "legacy_key" in frame.columns:
            failed = {q["legacy_key"] for q in refused}
            pairs = zip(frame["legacy_key"].to_list(), frame["id"].to_list())
            record_ids(conn, tenant, table, [(k, i) for k, i in pairs if k not in failed])
    finally:
        conn.close()
    return BatchResult(
        replace(result, failed=[]),  # the rows travel back as `refused` only
        embedded=stats.embedded if stats else 0,
        reused=stats.reused if stats else 0,
        refused=refused,
    )
