"""The per-tenant summary of DESIGN §3 (plain, JSON-serializable), built from a TenantSlice."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tasks.normalize.base import Normalized
from tasks.normalize.resolve import TenantSlice

QUARANTINE_SAMPLE = 200

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


@dataclass
class RunSummary:
    """The one record of a migrate-tenant run that each step adds to: counts per entity and
    junction, findings, quarantine sample, and the sections later steps fill (run_id, model,
    plan, decisions, pruned, indexes_built, verify). The flow result, etl.runs.counts, the
    Markdown report and the artifacts are all rendered from `as_dict()`."""

    tenant: str
    dry_run: bool
    entities: dict[str, dict[str, int]]
    junctions: dict[str, dict]
    findings: list[str]
    quarantine: list[dict]
    sources: dict[str, list[dict]]
    sections: dict = field(default_factory=dict)

    @classmethod
    def of(
        cls, part: TenantSlice, normalized: dict[str, Normalized], sources: dict[str, list[dict]], *, dry_run: bool
    ) -> RunSummary:
        """What extract and normalize know: rows read, created, valid, quarantined, skipped."""
        entities = {
            entity: dict.fromkeys(COUNTS, 0)
            | {
                "read": s.read,
                "created": s.created,
                "loaded": s.loaded,
                "quarantined": s.quarantined.height,
                "skipped": s.skipped,
            }
            for entity, s in part.entities.items()
        }
        quarantine = [
            {
                "entity": entity,
                "source": row["_source"],
                "row": row["_row"],
                "legacy_key": row["legacy_key"],
                "reason": row["reason"],
            }
            for entity, s in part.entities.items()
            for row in s.quarantined.head(QUARANTINE_SAMPLE).iter_rows(named=True)
        ]
        return cls(
            tenant=part.tenant.slug,
            dry_run=dry_run,
            entities=entities,
            junctions={
                j: {"rows": r["rows"], "references": r["references"], "unresolved": r["unresolved"]}
                for j, r in part.link_report.items()
            },
            findings=[f for n in normalized.values() for f in n.findings] + part.findings,
            quarantine=quarantine[:QUARANTINE_SAMPLE],
            sources=sources,
        )

    def add_loaded(self, loaded: dict) -> None:
        """What load_tenant did replaces the dry-run counts: per table, per junction, refusals."""
        self.entities = {e: {k: c.get(k, 0) for k in COUNTS} for e, c in loaded["entities"].items()}
        self.junctions = {j: {**self.junctions.get(j, {}), **c} for j, c in loaded["junctions"].items()}
        self.quarantine += loaded["refused"]
        self.findings += loaded["findings"]
        self.note(model=loaded.get("model"), model_note=loaded.get("model_note"))

    def note(self, **sections) -> None:
        """A later step's part of the summary (plan, decisions, pruned, verify, ...)."""
        self.sections.update(sections)

    def __getitem__(self, name: str):
        return self.sections[name]

    @property
    def reconciled(self) -> bool:
        return all(reconciles(c) for c in self.entities.values())

    def as_dict(self) -> dict:
        """The summary as plain JSON values (a flow result, an etl.runs row, the report's input)."""
        return assert_json(
            {
                "tenant": self.tenant,
                "dry_run": self.dry_run,
                "entities": self.entities,
                "junctions": self.junctions,
                "findings": self.findings,
                "quarantine": self.quarantine,
                "sources": self.sources,
                "reconciled": self.reconciled,
            }
            | self.sections
        )


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
