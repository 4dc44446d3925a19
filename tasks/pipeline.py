"""The steps of migrate-tenant that span several tasks: extract and normalize every entity;
embed, load and quarantine one tenant's slice; keep derived rows in step with the sources."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import psycopg
from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from core.catalogue import SELF_REFERENCES
from core.catalogue import junction as junction_of
from core.connections import connect, target_dsn
from core.retry import call_with_retries
from core.settings import ModelSpec, model_spec
from sources.manifest import Manifest
from tasks.batches import BatchResult, BatchWriter, embed_and_load
from tasks.chunk import chunk_documents
from tasks.embed import tenant_texts
from tasks.extract import extract
from tasks.load import LoadResult, TableSpec, mark_unchanged, parents_first, table_spec
from tasks.model import accepted_spec
from tasks.normalize import normalize
from tasks.normalize.base import Normalized
from tasks.normalize.resolve import EntitySlice, TenantSlice
from tasks.normalize.rules import Rules
from tasks.prepare import rows_for_load, with_hashes
from tasks.runs import quarantine, run_folder
from tasks.sync import count_stale, prune_chunks, prune_links, stamp_links


def extract_and_normalize(
    manifest: Manifest,
    entities: list[str],
    rules: Rules,
    labels: dict,
    batch_size: int,
    folder: str,
    keep: bool = False,
) -> tuple[dict[str, Normalized], dict[str, list[dict]]]:
    """Every wanted entity read from its sources into batch files under `<folder>/extract`, then
    normalized from them; returns (normalized, what each reader detected per entity). Each
    entity's extract and normalize are tasks of their own that pass files, not rows: under Dask
    they run on the workers, entities side by side. keep (a run that writes, whose folder lasts
    until it is done): store each normalize stage for reuse by the next run, and keep the rows'
    long texts in `<folder>/normalize` instead of in memory (tasks/normalize/spill.py)."""
    logger = get_run_logger()
    files = {e: extract.submit(manifest, e, batch_size, f"{folder}/extract") for e in entities}
    texts = f"{folder}/normalize" if keep else None
    # rules unquoted: a quote() comes to a Dask worker as a bare tuple
    runs = {e: normalize.submit(e, files[e], rules, labels.get(e), keep, texts) for e in entities}
    normalized, sources = {}, {}
    for entity in entities:
        sources[entity] = files[entity].result().sources  # first: a failed read raises its own error
        n = normalized[entity] = runs[entity].result()
        logger.info("%s: %d read, %d valid, %d rejected", entity, n.read, n.frame.height, n.rejects.height)
    return normalized, sources


def load_tenant(
    part: TenantSlice, run_id: str, batch_size: int, complete: bool, embed_now: bool = True, pruning: bool = False
) -> dict:
    """Embed and load every entity of the slice, then its junction rows, batch files through
    embed-and-load tasks (tasks/batches.py); quarantine rejects. A batch whose rows the target
    holds as they are gets no file and no task. complete: the run covers every entity of the
    manifest, so rows the sources no longer have are counted (unless pruning: the run removes
    them after the load). Junction rows this run would derive from the same sources but no
    longer does are removed and counted (tasks/sync.py). The slice's rows wait for their load
    on disk, under the run's folder, with only their keys in memory (spill.py set_aside)."""
    tenant = part.tenant
    ends = {e for name in part.junctions for e in (junction_of(name).a, junction_of(name).b)}  # origins read
    for entity, s in part.entities.items():  # decided: until they load, only the rows' keys stay in memory
        s.set_aside(run_folder(run_id) / "normalize", tuple(_ORIGIN) if entity in ends else ("id", "legacy_key"))
    # the configured backend when it passes the quality gate on this tenant's texts, else torch fp32
    spec, note = (
        accepted_spec(tenant_texts({e: _rows(s, batch_size) for e, s in part.entities.items()}))
        if embed_now
        else (model_spec(), "embedding deferred to backfill-embeddings")
    )
    get_run_logger().info("%s: %s", tenant.slug, note)
    counts: dict[str, dict] = {}
    origins: dict[str, dict[str, str | None]] = {}  # entity -> {id: source} of the rows loaded
    refused: list[dict] = []
    findings: list[str] = []
    junctions = {}
    with _Target() as db:
        specs: dict[str, TableSpec] = {}

        def unchanged(table: str, vectors: bool):
            """Marks the rows the last load left as they are (and, embedding now, whose vectors
            are cached): a batch of only such rows is neither written as a file nor given a task."""

            def check(frame: pl.DataFrame) -> pl.DataFrame:
                if table not in specs:
                    specs[table] = db(table_spec, table)
                return db(mark_unchanged, table, frame, tenant.slug, vectors, specs[table])

            return check

        for entity, s in part.entities.items():
            # one batch of dicts at a time: written as files, then loaded by tasks that read them
            tables = [entity] + (["knowledge_chunks"] if entity == "knowledge_documents" else [])
            writers = {t: BatchWriter(run_id, t, batch_size, unchanged(t, embed_now)) for t in tables}
            # id, legacy key and source of each row written: the entity's are its frame's columns
            ids = {entity: _row_origins(s.frame)} | {t: pl.DataFrame(schema=_ORIGIN) for t in tables[1:]}
            for rows in _row_batches(s, batch_size):
                made = {entity: rows}
                if entity == "knowledge_documents":
                    made["knowledge_chunks"] = chunk_documents(rows, str(tenant.id))
                for table, table_rows in made.items():
                    writers[table].write(table_rows, with_hashes(table, table_rows, spec.model_id))
                    if table != entity:
                        got = {c: [r.get(c) for r in table_rows] for c in _ORIGIN}
                        ids[table] = pl.concat([ids[table], pl.DataFrame(got, schema=_ORIGIN)])
            for table in tables:
                writer = writers[table]
                result = _load_files(table, tenant.slug, run_id, writer.paths, spec if embed_now else None)
                rejects = (
                    [
                        (q["legacy_key"], q["reason"], q["payload"], q["_source"], q["_row"])
                        for q in s.quarantined.iter_rows(named=True)
                    ]
                    if table == entity
                    else []
                )
                if rejects:
                    db(quarantine, run_id, tenant.slug, table, rejects)
                refused += result.refused
                if table in ends:
                    loaded_ok = ids[table].filter(
                        ~pl.col("legacy_key").is_in([q["legacy_key"] for q in result.refused]).fill_null(False)
                    )
                    origins[table] = dict(zip(loaded_ok["id"].to_list(), loaded_ok["_source"].to_list()))
                loaded = result.load
                counts[table] = {
                    "read": s.read if table == entity else ids[table].height,
                    "created": s.created if table == entity else 0,
                    "loaded": loaded.loaded + writer.skipped_rows,
                    "quarantined": len(rejects) + len(result.refused),
                    "skipped": s.skipped if table == entity else 0,
                    "embedded": result.embedded,
                    "reused": result.reused + (writer.skipped_texts if embed_now else 0),
                    "written": loaded.written,
                    "unchanged": loaded.unchanged + writer.skipped_rows,
                    "retries": loaded.retries,
                }
            if entity == "knowledge_documents":
                db(prune_chunks, str(tenant.id), ids[entity]["id"].to_list(), ids["knowledge_chunks"]["id"].to_list())
            if complete and not pruning:
                stale = db(count_stale, entity, str(tenant.id), ids[entity]["id"].str.join("\n").item())
                if stale:
                    findings.append(
                        f"{entity}: {stale} row(s) of {tenant.slug} in the target are no longer in the "
                        'sources; they were kept (migrate again with prune=True, or prune="soft", removes them)'
                    )
        for junction, frame in part.junctions.items():
            rows = stamp_links(junction, frame.to_dicts(), origins)
            # no row hashes here: a junction batch is compared with the target's own rows
            writer = BatchWriter(run_id, junction, batch_size, unchanged(junction, False))
            writer.write(rows, [])
            result = _load_files(junction, tenant.slug, run_id, writer.paths, None)
            removed = db(prune_links, junction, str(tenant.id), rows, origins)
            if removed:
                findings.append(
                    f"{junction}: removed {removed} link(s) that an earlier run derived from the same sources "
                    "and that the sources no longer state"
                )
            junctions[junction] = {
                "rows": result.load.loaded + writer.skipped_rows,
                "written": result.load.written,
                "quarantined": len(result.refused),
                "removed": removed,
                "retries": result.load.retries,
            }
    return {
        "entities": counts,
        "junctions": junctions,
        "refused": refused,
        "findings": findings,
        "model": spec.model_id,
        "model_note": note,
    }


_ORIGIN = {"id": pl.Utf8, "legacy_key": pl.Utf8, "_source": pl.Utf8}


def _row_origins(frame: pl.DataFrame) -> pl.DataFrame:
    """id, legacy_key and _source of each row (null where the rows have no such column)."""
    return frame.select(
        (pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c) for c, t in _ORIGIN.items()
    )


class _Target:
    """The flow's own statements on the target (pre-checks, quarantine, pruning, counts), on one
    connection: `db(fn, *args)` is fn(conn, *args), retried on a new connection while the failure
    is transient (a restarted server, a lost connection)."""

    def __init__(self) -> None:
        self._conn: psycopg.Connection | None = None

    def __call__(self, fn, *args):
        def once():
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(target_dsn(), autocommit=True)
            try:
                return fn(self._conn, *args)
            except BaseException:
                self.close()  # whatever state it was left in: the next call starts on a new one
                raise

        return call_with_retries(once)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> _Target:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _row_batches(s: EntitySlice, batch_size: int) -> Iterator[list[dict]]:
    """The entity's rows as the loader takes them, batch_size at a time; a self-referencing
    table's all at once, parents first (its batches load in that order)."""
    if s.entity in SELF_REFERENCES:
        yield parents_first(rows_for_load(s.rows), SELF_REFERENCES[s.entity])
        return
    for frame in s.batches(batch_size):
        yield rows_for_load(frame)


def _rows(s: EntitySlice, batch_size: int) -> Iterator[dict]:
    """The entity's whole rows one by one, a batch of long texts in memory at a time."""
    for frame in s.batches(batch_size):
        yield from frame.iter_rows(named=True)


def _load_files(table: str, tenant: str, run_id: str, paths: list[str], spec: ModelSpec | None) -> BatchResult:
    """Each batch file embedded and loaded by its own task: in parallel on the task runner, or
    one after the other (parents first) for a self-referencing table."""
    calls = [(table, tenant, run_id, n, path, spec) for n, path in enumerate(paths, start=1)]
    if table in SELF_REFERENCES:
        results = (embed_and_load.submit(*call).result() for call in calls)
    else:
        results = (f.result() for f in [embed_and_load.submit(*call) for call in calls])
    total = BatchResult(LoadResult(table))
    progress = (
        create_progress_artifact(0.0, description=f"{table} for {tenant}: batches loaded") if len(calls) > 1 else None
    )
    for done, r in enumerate(results, start=1):
        total.add(r)
        if progress:
            update_progress_artifact(progress, 100.0 * done / len(calls))
            get_run_logger().info("%s: %d/%d batches, %d rows loaded", table, done, len(calls), total.load.loaded)
    return total
