"""Deterministic ids: the same tenant, entity and legacy key give the same uuid in every run
and every database, so re-running a migration upserts instead of duplicating."""

from __future__ import annotations

import uuid

# uuid5(NAMESPACE_URL, "https://vital-etl/ids"): fixed forever; changing it re-keys every row.
NAMESPACE = uuid.UUID("f0d60bba-305a-57ef-88c1-e0a38327b45e")


def tenant_id(slug: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"tenant:{slug}")


def row_id(tenant: uuid.UUID | str, entity: str, legacy_key: str) -> uuid.UUID:
    """uuid5 over (tenant id, entity, legacy natural key)."""
    return uuid.uuid5(NAMESPACE, f"{tenant}:{entity}:{legacy_key}")


def created_row_id(tenant: uuid.UUID | str, entity: str, reference: str) -> uuid.UUID:
    """The id of a row created for a reference that named no row (rules/references.yaml).

    Hashed as `tenant:entity/created:reference`, never `tenant:entity:key`: entity names hold
    no '/' or ':', so no legacy key of a source row can give this id, whatever it is."""
    return uuid.uuid5(NAMESPACE, f"{tenant}:{entity}/created:{reference}")
