"""The rollback of a migration: remove everything migrate-tenant loaded for one tenant
(catalogue rows, junction rows, chunks, quarantine, runs, id map). The tenant row itself and
the shared embedding cache stay; other tenants are not touched."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tasks.errors import ConfigError
from tasks.normalize import CATALOGUE_TABLES
from tasks.normalize.resolve import JUNCTIONS


def check_confirmation(tenant: str, confirm: str | None) -> None:
    if confirm != tenant:
        raise ConfigError(f"undo-tenant removes every row migrate-tenant loaded for {tenant!r}; "
                          f"to confirm, pass confirm={tenant!r} (got {confirm!r}). Nothing was removed.")


def undo_tenant(conn: psycopg.Connection, tenant: str, tenant_id: str) -> dict[str, int]:
    """Delete the tenant's rows in one transaction; returns rows removed per table."""
    removed = {}
    with conn.transaction():
        for table in [*JUNCTIONS, *reversed(CATALOGUE_TABLES)]:
            removed[table] = conn.execute(sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(
                sql.Identifier(table)), (tenant_id,)).rowcount
        for table in ("quarantine", "id_map", "runs"):
            removed[f"etl.{table}"] = conn.execute(sql.SQL("DELETE FROM etl.{} WHERE tenant_slug = %s").format(
                sql.Identifier(table)), (tenant,)).rowcount
    return removed
