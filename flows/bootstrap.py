"""bootstrap-schema: make the target database hold the vital-etl schema, safely."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks import schema as schema_steps
from tasks.db import connect, target_dsn
from tasks.report import publish_markdown, schema_report_markdown
from tasks.settings import model_spec
from tasks.tenants import load_tenants, upsert_tenants


@task(name="plan-schema", cache_policy=NO_CACHE)
def plan_schema(migrations_dir: str | None) -> schema_steps.Plan:
    """Preflight: server version, pgvector, privileges, the ledger, foreign objects. Changes nothing."""
    migrations = schema_steps.discover(migrations_dir)
    with connect(target_dsn(), autocommit=True) as conn:
        return schema_steps.preflight(conn, migrations, {"embedding_dim": model_spec().dim})


@task(name="apply-schema", cache_policy=NO_CACHE)
def apply_schema(plan: schema_steps.Plan) -> list[dict]:
    logger = get_run_logger()
    with connect(target_dsn(), autocommit=True) as conn:
        return schema_steps.apply_plan(
            conn, plan, on_applied=lambda e: logger.info("applied %s in %d ms", e["file"], e["ms"]))


@task(name="upsert-tenants", cache_policy=NO_CACHE)
def upsert_tenant_rows(tenants_file: str | None) -> dict[str, str]:
    rules = load_tenants(tenants_file)
    with connect(target_dsn(), autocommit=True) as conn:
        return upsert_tenants(conn, rules)


@task(name="describe-schema", cache_policy=NO_CACHE)
def describe_schema() -> dict:
    with connect(target_dsn()) as conn:
        return schema_steps.describe(conn)


@flow(name="bootstrap-schema", log_prints=True)
def bootstrap_schema(dry_run: bool = False, migrations_dir: str | None = None,
                     tenants_file: str | None = None) -> dict:
    """Preflight, then the vector extension, then each pending schema file in its own
    transaction (recorded in etl.schema_migrations), then the tenants of rules/tenants.yaml.

    dry_run: print the plan and change nothing. migrations_dir / tenants_file: override
    schema/ and rules/tenants.yaml (tests, rehearsals)."""
    plan = plan_schema(migrations_dir)
    print(plan.describe())
    if dry_run:
        summary = {"dry_run": True, "plan": plan.describe(),
                   "pending": [m.filename for m in plan.pending], "schema": describe_schema()}
    else:
        applied_now = apply_schema(plan)
        tenants = upsert_tenant_rows(tenants_file)
        summary = {"dry_run": False, "applied_now": applied_now, "tenants": tenants, "schema": describe_schema()}
    publish_markdown("bootstrap-schema", schema_report_markdown(summary), "Schema applied and what exists")
    return summary
