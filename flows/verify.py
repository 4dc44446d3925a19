"""verify-tenant: prove a tenant's migration from the target database alone."""

from __future__ import annotations

from prefect import flow

from core.errors import TerminalError
from tasks.report import publish_verify_report
from tasks.verify import verify_target


class VerificationFailed(TerminalError):
    """One or more verify-tenant checks failed; the report lists them."""


@flow(name="verify-tenant", flow_run_name="verify-{tenant}", log_prints=True)
def verify_tenant(tenant: str) -> dict:
    """read = loaded + quarantined + skipped per entity (from the last migrate-tenant run), no
    NULL functional areas, every junction row resolves, embedding coverage with the current
    model, and Row Level Security isolation as a non-owner role. Fails if any check fails."""
    summary = verify_target(tenant)
    publish_verify_report(summary)
    if not summary["passed"]:
        failed = [f"{c['check']} ({c['detail']})" for c in summary["checks"] if not c["passed"]]
        raise VerificationFailed(f"verify-tenant {tenant}: {len(failed)} check(s) failed: " + "; ".join(failed))
    return summary
