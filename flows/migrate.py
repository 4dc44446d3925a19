"""migrate-tenant: one tenant's catalogue from the legacy sources into the target;
migrate-all: every tenant, one migrate-tenant run each."""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.utilities.annotations import quote

from core.errors import ConfigError
from core.params import BatchSize, Name, Ratio, Seconds
from core.runner import task_runner
from sources.manifest import DEFAULT_MANIFEST, load_manifest
from tasks.decide import decide_tenant
from tasks.extract import DEFAULT_BATCH_ROWS, load_inputs, read_tenant_labels, stage_folder
from tasks.fan_out import deployed, run_tenant_deployments
from tasks.normalize.resolve import slice_tenant
from tasks.normalize.rules import load_rules
from tasks.pipeline import extract_and_normalize, load_tenant
from tasks.plan import plan_changes
from tasks.prune import guard_prune, prune_tenant_rows, source_ids
from tasks.report import publish_migration_report, publish_plan_report, publish_summary_report
from tasks.review import record_decisions
from tasks.runs import (
    begin_run,
    new_run_id,
    read_run_summaries,
    record_verify,
    recorded_run,
    remove_run_folder,
    run_parameters,
)
from tasks.search import build_indexes
from tasks.summary import RunSummary, sum_summaries
from tasks.verify import require_verified, verify_target


@flow(name="migrate-tenant", flow_run_name="migrate-{tenant}", log_prints=True, task_runner=task_runner())
def migrate_tenant(
    tenant: Name,
    manifest: Name | None = None,
    entities: list[Name] | None = None,
    dry_run: bool = False,
    batch_size: BatchSize = DEFAULT_BATCH_ROWS,
    embed: bool = True,
    plan: bool = False,
    prune: bool | Literal["soft"] = False,
    max_delete_ratio: Ratio | None = None,
) -> dict:
    """Extract -> normalize -> embed -> load -> link -> verify -> report, for one tenant; the
    run fails (after the report is written) when a verify check fails.

    tenant: slug from rules/tenants.yaml. manifest: sources manifest (default: the bundled
    sample). entities: a subset (default: all in the manifest). dry_run: extract, normalize and
    validate, then report; write nothing. batch_size: rows per read and per load batch.
    embed: False loads rows without vectors (embedding NULL) for backfill-embeddings to fill later.
    plan: everything dry_run does, plus what the run would change in the target (rows per table
    inserted, updated with the changed columns, unchanged, removed; texts to embed and the time;
    decisions that change); writes nothing. prune: True deletes, "soft" hides (deleted_at) the
    tenant's rows that the sources no longer have and that vital-etl made, with their links and
    chunks; only when the run covers every entity of the manifest. max_delete_ratio: refuse,
    before anything is written, a prune that removes more than this share of an entity's rows
    (default: rules/prune.yaml)."""
    m, rules, wanted = load_inputs(manifest, tenant, entities)
    labels = read_tenant_labels(m)
    complete, writes = set(wanted) == set(m.entities), not (dry_run or plan)
    run_id = new_run_id() if writes else None
    with stage_folder(run_id) as folder:
        normalized, sources = extract_and_normalize(m, wanted, rules, labels, batch_size, folder, keep=writes)
    part = slice_tenant(normalized, rules.tenants.by_slug(tenant), rules.create_missing)
    gone = (
        guard_prune(tenant, str(part.tenant.id), quote(source_ids(part)), prune == "soft", max_delete_ratio)
        if writes and prune and complete
        else {}
    )
    # quote(): these are in-process objects of thousands of rows; Prefect need not walk them
    decided = decide_tenant(quote(part), quote(rules), not writes, embed, plan=plan)
    summary = RunSummary.of(part, normalized, sources, dry_run=not writes)
    del normalized  # the slice holds the rows now: what the load sets aside leaves memory
    if plan:
        summary.note(plan=plan_changes(quote(part), quote(decided), complete, prune, max_delete_ratio))
        publish_plan_report(summary["plan"])
    if writes:
        params = run_parameters(tenant, m, wanted, batch_size, embed) | {
            "prune": prune,
            "max_delete_ratio": max_delete_ratio,
        }
        begin_run(tenant, params, run_id)
        summary.note(run_id=run_id)
        with recorded_run(run_id, summary):
            summary.add_loaded(load_tenant(part, run_id, batch_size, complete, embed, pruning=bool(gone)))
            summary.note(decisions=record_decisions(quote(part), quote(decided), run_id))
            summary.note(pruned=prune_tenant_rows(tenant, str(part.tenant.id), gone, prune == "soft") if gone else {})
            summary.note(indexes_built=build_indexes())
        remove_run_folder(run_id)
        summary.note(verify=verify_target(tenant, embed, summary["model"]))
        record_verify(run_id, summary["verify"])
    result = summary.as_dict()
    publish_migration_report(result)
    require_verified(result.get("verify"))
    return result


@flow(name="migrate-all", log_prints=True)
def migrate_all(
    manifest: Name | None = None,
    tenants: list[Name] | None = None,
    dry_run: bool = False,
    batch_size: BatchSize = DEFAULT_BATCH_ROWS,
    timeout_s: Seconds = 6 * 3600,
) -> dict:
    """One migrate-tenant run per tenant: through the migrate-tenant/<tenant> deployments when a
    Prefect server has them (tenants run in parallel on the workers), as subflows otherwise.
    Its report sums the tenants'.

    tenants: a subset of slugs (default: every tenant of the tenants file). timeout_s: how long
    to wait for the deployment runs."""
    known = [
        t.slug
        for t in load_rules(tenants_file=load_manifest(manifest or DEFAULT_MANIFEST).tenants_file).tenants.tenants
    ]
    slugs = list(tenants or known)
    unknown = [s for s in slugs if s not in known]
    if unknown:
        raise ConfigError(f"unknown tenant {unknown[0]!r}; known: {', '.join(known)}")
    params = {"manifest": manifest, "dry_run": dry_run, "batch_size": batch_size}
    if not dry_run and deployed(slugs):
        states = run_tenant_deployments(slugs, params, timeout_s)
        summaries = read_run_summaries(slugs)
    else:
        summaries = {slug: migrate_tenant(tenant=slug, **params) for slug in slugs}
        states = {slug: "COMPLETED" for slug in slugs}
    total = sum_summaries(summaries) | {"states": states}
    publish_summary_report(total)
    failed = {s: st for s, st in states.items() if st != "COMPLETED"}
    if failed:
        raise ConfigError(f"migrate-all: runs did not complete: {failed}")
    return total
