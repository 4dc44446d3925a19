"""bootstrap-schema: make the target database hold the vital-etl schema, safely."""

from __future__ import annotations

from prefect import flow

from tasks.report import publish_schema_report
from tasks.schema.apply import apply_schema
from tasks.schema.describe import describe_schema
from tasks.schema.preflight import plan_schema
from tasks.tenants import upsert_tenant_rows


@flow(name="bootstrap-schema", log_prints=True)
def bootstrap_schema(dry_run: bool = False, migrations_dir: str | None = None, tenants_file: str | None = None) -> dict:
    """Preflight, then the vector extension, then each pending schema file in its own
    transaction (recorded in etl.schema_migrations), then the tenants of rules/tenants.yaml.

    dry_run: print the plan and change nothing. migrations_dir / tenants_file: override
    schema/ and rules/tenants.yaml (tests, rehearsals)."""
    plan = plan_schema(migrations_dir)
    print(plan.describe())
    if dry_run:
        summary = {"dry_run": True, "plan": plan.describe(), "pending": [m.filename for m in plan.pending]}
    else:
        summary = {"dry_run": False, "applied_now": apply_schema(plan), "tenants": upsert_tenant_rows(tenants_file)}
    summary["schema"] = describe_schema()
    publish_schema_report(summary)
    return summary
