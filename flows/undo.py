"""undo-tenant: the rollback of a migration (guarded: the tenant slug must be given twice)."""

from __future__ import annotations

from prefect import flow

from core.params import Name
from tasks.undo import check_confirmation, remove_tenant_rows


@flow(name="undo-tenant", flow_run_name="undo-{tenant}", log_prints=True)
def undo_tenant(tenant: Name, confirm: str | None = None) -> dict:
    """Remove everything migrate-tenant loaded for `tenant`: catalogue and junction rows,
    chunks, quarantine, runs, id map. `confirm` must repeat the tenant slug."""
    check_confirmation(tenant, confirm)
    removed = remove_tenant_rows(tenant)
    print(f"undo-tenant {tenant}: removed " + ", ".join(f"{n} {table}" for table, n in removed.items() if n))
    return removed
