"""verify-tenant: prove a tenant's migration from the target database alone."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tasks.db import connect, target_dsn
from tasks.errors import TerminalError
from tasks.report import publish_markdown, verify_report_markdown
from tasks.settings import model_spec
from tasks.tenants import load_tenants
from tasks.verify import verify


class VerificationFailed(TerminalError):
    """One or more verify-tenant checks failed; the report lists them."""


@task(name="verify", task_run_name="verify-{tenant}", cache_policy=NO_CACHE)
def run_checks(tenant: str) -> dict:
    t = load_tenants().by_slug(tenant)
    with connect(target_dsn(), autocommit=True) as conn:
        return verify(conn, tenant, str(t.id), model_spec().model_id)


@flow(name="verify-tenant", flow_run_name="verify-{tenant}", log_prints=True)
def verify_tenant(tenant: str) -> dict:
    """read = loaded + quarantined + skipped per entity (from the last migrate-tenant run), no
    NULL functional areas, every junction row resolves, embedding coverage with the current
    model, and Row Level Security isolation as a non-owner role. Fails if any check fails."""
    summary = run_checks(tenant)
    report = verify_report_markdown(summary)
    print(report)
    publish_markdown(f"verify-{tenant}", report, f"verify-tenant {tenant}")
    if not summary["passed"]:
        failed = [f"{c['check']} ({c['detail']})" for c in summary["checks"] if not c["passed"]]
        raise VerificationFailed(f"verify-tenant {tenant}: {len(failed)} check(s) failed: " + "; ".join(failed))
    return summary
