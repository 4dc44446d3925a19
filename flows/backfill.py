"""backfill-embeddings: bring every searchable row's embedding up to date with the current
model (e.g. after switching VITAL_EMBEDDING_MODEL), without re-running the migration."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.backfill import backfill_table
from tasks.db import connect, target_dsn
from tasks.embed import SEARCHABLE
from tasks.errors import ConfigError
from tasks.retry import retry_transient
from tasks.settings import model_spec
from tasks.tenants import load_tenants


@task(name="backfill", task_run_name="backfill-{table}", cache_policy=NO_CACHE, retries=3,
      retry_delay_seconds=[2, 8, 30], retry_jitter_factor=0.5, retry_condition_fn=retry_transient)
def backfill(table: str, tenant_id: str | None, batch_size: int) -> dict:
    from tasks.model import encode

    logger = get_run_logger()
    with connect(target_dsn(), autocommit=True) as conn:
        return backfill_table(conn, table, model_spec(), encode, tenant_id, batch_size,
                              progress=lambda done, total: logger.info("%s: %d/%d rows checked", table, done, total))


@flow(name="backfill-embeddings", log_prints=True)
def backfill_embeddings(tenant: str | None = None, entities: list[str] | None = None,
                        batch_size: int = 1000) -> dict:
    """Embed rows whose embedding is NULL, stale (text changed) or from another model.

    tenant: one tenant (default: all). entities: searchable tables to check (default: all).
    batch_size: rows read and updated per batch."""
    unknown = [e for e in entities or () if e not in SEARCHABLE]
    if unknown:
        raise ConfigError(f"{unknown[0]!r} has no embeddings (searchable: {', '.join(SEARCHABLE)})")
    tenant_id = str(load_tenants().by_slug(tenant).id) if tenant else None
    result = {table: backfill(table, tenant_id, batch_size) for table in (entities or SEARCHABLE)}
    print(f"backfill-embeddings with {model_spec().model_id}: " +
          ", ".join(f"{t} {r['stale']} stale of {r['rows']}" for t, r in result.items()))
    return result
