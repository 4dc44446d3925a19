"""Decisions on the real VITAL exports (../shared/vital, read in place): every inferred value
has its source, confidence and evidence; the Notion org areas follow their own functions;
technical_cmc capabilities are Manufacturing and safety prompts Regulatory; and a review round
trip (export, fill two decisions, import, re-run) applies them, keeps them on a second re-run,
and reports an override whose row is gone."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from core.identity import tenant_id
from flows.migrate import migrate_tenant
from tasks import review

from conftest import SHARED_VITAL, bootstrap

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "bench" / "quality" / "manifest.yaml"  # the exports, without the legacy dump
CLI = ROOT / ".venv" / "bin" / "vital-etl"
AREA_TABLES = (
    "org_functions",
    "org_departments",
    "org_roles",
    "capabilities",
    "personas",
    "jobs_to_be_done",
    "agents",
    "prompts",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_VITAL.is_dir(), reason="../shared/vital is not beside this checkout"),
]


@pytest.fixture(scope="module")
def vital(pg_server, prefect_harness, tmp_path_factory):
    dsn = pg_server.dsn("vital_decisions")
    bootstrap(dsn)
    overrides = tmp_path_factory.mktemp("overrides")
    mp = pytest.MonkeyPatch()
    mp.setenv("VITAL_TARGET_DSN", dsn)
    mp.setattr(review, "OVERRIDES_DIR", overrides)  # never the checkout's rules/overrides/
    first = migrate_tenant(tenant="pharma", manifest=str(MANIFEST))
    yield {"dsn": dsn, "overrides": overrides, "first": first, "tmp": tmp_path_factory.mktemp("review")}
    mp.undo()


def _rows(dsn: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def test_every_area_has_source_confidence_and_evidence_and_each_kind_occurs(vital):
    dsn, pharma = vital["dsn"], str(tenant_id("pharma"))
    kinds = set()
    for table in AREA_TABLES:
        missing = _rows(
            dsn,
            f"""SELECT count(*) FROM {table} WHERE tenant_id = %s AND (functional_area_source IS NULL
                OR functional_area_confidence IS NULL OR functional_area_evidence IS NULL
                OR functional_area_evidence = '{{}}'::jsonb)""",
            (pharma,),
        )[0][0]
        assert missing == 0, table
        kinds |= {
            r[0]
            for r in _rows(
                dsn, f"SELECT DISTINCT functional_area_source::text FROM {table} WHERE tenant_id = %s", (pharma,)
            )
        }
    # areas come from the sources (explicit, inherited), the model and keyword rules
    assert {"explicit", "inherited", "model", "rule"} <= kinds
    # tenants no source names are decided by the default of rules/tenancy.yaml
    sources = {r[0] for r in _rows(dsn, "SELECT DISTINCT source::text FROM etl.decisions WHERE tenant_slug = 'pharma'")}
    assert {"default", "rule", "model", "inherited"} <= sources
    # one of each, with its evidence, as a reviewer sees it
    example = {}
    for table in AREA_TABLES:
        for src, conf, ev in _rows(
            dsn,
            f"""SELECT DISTINCT ON (functional_area_source) functional_area_source::text, functional_area_confidence,
                functional_area_evidence FROM {table} WHERE tenant_id = %s ORDER BY functional_area_source, legacy_key""",
            (pharma,),
        ):
            example.setdefault(src, (table, conf, ev))
    assert 0 < example["explicit"][1] <= 1 and example["explicit"][2]["explicit"]
    assert example["inherited"][2]["inherited"][0]["link"] in (
        "function_roles",
        "department_roles",
        "function_departments",
    )
    assert example["model"][2]["model"]["nearest"] and 0.5 <= example["model"][1] <= 0.95
    assert example["rule"][2]["rule"]["keywords"]
    # inferred links keep their score and evidence
    for junction in ("jtbd_personas", "agent_jtbds", "persona_roles"):
        bad = _rows(
            dsn,
            f"""SELECT count(*) FROM {junction} WHERE tenant_id = %s AND mapping_source = 'ml_model'
                AND (relevance_score IS NULL OR NOT metadata ? 'evidence')""",
            (pharma,),
        )[0][0]
        assert bad == 0, junction


def test_org_areas_follow_their_notion_functions(vital):
    dsn, pharma = vital["dsn"], str(tenant_id("pharma"))
    for table, junction, col in (
        ("org_roles", "function_roles", "role_id"),
        ("org_departments", "function_departments", "department_id"),
    ):
        wrong = _rows(
            dsn,
            f"""SELECT x.legacy_key, x.functional_area::text, array_agg(f.functional_area::text)
                FROM {table} x JOIN {junction} j ON j.{col} = x.id AND j.tenant_id = x.tenant_id
                JOIN org_functions f ON f.id = j.function_id
                WHERE x.tenant_id = %s AND x.functional_area_source <> 'override'
                GROUP BY 1, 2 HAVING NOT x.functional_area::text = ANY(array_agg(f.functional_area::text))""",
            (pharma,),
        )
        assert wrong == [], table
    # a role whose Notion function names no area of its own (Pharmacovigilance) maps through synonyms
    assert _rows(
        dsn, "SELECT functional_area::text FROM org_roles WHERE tenant_id = %s AND name = 'Safety Physician'", (pharma,)
    ) == [("Regulatory",)]


def test_technical_cmc_capabilities_are_manufacturing_and_safety_prompts_regulatory(vital):
    dsn, pharma = vital["dsn"], str(tenant_id("pharma"))
    cmc = _rows(
        dsn,
        "SELECT DISTINCT functional_area::text, count(*) FROM capabilities WHERE tenant_id = %s AND category = 'technical_cmc' GROUP BY 1",
        (pharma,),
    )
    assert cmc == [("Manufacturing", 42)]
    safety = _rows(
        dsn,
        "SELECT DISTINCT functional_area::text, count(*) FROM prompts WHERE tenant_id = %s AND category = 'safety' GROUP BY 1",
        (pharma,),
    )
    assert safety == [("Regulatory", 4)]


def test_review_round_trip(vital):
    dsn, tmp, pharma = vital["dsn"], vital["tmp"], str(tenant_id("pharma"))
    assert vital["first"]["decisions"]["below_threshold_unreviewed"] > 0
    out = tmp / "review-pharma.csv"
    env = {**os.environ, "VITAL_TARGET_DSN": dsn}
    done = subprocess.run(
        [str(CLI), "review", "export", "--tenant", "pharma", "--out", str(out)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert rows and all(r["decision"] == "" for r in rows)
    assert [float(r["confidence"]) for r in rows] == sorted(float(r["confidence"]) for r in rows)

    area = next(r for r in rows if r["kind"] == "area" and r["entity"] == "jobs_to_be_done" and r["source"] == "model")
    area["decision"] = "Legal" if area["value"] != "Legal" else "Finance"
    link = next(r for r in rows if r["kind"] == "link" and r["value"] == "ml_model" and r["entity"] == "agent_jtbds")
    link["decision"] = "accept"
    gone = dict(area, key="JTBD_999", decision="Quality")
    filled = tmp / "filled.csv"
    with filled.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows + [gone])
    result = review.import_decisions(filled, folder=vital["overrides"])
    assert (result["imported"], result["empty"]) == (3, len(rows) - 2)

    second = migrate_tenant(tenant="pharma", manifest=str(MANIFEST))
    state = _state(dsn, pharma, area["key"], link)
    assert state["area"][:2] == (area["decision"], "override")
    assert state["link"][0] == "expert_review"
    stale = second["decisions"]["stale_overrides"]
    assert len(stale) == 1 and "JTBD_999" in stale[0] and "matches no row of pharma" in stale[0]
    reviewed = _rows(
        dsn,
        "SELECT reviewed FROM etl.decisions WHERE tenant_slug = 'pharma' AND kind = 'area' AND legacy_key = %s",
        (area["key"],),
    )
    assert reviewed == [(True,)]

    third = migrate_tenant(tenant="pharma", manifest=str(MANIFEST))
    assert _state(dsn, pharma, area["key"], link) == state  # unchanged, updated_at included
    assert third["decisions"]["stale_overrides"] == stale


def _state(dsn: str, tenant: str, jtbd: str, link: dict) -> dict:
    area = _rows(
        dsn,
        """SELECT functional_area::text, functional_area_source::text, functional_area_evidence, updated_at
           FROM jobs_to_be_done WHERE tenant_id = %s AND legacy_key = %s""",
        (tenant, jtbd),
    )[0]
    pair = _rows(
        dsn,
        """SELECT j.mapping_source::text, j.relevance_score, j.metadata, j.created_at FROM agent_jtbds j
           JOIN agents a ON a.id = j.agent_id JOIN jobs_to_be_done t ON t.id = j.jtbd_id
           WHERE j.tenant_id = %s AND a.legacy_key = %s AND t.legacy_key = %s""",
        (tenant, link["key"], link["target_key"]),
    )[0]
    return {"area": (area[0], area[1], json.dumps(area[2], sort_keys=True), area[3]), "link": pair}
