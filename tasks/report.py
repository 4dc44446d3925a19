"""Reports people read: Markdown built by pure functions, published as Prefect artifacts."""

from __future__ import annotations

import logging

from tasks.summary import COUNTS, JUNCTION_COUNTS

log = logging.getLogger(__name__)
HEADINGS = {"skipped": "skipped (other tenant)"}


def schema_report_markdown(summary: dict) -> str:
    """The bootstrap-schema report: what was applied now, and what exists."""
    schema = summary["schema"]
    lines = ["# bootstrap-schema", ""]
    if summary.get("dry_run"):
        lines += ["**Dry run**: nothing was changed.", "", "```", summary["plan"], "```", ""]
    else:
        applied_now = summary.get("applied_now", [])
        lines.append(f"Applied now: {len(applied_now)} file(s)" + (":" if applied_now else " (already up to date)."))
        lines += [f"- `{a['file']}` ({a['ms']} ms)" for a in applied_now]
        lines.append("")
        tenants = summary.get("tenants", {})
        if tenants:
            lines += ["Tenants: " + ", ".join(f"`{slug}` {state}" for slug, state in tenants.items()), ""]
    ext = schema.get("vector_extension")
    lines.append(f"pgvector: {ext['version']} in schema `{ext['schema']}`" if ext else "pgvector: not installed")
    lines += ["", f"Ledger (etl.schema_migrations): {len(schema['applied'])} file(s)", ""]
    lines += [f"- `{a['file']}` applied {a['applied_at']}" for a in schema["applied"]]
    lines += ["", "| table | rows | tenant-scoped | RLS | policies |", "|---|---:|:---:|:---:|---:|"]
    for t in schema["tables"]:
        lines.append(
            f"| `{t['table']}` | {t['rows']} | {'yes' if t['tenant_scoped'] else ''} | "
            f"{'on' if t['rls'] else ''} | {t['policies']} |"
        )
    lines += ["", "| enum | labels |", "|---|---|"]
    lines += [f"| `{name}` | {', '.join(labels)} |" for name, labels in schema["enums"].items()]
    if schema.get("vector_columns"):
        dims = sorted(set(schema["vector_columns"].values()))
        lines += ["", f"Vector columns: {len(schema['vector_columns'])}, dimension {', '.join(map(str, dims))}."]
    return "\n".join(lines) + "\n"


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A Markdown artifact on the current Prefect run; outside a run, nothing to attach it to."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        log.debug("not in a Prefect run; artifact %s not published", key)
        return
    create_markdown_artifact(key=key, markdown=markdown, description=description)


def publish_plan_report(plan: dict) -> None:
    """The plan (what a run would change; nothing written) as a Markdown artifact."""
    from tasks.plan import plan_markdown

    md = plan_markdown(plan)
    print(md)
    publish_markdown(
        f"plan-{plan['tenant']}", md, f"migrate-tenant {plan['tenant']}: what the run would change (nothing written)"
    )


def migration_report_markdown(summary: dict) -> str:
    """The migrate-tenant report: counts per entity, junctions, findings, quarantine reasons."""
    mode = "dry run: nothing was written" if summary["dry_run"] else "loaded"
    lines = [
        f"# migrate-tenant `{summary['tenant']}` ({mode})",
        "",
        "| entity | " + " | ".join(HEADINGS.get(k, k) for k in COUNTS) + " |",
        "|---|" + "---:|" * len(COUNTS),
    ]
    totals = dict.fromkeys(COUNTS, 0)
    from core.catalogue import CATALOGUE_TABLES

    # catalogue order (a summary read back from jsonb has its keys sorted otherwise)
    order = {e: i for i, e in enumerate(CATALOGUE_TABLES)}
    for entity, c in sorted(summary["entities"].items(), key=lambda kv: order.get(kv[0], len(order))):
        lines.append(f"| {entity} | " + " | ".join(str(c.get(k, 0)) for k in COUNTS) + " |")
        for k in totals:
            totals[k] += c.get(k, 0)
    lines.append("| **total** | " + " | ".join(f"**{totals[k]}**" for k in totals) + " |")
    if summary.get("model"):
        lines += ["", f"Embedding model: `{summary['model']}` ({summary.get('model_note') or ''})"]
    lines += [
        "",
        "Every source row is accounted for: read + created = loaded + quarantined + skipped"
        + (" holds for every entity." if summary["reconciled"] else " does NOT hold; see findings."),
    ]
    if summary["junctions"]:
        lines += ["", "| junction | " + " | ".join(JUNCTION_COUNTS) + " |", "|---|" + "---:|" * len(JUNCTION_COUNTS)]
        lines += [
            f"| {j} | " + " | ".join(str(c.get(k, 0)) for k in JUNCTION_COUNTS) + " |"
            for j, c in summary["junctions"].items()
        ]
    if summary["findings"]:
        lines += ["", "## Data-quality findings", ""] + [f"- {f}" for f in summary["findings"]]
    if summary.get("decisions"):
        lines += decisions_markdown(summary["tenant"], summary["decisions"])
    if summary.get("verify"):
        v = summary["verify"]
        lines += ["", f"## verify-tenant: {'passed' if v['passed'] else 'FAILED'}", ""]
        lines += [
            f"- {'ok' if c['passed'] else 'FAILED'}: {c['check']} ({c['detail']})"
            for c in v["checks"]
            if not c["passed"] or not c["check"].startswith(("reconciled: ", "rows in target: "))
        ]
    if summary["quarantine"]:
        reasons: dict[str, int] = {}
        for q in summary["quarantine"]:
            reasons[f"{q['entity']}: {q['reason']}"] = reasons.get(f"{q['entity']}: {q['reason']}", 0) + 1
        lines += ["", "## Quarantined", ""] + [f"- {n} x {r}" for r, n in sorted(reasons.items())]
    return "\n".join(lines) + "\n"


def decisions_markdown(tenant: str, d: dict) -> list[str]:
    """What vital-etl decided rather than read (tasks/decide.py), and what waits for a reviewer."""
    lines = [
        "",
        "## Decisions",
        "",
        f"{d['decisions']} values and links were decided rather than read ("
        + ", ".join(f"{k} {n}" for k, n in d["by_kind"].items())
        + "); by evidence: "
        + ", ".join(f"{k} {n}" for k, n in d["by_source"].items())
        + ".",
        "",
        f"**{d['below_threshold_unreviewed']} decision(s) below confidence {d['review_below']} are not yet reviewed** "
        f"({d['below_threshold']} below it in all, {d['reviewed']} reviewed): "
        f"`vital-etl review export --tenant {tenant}`, fill `decision`, `vital-etl review import FILE`.",
    ]
    if d.get("links"):
        lines += [
            "",
            "| junction | " + " | ".join(("automated", "ml_model", "expert_review")) + " |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {j} | " + " | ".join(str(c.get(k, 0)) for k in ("automated", "ml_model", "expert_review")) + " |"
            for j, c in d["links"].items()
        ]
    if d.get("stale_overrides"):
        lines += ["", "Overrides that match no row any more:", ""] + [f"- {x}" for x in d["stale_overrides"]]
    return lines


def publish_table(key: str, rows: list[dict], description: str) -> None:
    """A table artifact on the current Prefect run (skipped outside a run, or when empty)."""
    from prefect.artifacts import create_table_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if not rows or (FlowRunContext.get() is None and TaskRunContext.get() is None):
        return
    create_table_artifact(key=key, table=rows, description=description)


def verify_report_markdown(summary: dict) -> str:
    lines = [
        f"# verify-tenant `{summary['tenant']}`: {'passed' if summary['passed'] else 'FAILED'}",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    lines += [f"| {c['check']} | {'ok' if c['passed'] else '**FAILED**'} | {c['detail']} |" for c in summary["checks"]]
    return "\n".join(lines) + "\n"


def publish_schema_report(summary: dict) -> None:
    publish_markdown("bootstrap-schema", schema_report_markdown(summary), "Schema applied and what exists")


def publish_migration_report(summary: dict) -> None:
    """Print the migrate-tenant report and attach it, with the quarantined rows, to the run."""
    tenant = summary["tenant"]
    report = migration_report_markdown(summary)
    print(report)
    publish_markdown(f"migrate-{tenant}", report, f"migrate-tenant {tenant}: counts and findings")
    publish_table(f"quarantine-{tenant}", summary["quarantine"], f"Quarantined rows for {tenant}")


def publish_verify_report(summary: dict) -> None:
    report = verify_report_markdown(summary)
    print(report)
    publish_markdown(f"verify-{summary['tenant']}", report, f"verify-tenant {summary['tenant']}")


def publish_summary_report(total: dict) -> None:
    """migrate-all's report: the tenants' counts summed."""
    report = migration_report_markdown(total)
    print(report)
    publish_markdown("migrate-all", report, "migrate-all: the tenants' counts summed")
