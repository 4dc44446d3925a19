"""backfill-embeddings: bring every searchable row's embedding up to date with the current
model (e.g. after switching VITAL_EMBEDDING_MODEL), without re-running the migration."""

from __future__ import annotations

from prefect import flow

from core.catalogue import SEARCHABLE
from core.errors import ConfigError
from core.params import BatchSize, Name
from core.settings import model_spec
from core.tenants import load_tenants
from tasks.backfill import backfill


@flow(name="backfill-embeddings", log_prints=True)
def backfill_embeddings(
    tenant: Name | None = None, entities: list[Name] | None = None, batch_size: BatchSize = 1000
) -> dict:
    """Embed rows whose embedding is NULL, stale (text changed) or from another model.

    tenant: one tenant (default: all). entities: searchable tables to check (default: all).
    batch_size: rows read and updated per batch."""
    unknown = [e for e in entities or () if e not in SEARCHABLE]
    if unknown:
        raise ConfigError(f"{unknown[0]!r} has no embeddings (searchable: {', '.join(SEARCHABLE)})")
    tenant_id = str(load_tenants().by_slug(tenant).id) if tenant else None
    result = {table: backfill(table, tenant_id, batch_size) for table in (entities or SEARCHABLE)}
    print(
        f"backfill-embeddings with {model_spec().model_id}: "
        + ", ".join(f"{t} {r['stale']} stale of {r['rows']}" for t, r in result.items())
    )
    return result
