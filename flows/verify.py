"""verify-tenant: prove a tenant's migration from the target database alone."""

from __future__ import annotations

from prefect import flow

from core.params import Name
from tasks.report import publish_verify_report
from tasks.verify import VerificationFailed, require_verified, verify_target

__all__ = ["VerificationFailed", "verify_tenant"]


@flow(name="verify-tenant", flow_run_name="verify-{tenant}", log_prints=True)
def verify_tenant(tenant: Name) -> dict:
    """read = loaded + quarantined + skipped per entity (from the last migrate-tenant run), no
    NULL functional areas, every junction row resolves, embedding coverage with the current
    model, and Row Level Security isolation as a non-owner role. Fails if any check fails."""
    summary = verify_target(tenant)
    publish_verify_report(summary)
    require_verified(summary, "verify-tenant")
    return summary
