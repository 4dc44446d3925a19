"""The real VITAL data (../shared/vital: the exports and the legacy database dump, restored into
the embedded PostgreSQL) through extract and normalize, for both tenants."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from sources.manifest import load_manifest
from tasks.extract import extract_entity, read_labels
from tasks.normalize import SHAPES
from tasks.normalize.base import normalize_frame
from tasks.normalize.resolve import slice_tenant
from tasks.normalize.rules import load_rules

from conftest import SHARED_VITAL

MANIFEST = Path(__file__).resolve().parents[1] / "sources" / "manifests" / "vital.yaml"
pytestmark = pytest.mark.skipif(not SHARED_VITAL.is_dir(), reason="../shared/vital is not beside this checkout")

READ = {
    "org_functions": 12,
    "org_departments": 35,
    "org_roles": 126,
    "org_responsibilities": 200,
    "capabilities": 397,
    "tools": 6 + 94,
    "knowledge_domains": 47 + 16,
    "knowledge_documents": 47,
    "personas": 43 + 18,
    "jobs_to_be_done": 3 + 127,
    "agents": 8 + 254,
    "prompts": 1000,
}


@pytest.fixture(scope="module")
def vital(pg_server):
    manifest = load_manifest(MANIFEST)
    rules = load_rules()
    labels = {e: read_labels(s, manifest) for e, s in manifest.tenant_labels.items()}
    normalized = {
        e: normalize_frame(e, extract_entity(manifest, e).frame, rules, SHAPES[e], labels=labels.get(e)) for e in SHAPES
    }
    slices = {
        slug: slice_tenant(normalized, rules.tenants.by_slug(slug), rules.create_missing)
        for slug in ("pharma", "digital-health")
    }
    return rules, normalized, slices


def test_every_row_is_read_and_accounted_for(vital):
    _, normalized, slices = vital
    assert {e: n.read for e, n in normalized.items()} == READ
    for part in slices.values():
        for e, s in part.entities.items():
            assert s.read + s.created == s.loaded + s.quarantined.height + s.skipped, e


def test_agents_labelled_for_both_tenants_land_in_both(vital):
    rules, normalized, slices = vital
    labels = json.loads((SHARED_VITAL / "exports" / "agent_tenant_labels.json").read_text())
    agent_ids = {a["id"] for a in json.loads((SHARED_VITAL / "exports" / "agents.json").read_text())}
    both = {
        r["agent_id"]
        for r in labels
        if r["agent_id"] in agent_ids and set(r["tenants"]) == {"pharma", "digital_health"}
    }
    assert len(both) == 10
    pharma = set(slices["pharma"].entities["agents"].rows["legacy_key"])
    dh = set(slices["digital-health"].entities["agents"].rows["legacy_key"])
    assert pharma & dh == both
    assert len(pharma | dh) == 8 + 254  # the 8 agents of the legacy database have no labels: pharma by default
    ids = set(slices["pharma"].entities["agents"].rows["id"]) & set(
        slices["digital-health"].entities["agents"].rows["id"]
    )
    assert ids == set(), "the same agent in two tenants must be two rows with two ids"
    areas = set(rules.enum("functional_area").labels)
    for part in slices.values():
        assert set(part.entities["agents"].rows["functional_area"]) <= areas
        assert part.entities["agents"].rows["functional_area"].null_count() == 0


def test_prompts_allowed_tenants_become_assignments(vital):
    _, normalized, _ = vital
    rules_used = normalized["prompts"].rows["tenant_rule"].value_counts().sort("tenant_rule")
    assert dict(rules_used.iter_rows()) == {"default": 147, "legacy_ids: allowed_tenants": 853}
    assert normalized["prompts"].rows["tenants"].list.len().min() == 2  # platform ids mean every tenant


def test_every_jtbd_gets_a_valid_inferred_area(vital):
    rules, normalized, _ = vital
    jtbd = normalized["jobs_to_be_done"].rows
    assert jtbd.height == 3 + 127
    assert set(jtbd["functional_area"]) <= set(rules.enum("functional_area").labels)
    assert jtbd["functional_area_rule"].null_count() == 0
    assert jtbd.filter(pl.col("code") == "JTBD_001")["functional_area"][0] == "Clinical"
    assert jtbd["functional_area"].n_unique() >= 5  # inference spreads the library, not one bucket


def test_notion_org_structure_links(vital):
    _, _, slices = vital
    part = slices["pharma"]
    assert part.junctions["role_responsibilities"].height > 100
    assert part.junctions["department_roles"].height > 100
    assert part.junctions["function_departments"].height == 31
    report = part.link_report["role_responsibilities"]
    assert report["unresolved"] > 0 and "'RESP-201' (org_responsibilities)" in report["examples"]


def test_other_entities(vital):
    _, _, slices = vital
    pharma, dh = slices["pharma"].entities, slices["digital-health"].entities
    # the legacy jtbd_core.target_personas ('physicians', ...) become persona rows (rules/references.yaml)
    assert pharma["personas"].loaded - pharma["personas"].created == 43
    assert dh["personas"].loaded - dh["personas"].created == 18
    assert pharma["tools"].loaded == dh["tools"].loaded == 6 + 94
    # the agents' free-form capabilities that are not in the registry become capability rows
    assert pharma["capabilities"].loaded == 397 + pharma["capabilities"].created
    assert pharma["capabilities"].created > 50
    assert slices["pharma"].link_report["agent_capabilities"]["unresolved"] == 0
    assert pharma["knowledge_domains"].loaded == 63
    assert pharma["knowledge_documents"].loaded == dh["knowledge_documents"].loaded == 47
    assert (
        pharma["agents"]
        .rows.filter(pl.col("legacy_key") == "ed83433a-c04d-4789-9fde-5bf4310a8f73")["system_prompt"][0]
        .startswith("YOU ARE: Anticoagulation Specialist")
    )
    assert "\\n" not in "".join(pharma["agents"].rows["system_prompt"].to_list())


def test_flow_dry_run_for_both_tenants(pg_server, prefect_harness):
    from flows.migrate import migrate_tenant

    for tenant, agents in (("pharma", 8 + 253), ("digital-health", 11)):
        summary = migrate_tenant(tenant=tenant, manifest=str(MANIFEST), dry_run=True)
        assert summary["reconciled"] is True
        assert summary["entities"]["agents"] == {
            "read": 262,
            "created": 0,
            "loaded": agents,
            "quarantined": 0,
            "skipped": 262 - agents,
            "embedded": 0,
            "reused": 0,
            "written": 0,
            "unchanged": 0,
            "retries": 0,
        }
        for e, c in summary["entities"].items():
            assert c["read"] + c["created"] == c["loaded"] + c["quarantined"] + c["skipped"], e
        assert summary["junctions"]["role_responsibilities"]["rows"] > 100
