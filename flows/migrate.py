"""migrate-tenant: one tenant's catalogue from the legacy sources into the target."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sources.manifest import DEFAULT_MANIFEST, Manifest, check_sources, load_manifest
from tasks.errors import ConfigError
from tasks.extract import DEFAULT_BATCH_ROWS, Extracted, extract_entity, read_labels
from tasks.normalize import ENTITIES
from tasks.normalize.base import Normalized, normalize_frame
from tasks.normalize.resolve import slice_tenant
from tasks.normalize.rules import Rules, load_rules
from tasks.report import migration_report_markdown, publish_markdown, publish_table
from tasks.retry import retry_transient
from tasks.summary import assert_json, tenant_summary

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


@flow(name="migrate-tenant", flow_run_name="migrate-{tenant}", log_prints=True)
def migrate_tenant(tenant: str, manifest: str | None = None, entities: list[str] | None = None,
                   dry_run: bool = False, batch_size: int = DEFAULT_BATCH_ROWS) -> dict:
    """Extract -> normalize -> (embed -> load -> link) -> verify -> report, for one tenant.

    tenant: slug from rules/tenants.yaml. manifest: sources manifest (default: the bundled
    sample). entities: a subset (default: all in the manifest). dry_run: extract, normalize and
    validate, then report; write nothing. batch_size: rows per read batch."""
    logger = get_run_logger()
    if not dry_run:
        raise ConfigError("migrate-tenant can only dry-run in this version (dry_run=True): "
                          "embedding and loading into the target are not built yet")
    m, rules, wanted = load_inputs(manifest, tenant, entities)
    labels = read_tenant_labels(m)
    normalized, sources = {}, {}
    for entity in wanted:
        extracted = extract(m, entity, batch_size)
        sources[entity] = extracted.sources
        normalized[entity] = normalize(entity, extracted, rules, labels)
        logger.info("%s: %d read, %d valid, %d rejected", entity, normalized[entity].read,
                    normalized[entity].rows.height, normalized[entity].rejects.height)
    part = slice_tenant(normalized, rules.tenants.by_slug(tenant))
    summary = assert_json(tenant_summary(part, normalized, sources, dry_run=dry_run))
    report = migration_report_markdown(summary)
    print(report)
    publish_markdown(f"migrate-{tenant}", report, f"migrate-tenant {tenant}: counts and findings")
    publish_table(f"quarantine-{tenant}", summary["quarantine"], f"Quarantined rows for {tenant}")
    return summary
