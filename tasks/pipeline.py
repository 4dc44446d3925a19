"""The steps of migrate-tenant that span several tasks: extract and normalize every entity;
embed, load and quarantine one tenant's slice; keep derived rows in step with the sources."""

from __future__ import annotations

from prefect import get_run_logger

from core.settings import model_spec
from sources.manifest import Manifest
from tasks.chunk import chunk_documents
from tasks.embed import EmbedStats, embed_all, tenant_texts
from tasks.extract import extract
from tasks.load import load_table
from tasks.model import accepted_spec
from tasks.normalize import normalize
from tasks.normalize.base import Normalized
from tasks.normalize.resolve import TenantSlice
from tasks.normalize.rules import Rules
from tasks.prepare import rows_for_load, with_hashes
from tasks.runs import record_id_map, write_quarantine
from tasks.sync import count_stale_rows, prune_derived_links, prune_stale_chunks, stamp_links


def extract_and_normalize(
    manifest: Manifest, entities: list[str], rules: Rules, labels: dict, batch_size: int
) -> tuple[dict[str, Normalized], dict[str, list[dict]]]:
    """Every wanted entity read from its sources and normalized; returns (normalized, what each
    reader detected per entity)."""
    logger = get_run_logger()
    normalized, sources = {}, {}
    for entity in entities:
        extracted = extract(manifest, entity, batch_size)
        sources[entity] = extracted.sources
        n = normalized[entity] = normalize(entity, extracted.frame, rules, labels)
        logger.info("%s: %d read, %d valid, %d rejected", entity, n.read, n.rows.height, n.rejects.height)
    return normalized, sources


def load_tenant(
    part: TenantSlice, run_id: str, batch_size: int, complete: bool, embed_now: bool = True, pruning: bool = False
) -> dict:
    """Embed and load every entity of the slice, then its junction rows; quarantine rejects.
    complete: the run covers every entity of the manifest, so rows the sources no longer have
    are counted (unless pruning: the run removes them after the load). Junction rows this run
    would derive from the same sources but no longer does are removed and counted (tasks/sync.py)."""
    tenant = part.tenant
    # the configured backend when it passes the quality gate on this tenant's texts, else torch fp32
    spec, note = (
        accepted_spec(tenant_texts({e: s.rows.iter_rows(named=True) for e, s in part.entities.items()}))
        if embed_now
        else (model_spec(), "embedding deferred to backfill-embeddings")
    )
    get_run_logger().info("%s: %s", tenant.slug, note)
    counts: dict[str, dict] = {}
    origins: dict[str, dict[str, str | None]] = {}  # entity -> {id: source} of the rows loaded
    refused: list[dict] = []
    findings: list[str] = []
    for entity, s in part.entities.items():
        rows = rows_for_load(s.rows)
        derived = {"knowledge_chunks": chunk_documents(rows, str(tenant.id))} if entity == "knowledge_documents" else {}
        for table, table_rows in [(entity, rows), *derived.items()]:
            texts = with_hashes(table, table_rows, spec.model_id)
            hashes = [r["content_sha256"] for r in table_rows] if texts else []
            stats = embed_all(table, tenant.slug, texts, hashes, spec) if embed_now else EmbedStats()
            result = load_table(table, table_rows, tenant.slug, batch_size)
            rejects = (
                [
                    (q["legacy_key"], q["reason"], q["payload"], q["_source"], q["_row"])
                    for q in s.quarantined.iter_rows(named=True)
                ]
                if table == entity
                else []
            )
            rejects += [
                (row.get("legacy_key"), f"database refused the row: {reason}", row, row.get("_source"), row.get("_row"))
                for row, reason in result.failed
            ]
            write_quarantine(run_id, tenant.slug, table, rejects)
            refused += [
                {
                    "entity": table,
                    "source": row.get("_source"),
                    "row": row.get("_row"),
                    "legacy_key": row.get("legacy_key"),
                    "reason": f"database refused the row: {reason}",
                }
                for row, reason in result.failed
            ]
            failed_keys = {row.get("legacy_key") for row, _ in result.failed}
            origins[table] = {r["id"]: r.get("_source") for r in table_rows if r.get("legacy_key") not in failed_keys}
            record_id_map(
                tenant.slug,
                table,
                [(r["legacy_key"], r["id"]) for r in table_rows if r["legacy_key"] not in failed_keys],
            )
            read = s.read if table == entity else len(table_rows)
            counts[table] = {
                "read": read,
                "created": s.created if table == entity else 0,
                "loaded": result.loaded,
                "quarantined": len(rejects),
                "skipped": s.skipped if table == entity else 0,
                "embedded": stats.embedded,
                "reused": stats.reused,
                "written": result.written,
                "unchanged": result.unchanged,
                "retries": result.retries,
            }
        if derived:
            prune_stale_chunks(str(tenant.id), [r["id"] for r in rows], [r["id"] for r in derived["knowledge_chunks"]])
        if complete and not pruning:
            stale = count_stale_rows(entity, tenant.slug, str(tenant.id), [r["id"] for r in rows])
            if stale:
                findings.append(
                    f"{entity}: {stale} row(s) of {tenant.slug} in the target are no longer in the "
                    'sources; they were kept (migrate again with prune=True, or prune="soft", removes them)'
                )
    junctions = {}
    for junction, frame in part.junctions.items():
        rows = stamp_links(junction, frame.to_dicts(), origins)
        result = load_table(junction, rows, tenant.slug, batch_size)
        removed = prune_derived_links(junction, tenant.slug, str(tenant.id), rows, origins)
        if removed:
            findings.append(
                f"{junction}: removed {removed} link(s) that an earlier run derived from the same sources "
                "and that the sources no longer state"
            )
        write_quarantine(
            run_id,
            tenant.slug,
            junction,
            [(None, f"database refused the row: {reason}", row) for row, reason in result.failed],
        )
        junctions[junction] = {
            "rows": result.loaded,
            "written": result.written,
            "quarantined": len(result.failed),
            "removed": removed,
            "retries": result.retries,
        }
    return {
        "entities": counts,
        "junctions": junctions,
        "refused": refused,
        "findings": findings,
        "model": spec.model_id,
        "model_note": note,
    }
