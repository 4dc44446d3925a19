"""The rollback of a migration: remove everything migrate-tenant loaded for one tenant
(catalogue rows, junction rows, chunks, quarantine, runs, id map, decisions). The tenant row itself and
the shared embedding cache stay; other tenants are not touched."""

from __future__ import annotations

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import sql

from core.catalogue import CATALOGUE_TABLES, JUNCTIONS
from core.connections import connect, target_dsn
from core.errors import ConfigError
from core.tenants import load_tenants


def check_confirmation(tenant: str, confirm: str | None) -> None:
    if confirm != tenant:
        raise ConfigError(
            f"undo-tenant removes every row migrate-tenant loaded for {tenant!r}; "
            f"to confirm, pass confirm={tenant!r} (got {confirm!r}). Nothing was removed."
        )


def undo_tenant(conn: psycopg.Connection, tenant: str, tenant_id: str) -> dict[str, int]:
    """Delete the tenant's rows in one transaction; returns rows removed per table."""
    removed = {}
    with conn.transaction():
        for table in [*(j.name for j in JUNCTIONS), *reversed(CATALOGUE_TABLES)]:
            removed[table] = conn.execute(
                sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(sql.Identifier(table)), (tenant_id,)
            ).rowcount
        for table in ("quarantine", "id_map", "decisions", "runs"):
            removed[f"etl.{table}"] = conn.execute(
                sql.SQL("DELETE FROM etl.{} WHERE tenant_slug = %s").format(sql.Identifier(table)), (tenant,)
            ).rowcount
    return removed


@task(name="remove-tenant-rows", task_run_name="undo-{tenant}", cache_policy=NO_CACHE)
def remove_tenant_rows(tenant: str) -> dict[str, int]:
    t = load_tenants().by_slug(tenant)
    with connect(target_dsn(), autocommit=True) as conn:
        return undo_tenant(conn, tenant, str(t.id))
