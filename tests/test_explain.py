"""`vital-etl explain`: one row of a real migrated target, explained from the row and etl.*
only: its source and row number, enum mappings, tenant rule, area evidence, decisions, runs,
quarantine history and links; a quarantined row shows its reason; an unknown key is one line."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core.identity import tenant_id
from flows.migrate import migrate_tenant
from sources import sample
from tasks.explain import describe_enum, enum_mappings, explain_row, render_text, runs_at
from tasks.normalize.rules import enum_key, load_rules

from conftest import SHARED_VITAL, bootstrap
from test_migrate_sample import CLI

RULES = load_rules()
ENUMS = RULES.enums


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "enum, raw, value, said",
    [
        ("agent_status", "inactive", "archived", "rules/enums.yaml agent_status.synonyms: 'archived' lists 'inactive'"),
        ("agent_status", "active", "active", "rules/enums.yaml agent_status: the label itself"),
        (
            "agent_status",
            "ACTIVE",
            "active",
            "rules/enums.yaml agent_status: the label 'active', spelled differently (case, '_', '-' and spaces are "
            "ignored)",
        ),
        (
            "functional_area",
            "Regulatory Affairs",
            "Clinical",
            "rules/enums.yaml functional_area: maps it to 'Regulatory' today, but the row holds 'Clinical' "
            "(decided otherwise: see the area)",
        ),
        (
            "agent_status",
            "Astrology",
            "active",
            "rules/enums.yaml agent_status: no mapping for it today (the row holds 'active')",
        ),
    ],
)
def test_describe_enum_says_which_rule_maps_a_raw_spelling(enum, raw, value, said):
    assert describe_enum(ENUMS[enum], raw, value) == said


def test_enum_mappings_tie_each_raw_spelling_to_its_column():
    row = {
        "status": "archived",
        "functional_area": "Regulatory",
        "validation_status": None,
        "data_classification": "internal",
        "functional_area_source": "explicit",
        "metadata": {
            "legacy_status": "inactive",
            "legacy_business_function": "Regulatory Affairs",
            "legacy_capabilities": ["kol_mapping"],  # a raw array kept beside its links: no enum
            "owner": "someone",
        },
    }
    columns = {
        "status": "agent_status",
        "functional_area": "functional_area",
        "validation_status": "validation_status",
        "data_classification": "data_classification",
        "functional_area_source": "decision_source",  # not a rules/enums.yaml enum: not listed
    }
    evidence = {"explicit": [{"area": "Regulatory", "column": "business_function", "value": "Regulatory Affairs"}]}
    assert enum_mappings(row, columns, ENUMS, evidence) == [
        {
            "column": "functional_area",
            "field": "business_function",
            "raw": "Regulatory Affairs",
            "value": "Regulatory",
            "enum": "functional_area",
            "rule": "rules/enums.yaml functional_area.synonyms: 'Regulatory' lists 'regulatory affairs'",
            "matched_by": "area evidence",
        },
        {
            "column": "status",
            "field": "status",
            "raw": "inactive",
            "value": "archived",
            "enum": "agent_status",
            "rule": "rules/enums.yaml agent_status.synonyms: 'archived' lists 'inactive'",
            "matched_by": "field name",
        },
        {
            "column": "data_classification",
            "field": None,
            "raw": None,
            "value": "internal",
            "enum": "data_classification",
            "rule": "no raw spelling kept: the source had no value (the column default applies)",
            "matched_by": None,
        },
    ]


def test_runs_at_names_the_runs_going_on_at_a_time():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    runs = [
        {
            "id": "a",
            "flow": "migrate-tenant",
            "status": "completed",
            "started_at": t0,
            "finished_at": t0 + timedelta(minutes=5),
        },
        {
            "id": "b",
            "flow": "migrate-tenant",
            "status": "running",
            "started_at": t0 + timedelta(hours=1),
            "finished_at": None,
        },
    ]
    assert [r["id"] for r in runs_at(runs, t0 + timedelta(minutes=1))] == ["a"]
    assert [r["id"] for r in runs_at(runs, t0 + timedelta(hours=2))] == ["b"]
    assert runs_at(runs, t0 + timedelta(minutes=30)) == []
    assert runs_at(runs, None) == []


# --- the bundled sample, migrated for real ---------------------------------------------------


@pytest.fixture(scope="module")
def migrated(pg_server, prefect_harness):
    """The sample's legacy DB and files, migrated once for pharma (with the real model)."""
    source, target = pg_server.dsn("explain_src"), pg_server.dsn("explain_tgt")
    mp = pytest.MonkeyPatch()
    mp.setenv("VITAL_SOURCE_DSN", source)
    mp.setenv("VITAL_TARGET_DSN", target)
    s = sample.generate()
    sample.write_files(s, sample.sample_dir())
    sample.build_legacy_db(s, source)
    bootstrap(target)
    summary = migrate_tenant(tenant="pharma")
    yield {"dsn": target, "sample": s, "run_id": summary["run_id"]}
    mp.undo()


def _pharma_keys(dsn: str, table: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {
            r[0]
            for r in conn.execute(f"SELECT legacy_key FROM {table} WHERE tenant_id = %s", (str(tenant_id("pharma")),))
        }


def _an_agent(migrated) -> tuple[int, dict]:
    """The first legacy-database agent loaded into pharma whose status and business function
    are legacy spellings that rules/enums.yaml maps by synonym."""
    loaded = _pharma_keys(migrated["dsn"], "agents")
    status, area = ENUMS["agent_status"], ENUMS["functional_area"]
    for i, a in enumerate(migrated["sample"].tables["agents"]):
        bf = a["business_function"]
        if (
            a["id"] in loaded
            and a["status"] == "inactive"
            and area.map(bf)
            and enum_key(area.map(bf)) != enum_key(bf)
            and status.map(a["status"]) == "archived"
        ):
            return i, a
    raise AssertionError("the sample has no such agent")


def _legacy_row(migrated, agent_id: str) -> int:
    """The row's number in the legacy table, which is read in primary key (uuid) order."""
    ids = sorted(uuid.UUID(a["id"]) for a in migrated["sample"].tables["agents"])
    return ids.index(uuid.UUID(agent_id)) + 1


def test_an_agent_shows_its_source_row_enum_mappings_tenant_rule_and_links(migrated):
    i, agent = _an_agent(migrated)
    x = explain_row(migrated["dsn"], "pharma", entity="agents", key=agent["id"])
    assert x["status"] == "loaded"
    assert x["sources"] == [{"source": "postgres:public.agents", "row": _legacy_row(migrated, agent["id"])}]
    enums = {e["column"]: e for e in x["enums"]}
    assert (enums["status"]["raw"], enums["status"]["value"]) == ("inactive", "archived")
    assert enums["status"]["rule"] == "rules/enums.yaml agent_status.synonyms: 'archived' lists 'inactive'"
    area = ENUMS["functional_area"].map(agent["business_function"])
    assert (enums["functional_area"]["field"], enums["functional_area"]["raw"]) == (
        "business_function",
        agent["business_function"],
    )
    assert enums["functional_area"]["value"] == area == x["area"]["value"]
    assert x["area"]["source"] == "explicit"
    assert x["tenant_rule"]["rule"] == "explicit: label file"
    assert x["tenant_rule"]["label_file"]["agent_id"] == agent["id"]

    caps = [link for link in x["links"] if link["junction"] == "agent_capabilities"]
    assert {link["other_name"] for link in caps} == set(agent["capabilities"])
    assert all(
        link["mapping_source"] == "automated" and link["derived_from"]["agent_id"] == "postgres:public.agents"
        for link in caps
    )
    assert {link["junction"] for link in x["links"]} >= {"agent_capabilities", "agent_knowledge_domains"}
    previous = migrated["sample"].tables["agents"][i - 1]["id"]  # the sample names it compatible
    related = [(link["other_key"], link["kind"]) for link in x["links"] if link["junction"] == "agent_relations"]
    assert (previous, "compatible") in related or previous in x["other_etl"]["unresolved"]["compatible_agents"]

    assert [r["id"] for r in x["runs"]["first_loaded"]["runs"]] == [migrated["run_id"]]
    assert [r["id"] for r in x["runs"]["last_changed"]["runs"]] == [migrated["run_id"]]
    assert x["quarantine"] == []
    assert "***" in x["target"] or "password" not in x["target"]
    json.dumps(x)  # JSON-ready as it is

    text = render_text(x)
    assert f"Source\n  postgres:public.agents row {_legacy_row(migrated, agent['id'])}\n" in text
    assert f"  status = 'archived' from status 'inactive': {enums['status']['rule']}" in text
    assert "Tenant\n  rule: explicit: label file\n" in text
    assert "agent_capabilities -> capabilities " in text


def test_the_same_row_by_id(migrated):
    _, agent = _an_agent(migrated)
    by_key = explain_row(migrated["dsn"], "pharma", entity="agents", key=agent["id"])
    assert explain_row(migrated["dsn"], "pharma", row_id=by_key["id"]) == by_key


def test_a_quarantined_row_shows_its_reason(migrated):
    astrology = migrated["sample"].tables["agents"][0]  # business_function 'Astrology': no mapping
    x = explain_row(migrated["dsn"], "pharma", entity="agents", key=astrology["id"])
    assert (x["status"], x["id"], x["links"]) == ("quarantined", None, [])
    assert x["sources"] == [{"source": "postgres:public.agents", "row": _legacy_row(migrated, astrology["id"])}]
    [q] = x["quarantine"]
    assert q["reason"] == ENUMS["functional_area"].unknown_message("Astrology")
    assert [r["run_id"] for r in q["runs"]] == [migrated["run_id"]]
    assert q["payload"]["business_function"] == "Astrology"
    assert [r["id"] for r in x["runs"]["quarantined_by"]] == [migrated["run_id"]]
    assert not any("source file" in n for n in x["not_recorded"])
    assert f"Quarantine (etl.quarantine)\n  {q['reason']} (in 1 run(s)" in render_text(x)


def test_an_inferred_link_shows_its_decision_and_evidence(migrated):
    with psycopg.connect(migrated["dsn"]) as conn:
        jtbd, agent = conn.execute(
            """SELECT j.legacy_key, a.legacy_key FROM agent_jtbds l
               JOIN jobs_to_be_done j ON j.id = l.jtbd_id JOIN agents a ON a.id = l.agent_id
               WHERE l.mapping_source = 'ml_model' ORDER BY 1, 2 LIMIT 1"""
        ).fetchone()
    x = explain_row(migrated["dsn"], "pharma", entity="jobs_to_be_done", key=jtbd)
    [link] = [link for link in x["links"] if link["other_key"] == agent]
    assert (link["junction"], link["mapping_source"], link["decided_by"]) == ("agent_jtbds", "ml_model", "model")
    assert 0 < link["relevance_score"] <= 1 and link["evidence"]["rules"] == "rules/links.yaml agent_jtbds"
    [decision] = [d for d in x["decisions"] if d["kind"] == "link" and d["key"] == agent]
    assert (decision["source"], decision["target_key"], decision["run_id"]) == ("model", jtbd, migrated["run_id"])
    assert x["area"]["source"] in {"explicit", "inherited", "model", "rule", "default", "override"}
    assert x["area"]["evidence"]


def test_cli_prints_the_explanation_as_json(migrated):
    _, agent = _an_agent(migrated)
    done = subprocess.run(
        [str(CLI), "explain", "--entity", "agents", "--key", agent["id"], "--tenant", "pharma", "--json"],
        env={**os.environ, "VITAL_TARGET_DSN": migrated["dsn"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    x = json.loads(done.stdout)
    assert (x["entity"], x["key"], x["status"]) == ("agents", agent["id"], "loaded")


def test_cli_unknown_key_is_one_line_and_a_nonzero_exit(migrated):
    done = subprocess.run(
        [str(CLI), "explain", "--entity", "agents", "--key", "no-such-agent", "--tenant", "pharma"],
        env={**os.environ, "VITAL_TARGET_DSN": migrated["dsn"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "vital-etl: no agents row with legacy key 'no-such-agent' in tenant 'pharma': the target has none, and "
        "etl.id_map, etl.quarantine and etl.decisions name none; check the key (as the source writes it) and the "
        "tenant\n"
    )


# --- one real VITAL agent (its exports only: no dump restore, no model) ----------------------


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_VITAL.is_dir(), reason="../shared/vital is not beside this checkout")
def test_a_real_vital_agent(pg_server, prefect_harness, tmp_path, monkeypatch):
    exports = SHARED_VITAL / "exports"
    manifest = tmp_path / "agents.yaml"
    manifest.write_text(
        "tenant_labels:\n"
        f"  agents: {{kind: json, path: {exports}/agent_tenant_labels.json, key: agent_id, labels: tenants}}\n"
        "entities:\n"
        f"  capabilities:\n    - {{kind: json, path: {exports}/capabilities.json}}\n"
        f"  knowledge_domains:\n    - {{kind: json, path: {exports}/knowledge_domains.json}}\n"
        f"  agents:\n    - {{kind: json, path: {exports}/agents.json}}\n"
    )
    dsn = pg_server.dsn("explain_vital")
    bootstrap(dsn)
    monkeypatch.setenv("VITAL_TARGET_DSN", dsn)
    run_id = migrate_tenant(tenant="pharma", manifest=str(manifest), embed=False)["run_id"]

    agents = json.loads((exports / "agents.json").read_text())
    first = agents[0]  # "Anticoagulation Specialist"
    x = explain_row(dsn, "pharma", entity="agents", key=first["id"])
    assert x["sources"] == [{"source": str(exports / "agents.json"), "row": 1}]
    enums = {e["column"]: (e["field"], e["raw"], e["value"]) for e in x["enums"]}
    assert enums["status"] == ("status", first["status"], ENUMS["agent_status"].map(first["status"]))
    assert enums["functional_area"] == ("business_function", first["business_function"], x["area"]["value"])
    assert x["tenant_rule"]["rule"] == "explicit: label file"
    caps = [link for link in x["links"] if link["junction"] == "agent_capabilities"]
    assert len(caps) == len(first["capabilities"].strip("{}").split(","))
    assert all(link["derived_from"]["agent_id"] == str(exports / "agents.json") for link in caps)
    assert [r["id"] for r in x["runs"]["first_loaded"]["runs"]] == [run_id]
