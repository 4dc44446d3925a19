"""migrate-tenant: one tenant's catalogue from the legacy sources into the target."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from sources.manifest import DEFAULT_MANIFEST, Manifest, check_sources, load_manifest
from tasks import runs, sync
from tasks.chunk import chunk_documents
from tasks.db import connect, target_dsn
from tasks.embed import SEARCHABLE, EmbedStats, ensure_cached
from tasks.errors import ConfigError
from tasks.extract import DEFAULT_BATCH_ROWS, Extracted, extract_entity, read_labels
from tasks.links import link_by_similarity, load_link_rules
from tasks.load import SELF_REFERENCES, LoadResult, build_vector_indexes, load_rows, parents_first
from tasks.normalize import ENTITIES
from tasks.normalize.base import Normalized, normalize_frame
from tasks.normalize.resolve import TenantSlice, slice_tenant
from tasks.normalize.rules import Rules, load_rules
from tasks.prepare import rows_for_load, with_hashes
from tasks.report import migration_report_markdown, publish_markdown, publish_table
from tasks.retry import retry_transient
from tasks.settings import model_spec
from tasks.runner import task_runner
from tasks.summary import assert_json, reconciles, sum_summaries, tenant_summary
from tasks.verify import verify

IO_RETRIES = dict(retries=3, retry_delay_seconds=[2, 8, 30], retry_jitter_factor=0.5,
                  retry_condition_fn=retry_transient)


@task(name="load-manifest-and-rules", cache_policy=NO_CACHE)
def load_inputs(manifest: str | None, tenant: str, entities: list[str] | None) -> tuple[Manifest, Rules, list[str]]:
    """Everything checked before any row is read: manifest, rules, tenant, entity names, sources."""
    m = load_manifest(manifest or DEFAULT_MANIFEST)
    rules = load_rules(tenants_file=m.tenants_file)
    rules.tenants.by_slug(tenant)
    wanted = list(entities or m.entities)
    unknown = [e for e in wanted if e not in ENTITIES]
    if unknown:
        raise ConfigError(f"unknown entity {unknown[0]!r} in entities (known: {', '.join(ENTITIES)})")
    missing = [e for e in wanted if e not in m.entities]
    if missing:
        raise ConfigError(f"{m.path}: has no sources for {', '.join(missing)}")
    check_sources(m, {t.slug for t in rules.tenants.tenants})
    return m, rules, [e for e in ENTITIES if e in wanted]


@task(name="read-tenant-labels", cache_policy=NO_CACHE, **IO_RETRIES)
def read_tenant_labels(manifest: Manifest) -> dict[str, dict[str, list[str]]]:
    return {entity: read_labels(spec, manifest) for entity, spec in manifest.tenant_labels.items()}


@task(name="extract", task_run_name="extract-{entity}", cache_policy=NO_CACHE, **IO_RETRIES)
def extract(manifest: Manifest, entity: str, batch_size: int) -> Extracted:
    return extract_entity(manifest, entity, batch_size)


@task(name="normalize", task_run_name="normalize-{entity}", cache_policy=NO_CACHE)
def normalize(entity: str, extracted: Extracted, rules: Rules, labels: dict) -> Normalized:
    return normalize_frame(entity, extracted.frame, rules, ENTITIES[entity], labels=labels.get(entity))


@task(name="start-run", cache_policy=NO_CACHE, **IO_RETRIES)
def start_run(tenant: str, parameters: dict) -> str:
    with connect(target_dsn(), autocommit=True) as conn:
        return runs.start_run(conn, "migrate-tenant", tenant, parameters)


@task(name="embed", task_run_name="embed-{entity}-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def embed(entity: str, tenant: str, texts: list[str], hashes: list[str]) -> EmbedStats:
    """Encode what etl.embedding_cache lacks, with a progress artifact while it runs."""
    from tasks.model import encode

    logger = get_run_logger()
    progress_id = create_progress_artifact(progress=0.0, description=f"embedding {entity} for {tenant}")

    def progress(done: int, total: int) -> None:
        update_progress_artifact(progress_id, progress=100.0 * done / total)
        logger.info("embedding %s: %d/%d new texts", entity, done, total)

    with connect(target_dsn(), autocommit=True) as conn:
        stats = ensure_cached(conn, model_spec(), texts, hashes, encode, progress=progress)
    update_progress_artifact(progress_id, progress=100.0)
    return stats


@task(name="copy-batch", task_run_name="copy-{table}-{tenant}-{batch_no}", cache_policy=NO_CACHE, **IO_RETRIES)
def copy_batch(table: str, tenant: str, batch_no: int, rows: list[dict]) -> LoadResult:
    return load_rows(target_dsn(), table, rows, batch_size=len(rows) or 1)


@task(name="write-quarantine", task_run_name="quarantine-{entity}-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def write_quarantine(run_id: str, tenant: str, entity: str, rows: list) -> int:
    with connect(target_dsn(), autocommit=True) as conn:
        return runs.quarantine(conn, run_id, tenant, entity, rows)


@task(name="record-ids", task_run_name="record-ids-{entity}-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def record_ids(tenant: str, entity: str, pairs: list[tuple[str, str]]) -> None:
    with connect(target_dsn(), autocommit=True) as conn:
        runs.record_ids(conn, tenant, entity, pairs)


@task(name="prune-chunks", cache_policy=NO_CACHE, **IO_RETRIES)
def prune_chunks(tenant_id: str, document_ids: list[str], chunk_ids: list[str]) -> int:
    """Chunks are derived rows: those of re-chunked documents that no longer exist go."""
    with connect(target_dsn(), autocommit=True) as conn:
        return sync.prune_chunks(conn, tenant_id, document_ids, chunk_ids)


@task(name="prune-links", task_run_name="prune-{junction}-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def prune_links(junction: str, tenant: str, tenant_id: str, rows: list[dict]) -> int:
    """Junction rows derived from the sources (mapping_source automated) that this run no longer
    derives (the source changed) go, so re-runs converge on the sources."""
    with connect(target_dsn(), autocommit=True) as conn:
        return sync.prune_links(conn, junction, tenant_id, rows)


@task(name="count-stale", task_run_name="count-stale-{table}-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def count_stale(table: str, tenant: str, tenant_id: str, ids: list[str]) -> int:
    """Rows of the tenant in the target that the sources no longer have (reported, kept)."""
    with connect(target_dsn(), autocommit=True) as conn:
        return sync.count_stale(conn, table, tenant_id, ids)


@task(name="link-by-similarity", cache_policy=NO_CACHE, **IO_RETRIES)
def link_similar(tenant_id: str) -> dict[str, int]:
    with connect(target_dsn(), autocommit=True) as conn:
        return link_by_similarity(conn, tenant_id, load_link_rules())


@task(name="build-vector-indexes", cache_policy=NO_CACHE, **IO_RETRIES)
def build_indexes() -> list[str]:
    return build_vector_indexes(target_dsn(), list(SEARCHABLE))


@task(name="verify", task_run_name="verify-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def verify_target(tenant: str, tenant_id: str) -> dict:
    with connect(target_dsn(), autocommit=True) as conn:
        return verify(conn, tenant, tenant_id, model_spec().model_id)


@task(name="finish-run", cache_policy=NO_CACHE, **IO_RETRIES)
def finish_run(run_id: str, summary: dict, status: str, error: str | None = None) -> None:
    with connect(target_dsn(), autocommit=True) as conn:
        runs.finish_run(conn, run_id, summary, status, error)


def load_entity(table: str, rows: list[dict], tenant: str, batch_size: int) -> LoadResult:
    """One copy-batch task per batch, submitted to the flow's task runner (threads or Dask);
    their results summed. A self-referencing table loads its batches in order, parents first."""
    total = LoadResult(table)
    if table in SELF_REFERENCES:
        rows = parents_first(rows, SELF_REFERENCES[table])
    batches = [rows[start:start + batch_size] for start in range(0, len(rows), batch_size)]
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


EMBED_CHUNK = 2000


def embed_all(table: str, tenant: str, texts: list[str], hashes: list[str]) -> EmbedStats:
    """embed tasks over chunks of EMBED_CHUNK texts (parallel on a Dask cluster)."""
    total = EmbedStats()
    futures = [embed.submit(table, tenant, texts[i:i + EMBED_CHUNK], hashes[i:i + EMBED_CHUNK])
               for i in range(0, len(texts), EMBED_CHUNK)]
    for f in futures:
        total.add(f.result())
    return total


def load_tenant(part: TenantSlice, run_id: str, batch_size: int, complete: bool, embed_now: bool = True) -> dict:
    """Embed and load every entity of the slice, then its junction rows; quarantine rejects.
    complete: the run covers every entity of the manifest, so junction rows it no longer
    derives can be pruned."""
    tenant, spec = part.tenant, model_spec()
    counts: dict[str, dict] = {}
    refused: list[dict] = []
    findings: list[str] = []
    for entity, s in part.entities.items():
        rows = rows_for_load(s.rows)
        derived = {"knowledge_chunks": chunk_documents(rows, str(tenant.id))} if entity == "knowledge_documents" else {}
        for table, table_rows in [(entity, rows), *derived.items()]:
            texts = with_hashes(table, table_rows, spec.model_id)
            hashes = [r["content_sha256"] for r in table_rows] if texts else []
            stats = embed_all(table, tenant.slug, texts, hashes) if embed_now else EmbedStats()
            result = load_entity(table, table_rows, tenant.slug, batch_size)
            rejects = [(q["legacy_key"], q["reason"], q["payload"]) for q in s.quarantined.iter_rows(named=True)] \
                if table == entity else []
            rejects += [(row.get("legacy_key"), f"database refused the row: {reason}", row)
                        for row, reason in result.failed]
            write_quarantine(run_id, tenant.slug, table, rejects)
            refused += [{"entity": table, "source": row.get("_source"), "row": row.get("_row"),
                         "legacy_key": row.get("legacy_key"), "reason": f"database refused the row: {reason}"}
                        for row, reason in result.failed]
            failed_keys = {row.get("legacy_key") for row, _ in result.failed}
            record_ids(tenant.slug, table, [(r["legacy_key"], r["id"]) for r in table_rows
                                            if r["legacy_key"] not in failed_keys])
            read = s.read if table == entity else len(table_rows)
            counts[table] = {"read": read, "created": s.created if table == entity else 0,
                             "loaded": result.loaded, "quarantined": len(rejects),
                             "skipped": s.skipped if table == entity else 0, "embedded": stats.embedded,
                             "reused": stats.reused, "written": result.written, "retries": result.retries}
        if derived:
            prune_chunks(str(tenant.id), [r["id"] for r in rows], [r["id"] for r in derived["knowledge_chunks"]])
        if complete:
            stale = count_stale(entity, tenant.slug, str(tenant.id), [r["id"] for r in rows])
            if stale:
                findings.append(f"{entity}: {stale} row(s) of {tenant.slug} in the target are no longer in the "
                                "sources; they were kept (undo-tenant, then migrate again, removes them)")
    junctions = {}
    for junction, frame in part.junctions.items():
        rows = frame.to_dicts()
        result = load_entity(junction, rows, tenant.slug, batch_size)
        if complete:
            prune_links(junction, tenant.slug, str(tenant.id), rows)
        write_quarantine(run_id, tenant.slug, junction, [(None, f"database refused the row: {reason}", row)
                                                          for row, reason in result.failed])
        junctions[junction] = {"rows": result.loaded, "quarantined": len(result.failed)}
    return {"entities": counts, "junctions": junctions, "refused": refused, "findings": findings}


@flow(name="migrate-tenant", flow_run_name="migrate-{tenant}", log_prints=True, task_runner=task_runner())
def migrate_tenant(tenant: str, manifest: str | None = None, entities: list[str] | None = None,
                   dry_run: bool = False, batch_size: int = DEFAULT_BATCH_ROWS, embed: bool = True) -> dict:
    """Extract -> normalize -> embed -> load -> link -> verify -> report, for one tenant.

    tenant: slug from rules/tenants.yaml. manifest: sources manifest (default: the bundled
    sample). entities: a subset (default: all in the manifest). dry_run: extract, normalize and
    validate, then report; write nothing. batch_size: rows per read and per load batch.
    embed: False loads rows without vectors (embedding NULL) for backfill-embeddings to fill later."""
    logger = get_run_logger()
    m, rules, wanted = load_inputs(manifest, tenant, entities)
    labels = read_tenant_labels(m)
    normalized, sources = {}, {}
    for entity in wanted:
        extracted = extract(m, entity, batch_size)
        sources[entity] = extracted.sources
        normalized[entity] = normalize(entity, extracted, rules, labels)
        logger.info("%s: %d read, %d valid, %d rejected", entity, normalized[entity].read,
                    normalized[entity].rows.height, normalized[entity].rejects.height)
    part = slice_tenant(normalized, rules.tenants.by_slug(tenant), rules.create_missing)
    summary = assert_json(tenant_summary(part, normalized, sources, dry_run=dry_run))
    if not dry_run:
        params = {"tenant": tenant, "manifest": str(m.path), "entities": wanted, "batch_size": batch_size, "embed": embed,
                  "model": model_spec().model_id, "flow_run": str(getattr(FlowRunContext.get(), "flow_run", None)
                                                                   and FlowRunContext.get().flow_run.id)}
        run_id = start_run(tenant, params)
        try:
            loaded = load_tenant(part, run_id, batch_size, complete=set(wanted) == set(m.entities), embed_now=embed)
            summary["entities"] = {e: {k: c[k] for k in ("read", "created", "loaded", "quarantined", "skipped",
                                                         "embedded", "reused")} for e, c in loaded["entities"].items()}
            summary["junctions"] = {j: {**summary["junctions"].get(j, {}), **c} for j, c in loaded["junctions"].items()}
            summary["quarantine"] += loaded["refused"]
            summary["findings"] += loaded["findings"]
            summary["similarity_links"] = link_similar(str(part.tenant.id))
            summary["indexes_built"] = build_indexes()
            summary["run_id"] = run_id
            summary["reconciled"] = all(reconciles(c) for c in summary["entities"].values())
            finish_run(run_id, summary, "completed")
        except Exception as exc:
            finish_run(run_id, summary, "failed", f"{type(exc).__name__}: {exc}")
            raise
        summary["verify"] = verify_target(tenant, str(part.tenant.id))
    report = migration_report_markdown(summary)
    print(report)
    publish_markdown(f"migrate-{tenant}", report, f"migrate-tenant {tenant}: counts and findings")
    publish_table(f"quarantine-{tenant}", summary["quarantine"], f"Quarantined rows for {tenant}")
    return assert_json(summary)


def _deployed(slugs: list[str]) -> bool:
    """True when a Prefect server is configured and has a migrate-tenant deployment per tenant."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return False
    with get_client(sync_client=True) as client:
        try:
            for slug in slugs:
                client.read_deployment_by_name(f"migrate-tenant/{slug}")
        except Exception:  # ObjectNotFound, or a server without deployments
            return False
    return True


# configuration passed on to the tenant runs; plain DSNs are not (job variables are shown in
# the Prefect UI): name Secret blocks with VITAL_*_DSN_SECRET, or set the DSNs on the worker
FORWARDED_ENV = ("VITAL_HOME", "VITAL_SOURCE_DSN_SECRET", "VITAL_TARGET_DSN_SECRET", "VITAL_EMBEDDING_MODEL",
                 "VITAL_EMBEDDING_MODEL_ID", "VITAL_TASK_RUNNER", "VITAL_DASK_ADDRESS")


@task(name="run-tenant-deployments", cache_policy=NO_CACHE)
def run_tenant_deployments(slugs: list[str], parameters: dict, timeout_s: float) -> dict[str, str]:
    """Start migrate-tenant/<slug> for every tenant at once, then wait; returns final states."""
    import os
    import time

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    for k in ("VITAL_SOURCE_DSN", "VITAL_TARGET_DSN"):
        if os.environ.get(k) and not os.environ.get(f"{k}_SECRET"):
            logger.warning("%s is set for migrate-all but is not passed to the tenant runs (it would show in "
                           "the UI); they use the worker's environment. Name a Secret block in %s_SECRET.", k, k)
    runs = {slug: run_deployment(f"migrate-tenant/{slug}", parameters={**parameters, "tenant": slug},
                                 timeout=0, as_subflow=True, job_variables={"env": env} if env else None)
            for slug in slugs}
    states: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while len(states) < len(runs):
            for slug, run in runs.items():
                state = client.read_flow_run(run.id).state
                if state and state.is_final():
                    states[slug] = state.type.value
            if time.monotonic() > deadline:
                raise TimeoutError(f"migrate-all: tenants {sorted(set(runs) - set(states))} still running "
                                   f"after {timeout_s:.0f} s")
            time.sleep(2)
    return states


@task(name="read-run-summaries", cache_policy=NO_CACHE)
def read_run_summaries(slugs: list[str]) -> dict[str, dict]:
    with connect(target_dsn(), autocommit=True) as conn:
        return {slug: (runs.last_run(conn, "migrate-tenant", slug) or {}).get("counts", {}) for slug in slugs}


@flow(name="migrate-all", log_prints=True)
def migrate_all(manifest: str | None = None, tenants: list[str] | None = None, dry_run: bool = False,
                batch_size: int = DEFAULT_BATCH_ROWS, timeout_s: float = 6 * 3600) -> dict:
    """One migrate-tenant run per tenant: through the migrate-tenant/<tenant> deployments when a
    Prefect server has them (tenants run in parallel on the workers), as subflows otherwise.
    Its report sums the tenants'.

    tenants: a subset of slugs (default: every tenant of the tenants file). timeout_s: how long
    to wait for the deployment runs."""
    m = load_manifest(manifest or DEFAULT_MANIFEST)
    known = [t.slug for t in load_rules(tenants_file=m.tenants_file).tenants.tenants]
    slugs = list(tenants or known)
    unknown = [s for s in slugs if s not in known]
    if unknown:
        raise ConfigError(f"unknown tenant {unknown[0]!r}; known: {', '.join(known)}")
    params = {"manifest": manifest, "dry_run": dry_run, "batch_size": batch_size}
    if not dry_run and _deployed(slugs):
        states = run_tenant_deployments(slugs, params, timeout_s)
        summaries = read_run_summaries(slugs)
    else:
        summaries = {slug: migrate_tenant(tenant=slug, **params) for slug in slugs}
        states = {slug: "COMPLETED" for slug in slugs}
    total = sum_summaries(summaries)
    total["states"] = states
    report = migration_report_markdown(total)
    print(report)
    publish_markdown("migrate-all", report, "migrate-all: the tenants' counts summed")
    failed = {s: st for s, st in states.items() if st != "COMPLETED"}
    if failed:
        raise ConfigError(f"migrate-all: runs did not complete: {failed}")
    return total

