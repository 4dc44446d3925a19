"""The plan of a migrate-tenant run (tasks/plan.py) against a target migrated once for real
(the bundled sample): every change named, nothing written."""

from __future__ import annotations

import json

import psycopg
import pytest
from test_prune import TENANT, db_hashes, sample_copy, slice_run  # noqa: F401  (sample_copy: a fixture)

from core.identity import tenant_id
from tasks.plan import plan_changes, plan_markdown
from tasks.prune import prune_rows

TID = str(tenant_id(TENANT))
NEW_TOOL = {
    "name": "Veeva Vault",
    "slug": "veeva-vault",
    "description": "Veeva Vault integration.",
    "tool_type": "api",
    "integration_name": "veeva_vault",
    "is_active": True,
    "tags": ["sample", "api"],
    "metadata": {"vendor": "Sample Inc", "tier": 2},
}


def _edit_tools(folder) -> dict:
    """One tool edited, the last removed, one added; returns their legacy keys."""
    path = folder / "exports" / "tools.json"
    tools = json.loads(path.read_text())
    tools[1]["description"] = "FDA label lookup, now with boxed warnings."
    removed = tools.pop()
    path.write_text(json.dumps([*tools, NEW_TOOL], indent=2))
    return {"edited": tools[1]["slug"], "removed": removed["slug"], "added": NEW_TOOL["slug"]}


def _plan(env, run, prune=False, max_delete_ratio=None) -> dict:
    """plan_tenant through its task, on VITAL_TARGET_DSN (env.target)."""
    return plan_changes.fn(run.part, run.decided, run.complete, prune, max_delete_ratio)


def test_a_plan_names_the_one_update_insert_and_removal_and_writes_nothing(sample_copy):  # noqa: F811
    env = sample_copy
    keys = _edit_tools(env.folder)
    before = db_hashes(env.target)
    run = slice_run(TENANT, env.manifest, decide=True)
    plan = _plan(env, run)
    assert db_hashes(env.target) == before
    assert json.loads(json.dumps(plan)) == plan  # JSON as it is

    tools = plan["tables"]["tools"]
    assert tools["insert"] == [keys["added"]]
    assert list(tools["update"]) == [keys["edited"]]
    assert {"description", "content_sha256", "embedding"} == set(tools["update"][keys["edited"]])
    assert tools["unchanged"] == 3
    assert tools["kept"] == [keys["removed"]] and tools["remove"] == []  # prune not asked: reported, kept
    others = {t: p for t, p in plan["tables"].items() if t != "tools"}
    assert {t for t, p in others.items() if p["insert"] or p["update"] or p["remove"] or p["kept"]} == set()
    assert all(p["unchanged"] for t, p in others.items() if p["kind"] == "entity"), others
    assert plan["totals"] | {"unchanged": 0} == {"insert": 1, "update": 1, "unchanged": 0, "remove": 0, "kept": 1}
    assert plan["embed"]["texts"] == 2 and plan["embed"]["by_table"] == {"tools": 2}
    assert plan["embed"]["rate_per_s"] > 0 and plan["embed"]["estimated_s"] > 0
    d = plan["decisions"]
    # the tenant each tool got (rules/tenancy.yaml's default) is a decision: the new tool's comes, the removed one's goes
    assert (d["insert"], d["update"], d["remove"], d["overrides"]) == (
        [f"tenant tools {keys['added']}"],
        {},
        [f"tenant tools {keys['removed']}"],
        [],
    )
    assert d["unchanged"] > 100
    assert plan["prune"] == "keep" and plan["guard"]["refused"] is None

    pruned = _plan(env, run, prune=True, max_delete_ratio=0.5)
    assert pruned["tables"]["tools"]["remove"] == [keys["removed"]] and pruned["tables"]["tools"]["kept"] == []
    assert pruned["totals"]["remove"] == 1 and pruned["prune"] == "delete" and pruned["guard"]["refused"] is None
    refused = _plan(env, run, prune="soft")  # rules/prune.yaml: 0.1, and 1 of 5 tools is 20%
    assert refused["prune"] == "hide"
    assert refused["guard"]["refused"].startswith(
        "prune refused: the run would remove tools 1 of 5 rows (20%) of pharma, more than max_delete_ratio 0.1 allows"
    )
    assert db_hashes(env.target) == before

    md = plan_markdown(pruned)
    assert "| tools | 1 | 1 | 3 | 1 | 0 |" in md
    assert f"- update: `{keys['edited']} (content_sha256, description, embedding)`" in md
    assert "2 text(s) to embed" in md
    assert "**The run would be refused:**" in plan_markdown(refused)


def test_a_subset_run_plans_no_removal(sample_copy):  # noqa: F811
    env = sample_copy
    keys = _edit_tools(env.folder)
    run = slice_run(TENANT, env.manifest, entities=["tools"])
    assert not run.complete
    plan = _plan(env, run, prune=True, max_delete_ratio=1.0)
    assert list(plan["tables"]) == ["tools"]
    tools = plan["tables"]["tools"]
    assert (tools["insert"], list(tools["update"]), tools["remove"], tools["kept"]) == (
        [keys["added"]],
        [keys["edited"]],
        [],
        [],
    )
    assert plan["prune"] == "keep" and "subset" in plan_markdown(plan)


def test_a_hidden_row_back_in_the_sources_is_planned_as_an_update_of_deleted_at(sample_copy):  # noqa: F811
    env = sample_copy
    original = (env.folder / "exports" / "tools.json").read_text()
    keys = _edit_tools(env.folder)
    run = slice_run(TENANT, env.manifest)
    with psycopg.connect(env.target, autocommit=True) as conn:
        gone = conn.execute("SELECT id::text FROM tools WHERE legacy_key = %s", (keys["removed"],)).fetchone()[0]
        assert prune_rows(conn, TID, {"tools": [gone]}, soft=True) == {"tools": 1}
    (env.folder / "exports" / "tools.json").write_text(original)
    run = slice_run(TENANT, env.manifest, decide=True)
    plan = _plan(env, run, prune="soft")
    tools = plan["tables"]["tools"]
    assert tools["update"] == {keys["removed"]: ["deleted_at"]} and tools["insert"] == [] and tools["remove"] == []
    assert plan["embed"]["texts"] == 0


def test_the_cli_passes_plan_and_prune_only_to_a_flow_that_takes_them():
    from types import SimpleNamespace

    from core.errors import VitalError
    from local.cli import _plan_prune_parameters

    args = SimpleNamespace(plan=True, prune="soft", max_delete_ratio=0.5)
    wired = SimpleNamespace(fn=lambda tenant, plan=False, prune=False, max_delete_ratio=None: None)
    assert _plan_prune_parameters(args, wired) == {"plan": True, "prune": "soft", "max_delete_ratio": 0.5}
    args = SimpleNamespace(plan=False, prune="hard", max_delete_ratio=None)
    assert _plan_prune_parameters(args, wired) == {"prune": True}
    args = SimpleNamespace(plan=False, prune=None, max_delete_ratio=None)
    assert _plan_prune_parameters(args, SimpleNamespace(fn=lambda tenant: None)) == {}
    args = SimpleNamespace(plan=True, prune=None, max_delete_ratio=None)
    with pytest.raises(VitalError, match=r"^this migrate-tenant has no parameter plan; nothing was run$"):
        _plan_prune_parameters(args, SimpleNamespace(fn=lambda tenant: None))
