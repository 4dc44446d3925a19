"""The per-tenant summary of DESIGN §3 (plain, JSON-serializable), built from a TenantSlice."""

from __future__ import annotations

import json

from tasks.normalize.base import Normalized
from tasks.normalize.resolve import TenantSlice

QUARANTINE_SAMPLE = 200


def tenant_summary(
    part: TenantSlice, normalized: dict[str, Normalized], sources: dict[str, list[dict]], *, dry_run: bool
) -> dict:
    entities = {}
    for entity, s in part.entities.items():
        entities[entity] = {
            "read": s.read,
            "created": s.created,
            "loaded": s.loaded,
            "quarantined": s.quarantined.height,
            "skipped": s.skipped,
            "embedded": 0,
            "reused": 0,
        } | {k: 0 for k in ("written", "unchanged", "retries")}
    quarantine = []
    for entity, s in part.entities.items():
        for row in s.quarantined.head(QUARANTINE_SAMPLE).iter_rows(named=True):
            quarantine.append(
                {
                    "entity": entity,
                    "source": row["_source"],
                    "row": row["_row"],
                    "legacy_key": row["legacy_key"],
                    "reason": row["reason"],
                }
            )
    findings = [f for n in normalized.values() for f in n.findings] + part.findings
    return {
        "tenant": part.tenant.slug,
        "dry_run": dry_run,
        "entities": entities,
        "junctions": {
            j: {"rows": r["rows"], "references": r["references"], "unresolved": r["unresolved"]}
            for j, r in part.link_report.items()
        },
        "findings": findings,
        "quarantine": quarantine[:QUARANTINE_SAMPLE],
        "sources": sources,
        "reconciled": all(reconciles(e) for e in entities.values()),
    }


def reconciles(c: dict) -> bool:
    """Every source row accounted for: read (+ rows created for references) = loaded +
    quarantined + skipped."""
    return c["read"] + c.get("created", 0) == c["loaded"] + c["quarantined"] + c["skipped"]


def assert_json(summary: dict) -> dict:
    """The summary must survive JSON (it is a flow result and an etl.runs row)."""
    return json.loads(json.dumps(summary, default=str))


def sum_summaries(summaries: dict[str, dict]) -> dict:
    """The tenants' summaries added up (entities and junctions), with per-tenant figures kept."""
    entities: dict[str, dict] = {}
    junctions: dict[str, dict] = {}
    for summary in summaries.values():
        for entity, c in summary.get("entities", {}).items():
            acc = entities.setdefault(entity, dict.fromkeys(c, 0))
            for k, v in c.items():
                acc[k] = acc.get(k, 0) + v
        for j, c in summary.get("junctions", {}).items():
            acc = junctions.setdefault(j, {})
            for k, v in c.items():
                if isinstance(v, int):
                    acc[k] = acc.get(k, 0) + v
    return {
        "tenant": ", ".join(summaries),
        "dry_run": all(s.get("dry_run") for s in summaries.values()),
        "entities": entities,
        "junctions": {j: {k: c.get(k, 0) for k in JUNCTION_COUNTS} for j, c in junctions.items()},
        "findings": [f"{slug}: {f}" for slug, s in summaries.items() for f in s.get("findings", [])],
        "quarantine": [q | {"tenant": slug} for slug, s in summaries.items() for q in s.get("quarantine", [])],
        "reconciled": all(s.get("reconciled") for s in summaries.values()),
        "tenants": summaries,
    }


# Per entity, in the order the report shows them. written: rows inserted or changed; unchanged:
# rows not sent because their hash equals the last load's; retries: batches retried after a
# transient error.
JUNCTION_COUNTS = ("rows", "written", "references", "unresolved", "removed", "retries")
COUNTS = (
    "read",
    "created",
    "loaded",
    "written",
    "unchanged",
    "quarantined",
    "skipped",
    "embedded",
    "reused",
    "retries",
)


def add_loaded(summary: dict, loaded: dict) -> None:
    """Fold what load_tenant did into the dry-run summary: counts, junction rows, refusals."""
    summary["entities"] = {e: {k: c.get(k, 0) for k in COUNTS} for e, c in loaded["entities"].items()}
    summary["junctions"] = {j: {**summary["junctions"].get(j, {}), **c} for j, c in loaded["junctions"].items()}
    summary["quarantine"] += loaded["refused"]
    summary["findings"] += loaded["findings"]
    summary["model"], summary["model_note"] = loaded.get("model"), loaded.get("model_note")
    summary["reconciled"] = all(reconciles(c) for c in summary["entities"].values())
