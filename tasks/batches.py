"""Batches as files: a table's rows, ready to embed and load, written as Parquet under the run's
folder (`$VITAL_HOME/runs/<run_id>/load/<table>.<n>.parquet`), and the task that embeds and
loads one of them. Tasks get a path and ids, never rows: a Dask worker reads its batch itself,
and Prefect does not walk thousands of values per task call. A run that completes removes its
folder; a run that crashes leaves it for inspection."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.connections import connect, target_dsn
from core.retry import IO_RETRIES
from core.settings import ModelSpec, vital_home
from tasks.embed import EmbedStats, ensure_cached
from tasks.load import load_frame
from tasks.runs import quarantine, record_ids

TEXT = "_text"  # the text a searchable row is embedded from; not a target column
STAGE = "load"


def run_folder(run_id: str) -> Path:
    return vital_home() / "runs" / run_id


class BatchWriter:
    """A table's rows as Parquet files of at most batch_rows rows each, numbered in the order they
    are written; `paths` lists them."""

    def __init__(self, run_id: str, table: str, batch_rows: int, skip: Callable[[pl.DataFrame], bool] | None = None):
        """skip: a batch for which it says True is not written (nothing in it to load); its rows
        are counted in `skipped_rows`."""
        self.folder = run_folder(run_id) / STAGE
        self.table, self.batch_rows, self.paths, self.skip = table, batch_rows, [], skip
        self.skipped_rows = self.skipped_texts = 0  # rows not written; those of them with a text

    def write(self, rows: list[dict], texts: list[str]) -> None:
        """rows: dicts of target columns (`metadata` a dict); texts: their embedding texts (empty
        for a table without vectors)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(rows), self.batch_rows):
            frame = pl.DataFrame(
                [_storable(r) for r in rows[start : start + self.batch_rows]], infer_schema_length=None
            )
            if self.skip is not None and self.skip(frame):
                self.skipped_rows += frame.height
                self.skipped_texts += frame.height if texts else 0
                continue
            if texts:
                frame = frame.with_columns(pl.Series(TEXT, texts[start : start + self.batch_rows], dtype=pl.Utf8))
            path = self.folder / f"{self.table}.{len(self.paths) + 1}.parquet"
            frame.write_parquet(path)
            self.paths.append(str(path))


def _storable(row: dict) -> dict:
    meta = row.get("metadata")
    return row | {"metadata": json.dumps(meta, ensure_ascii=False)} if isinstance(meta, dict) else row


def remove_run_folder(run_id: str) -> None:
    shutil.rmtree(run_folder(run_id), ignore_errors=True)


@dataclass
class BatchResult:
    """What one batch did; `refused` are the rows the database refused, as quarantine entries."""

    table: str
    loaded: int = 0
    written: int = 0
    unchanged: int = 0
    retries: int = 0
    embedded: int = 0
    reused: int = 0
    refused: list[dict] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        for name in ("loaded", "written", "unchanged", "retries", "embedded", "reused"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
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
    rest recorded in etl.id_map."""
    from tasks.model import encode

    frame = pl.read_parquet(path)
    out = BatchResult(table)
    dsn = target_dsn()
    if TEXT in frame.columns and spec is not None:
        with connect(dsn, autocommit=True) as conn:
            stats: EmbedStats = ensure_cached(
                conn, spec, frame[TEXT].to_list(), frame["content_sha256"].to_list(), encode
            )
        out.embedded, out.reused = stats.embedded, stats.reused
    result = load_frame(dsn, table, frame.drop(TEXT, strict=False), batch_size=frame.height or 1, tenant=tenant)
    out.loaded, out.written, out.unchanged, out.retries = (
        result.loaded,
        result.written,
        result.unchanged,
        result.retries,
    )
    out.refused = [
        {
            "entity": table,
            "source": row.get("_source"),
            "row": row.get("_row"),
            "legacy_key": row.get("legacy_key"),
            "reason": f"database refused the row: {reason}",
        }
        for row, reason in result.failed
    ]
    with connect(dsn, autocommit=True) as conn:
        quarantine(
            conn,
            run_id,
            tenant,
            table,
            [
                (q["legacy_key"], q["reason"], row, q["source"], q["row"])
                for q, (row, _) in zip(out.refused, result.failed)
            ],
        )
        if "legacy_key" in frame.columns:
            failed = {q["legacy_key"] for q in out.refused}
            pairs = zip(frame["legacy_key"].to_list(), frame["id"].to_list())
            record_ids(conn, tenant, table, [(k, i) for k, i in pairs if k not in failed])
    return out
