"""A re-run with nothing changed gives no batch a task, junction tables included: a junction
batch is compared with the target's own rows. A junction row that moved in the target (its
values, a soft delete) sends its batch again, and the run puts it back."""

from __future__ import annotations

import psycopg
import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from flows.migrate import migrate_tenant

from test_migrate_sample import contents, sample_env  # noqa: F401 (a fixture)


@pytest.fixture
def load_tasks(monkeypatch) -> list[dict]:
    """The parameters of every embed-and-load task submitted from now on."""
    submitted: list[dict] = []
    submit = ThreadPoolTaskRunner.submit

    def recording(self, task, parameters, *args, **kwargs):
        if task.name == "embed-and-load":
            submitted.append(parameters)
        return submit(self, task, parameters, *args, **kwargs)

    monkeypatch.setattr(ThreadPoolTaskRunner, "submit", recording)
    return submitted


def test_a_no_change_rerun_submits_no_load_task_and_a_moved_link_sends_only_its_batch(sample_env, load_tasks):  # noqa: F811
    target = sample_env["target"]
    first = migrate_tenant(tenant="pharma")
    linked = sorted(j for j, c in first["junctions"].items() if c["rows"])
    assert len(linked) >= 2 and {p["table"] for p in load_tasks} >= set(linked)
    before = contents(target)

    load_tasks.clear()
    second = migrate_tenant(tenant="pharma")
    assert load_tasks == []  # no batch file, no task: entities and junctions alike
    assert {j: (c["rows"], c["written"]) for j, c in second["junctions"].items()} == {
        j: (c["rows"], 0) for j, c in first["junctions"].items()
    }
    assert contents(target) == before

    moved, hidden = linked[:2]
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {moved} SET metadata = metadata || '{{\"edited\": true}}' "
            f"WHERE ctid = (SELECT ctid FROM {moved} LIMIT 1)"
        )
        conn.execute(f"UPDATE {hidden} SET deleted_at = now() WHERE ctid = (SELECT ctid FROM {hidden} LIMIT 1)")
    load_tasks.clear()
    third = migrate_tenant(tenant="pharma")
    assert sorted(p["table"] for p in load_tasks) == sorted([moved, hidden])  # one batch each
    assert {j: c["written"] for j, c in third["junctions"].items() if c["written"]} == {moved: 1, hidden: 1}
    assert {j: c["rows"] for j, c in third["junctions"].items()} == {
        j: c["rows"] for j, c in first["junctions"].items()
    }
    assert all(c["written"] == 0 for c in third["entities"].values())
    assert contents(target) == before
