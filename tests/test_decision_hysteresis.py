"""A re-run keeps the confidence and evidence the target holds for a decision that did not
change (rules/decisions.yaml `keep_recorded_within`): the area model is fit on the tenant's
whole corpus, so one changed text moves every row's scores a little, and the rows whose area did
not change must not be rewritten. Also: deciding reads only the columns it needs, with the same
result as with every column."""

from __future__ import annotations

import csv
import json
from collections import Counter

import psycopg
import pytest
from test_decide import fake_vectors, tiny_slice

from core.errors import ConfigError, ConnectionFailed
from core.identity import tenant_id
from flows.migrate import migrate_tenant
from sources import sample
from tasks import decide, review
from tasks.decide import decide_columns, decide_slice, keep_recorded, load_decision_rules, numbers_within
from tasks.normalize.rules import load_rules

from conftest import bootstrap

RULES = load_rules()
EVIDENCE = {
    "model": {"area": "Quality", "margin": 0.198, "scores": {"Finance": 0.271, "Quality": 0.469}, "nearest": "x"},
    "explicit": [{"area": "Clinical", "column": "name"}],
    "low_margin": True,
}


def _with(path: tuple, value) -> dict:
    """EVIDENCE with the value at `path` replaced (a missing last key is added)."""
    out = json.loads(json.dumps(EVIDENCE))
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    "new, kept",
    [
        (EVIDENCE, True),
        (_with(("model", "margin"), 0.199), True),  # numbers within the tolerance
        (_with(("model", "scores", "Quality"), 0.489), True),  # exactly the tolerance
        (_with(("model", "scores", "Quality"), 0.49), False),  # beyond it
        (_with(("model", "nearest"), "y"), False),  # a string differs
        (_with(("model", "area"), "Finance"), False),
        (_with(("model", "scores", "HR"), 0.1), False),  # a key added
        (_with(("explicit",), []), False),  # a list shorter
        (_with(("low_margin",), 1), False),  # a boolean is not a number
        (_with(("model", "margin"), None), False),
    ],
)
def test_evidence_is_kept_when_only_its_numbers_moved_within_the_tolerance(new, kept):
    assert numbers_within(new, EVIDENCE, 0.02) is kept


def _cols(area="Quality", source="model", confidence=0.8, evidence=EVIDENCE) -> dict:
    return {
        "functional_area": area,
        "functional_area_source": source,
        "functional_area_confidence": confidence,
        "functional_area_evidence": json.dumps(evidence, ensure_ascii=False, sort_keys=True),
    }


def test_a_decision_keeps_what_the_target_holds_unless_it_changed():
    drifted = _cols(confidence=0.804, evidence=_with(("model", "margin"), 0.199))
    cases = {
        "drifted": (drifted, True),
        "same": (_cols(), True),
        "other area": (
            _cols(area="Finance") | {"functional_area_evidence": drifted["functional_area_evidence"]},
            False,
        ),
        "other source": (_cols(source="rule", confidence=0.804), False),
        "confidence beyond": (_cols(confidence=0.83), False),
        "override": (_cols(source="override", confidence=1.0), False),  # what the reviewer says now
    }
    recorded = {k: _cols(source="override" if k == "override" else "model") for k in cases} | {"gone": _cols()}
    rows = [{"id": k, **cols} for k, (cols, _) in cases.items()] + [{"id": "new", **drifted}]
    assert keep_recorded(rows, recorded, 0.02) == 2
    for r in rows[:-1]:
        assert (r == {"id": r["id"], **recorded[r["id"]]}) is cases[r["id"]][1], r["id"]
        if not cases[r["id"]][1]:
            assert r == {"id": r["id"], **cases[r["id"]][0]}
    assert rows[-1] == {"id": "new", **drifted}  # nothing recorded: as decided
    assert keep_recorded([{"id": "drifted", **drifted}], {"drifted": _cols()}, 0.0) == 0  # 0: the new numbers


def test_the_tolerance_is_checked(tmp_path):
    path = tmp_path / "decisions.yaml"
    good = (decide.RULES_DIR / "decisions.yaml").read_text()
    keys = ", ".join(decide.CONFIDENCE_KEYS)
    for text, wrong in (
        (good.replace("keep_recorded_within: 0.02", "keep_recorded_within: 2"), "keep_recorded_within"),
        (good.replace("keep_recorded_within: 0.02", "keep_recorded_within: yes"), "keep_recorded_within"),
        (good.replace("keep_recorded_within: 0.02", ""), "keep_recorded_within"),
        (good.replace("created: 0.5", "created: -1"), "confidence.created"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_decision_rules(path)
        assert str(err.value) == (
            f"{path}: needs review_below, keep_recorded_within and confidence.{{{keys}}}, each a number in 0..1; "
            f"wrong or missing: {wrong}"
        )
    assert load_decision_rules().keep_recorded_within == 0.02


def test_deciding_reads_only_its_columns_with_the_same_result(monkeypatch):
    prompts = ["id", "legacy_key", "name", "description", "prompt_starter", "body", "category", "tags", "metadata"]
    prompts += ["functional_area", "functional_area_source", "functional_area_confidence", "functional_area_evidence"]
    assert "metadata" not in decide_columns("prompts", prompts, RULES)  # no view, rule or link of a prompt reads it
    assert "tags" not in decide_columns("prompts", prompts, RULES)
    assert {"body", "prompt_starter", "description"} <= set(decide_columns("prompts", prompts, RULES))
    persona = tiny_slice().entities["personas"].rows.columns
    assert "metadata" in decide_columns("personas", persona, RULES)  # typical titles: a persona's text and titles
    assert "_source" not in decide_columns("personas", persona, RULES)

    def run():
        part = tiny_slice()
        decided = decide_slice(part, RULES, fake_vectors, overrides=review.Overrides("pharma"))
        return {e: s.rows for e, s in part.entities.items()}, part.junctions, decided.decisions

    subset = run()
    monkeypatch.setattr(decide, "decide_columns", lambda entity, columns, rules: list(columns))
    every = run()
    assert subset[2] == every[2]
    for got, want in zip(subset[:2], every[:2]):
        assert got.keys() == want.keys()
        for k in got:
            assert got[k].equals(want[k]), k


def test_a_target_without_recorded_areas_holds_nothing(fresh_dsn, monkeypatch):
    from core import connections

    part = tiny_slice()
    monkeypatch.setenv("VITAL_TARGET_DSN", fresh_dsn)  # a database without the schema
    assert decide.recorded_areas(part, dry_run=False) == {}
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:  # a table without the area columns
        conn.execute("CREATE TABLE personas (id uuid, tenant_id uuid, functional_area text)")
        assert decide.read_recorded_areas(conn, str(part.tenant.id), ["personas", "org_roles"]) == {}
    monkeypatch.setenv("VITAL_TARGET_DSN", "postgresql://postgres@127.0.0.1:1/vital")  # nothing listens
    monkeypatch.setattr(connections, "CONNECT_ATTEMPTS", 1)
    assert decide.recorded_areas(part, dry_run=True) == {}  # a dry run: nothing recorded
    with pytest.raises(ConnectionFailed):
        decide.recorded_areas(part, dry_run=False)  # a run that writes needs its target


# ---------------------------------------------------------------------------------------------
# end to end: migrate, change one row's text, migrate again


@pytest.fixture
def sample_env(fresh_dsn, pg_server, monkeypatch, prefect_harness, tmp_path):
    """The bundled sample (legacy DB + files), a bootstrapped target, overrides in tmp_path."""
    source = pg_server.dsn(f"src_{fresh_dsn.rsplit('/', 1)[-1].split('?')[0]}")
    monkeypatch.setenv("VITAL_SOURCE_DSN", source)
    monkeypatch.setenv("VITAL_TARGET_DSN", fresh_dsn)
    monkeypatch.setattr(review, "OVERRIDES_DIR", tmp_path)  # never the checkout's rules/overrides/
    s = sample.generate()
    sample.write_files(s, sample.sample_dir())
    sample.build_legacy_db(s, source)
    bootstrap(fresh_dsn)
    return {"source": source, "target": fresh_dsn, "overrides": tmp_path}


AREAS = ("agents", "prompts", "capabilities", "personas", "jobs_to_be_done")


def _areas(dsn: str) -> dict:
    """(table, legacy key) -> the area columns as the target holds them (evidence as its text)."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for t in AREAS:
            for key, *cols in conn.execute(
                f"""SELECT m.legacy_key, x.functional_area::text, x.functional_area_source::text,
                           x.functional_area_confidence, x.functional_area_evidence::text
                    FROM {t} x JOIN etl.id_map m ON m.id = x.id AND m.entity = %s WHERE x.tenant_id = %s""",
                (t, str(tenant_id("pharma"))),
            ):
                out[(t, key)] = tuple(cols)
    return out


def test_a_rerun_writes_only_the_changed_row_and_an_override_still_wins(sample_env):
    target = sample_env["target"]
    migrate_tenant(tenant="pharma")
    before = _areas(target)
    # a prompt whose area the model decided trains no prototype: its new text reaches the other
    # rows only through the corpus' mean and main directions, which move every score a little
    by_model = sorted(k for (t, k), v in before.items() if t == "prompts" and v[1] == "model")
    with psycopg.connect(sample_env["source"]) as conn:
        (changed,) = conn.execute(
            "UPDATE prompts SET description = description || ' Revised for the new label.' WHERE id = "
            "(SELECT id FROM prompts WHERE id::text = ANY(%s) AND description <> '' ORDER BY id LIMIT 1) "
            "RETURNING id::text",
            (by_model,),
        ).fetchone()

    second = migrate_tenant(tenant="pharma")
    after = _areas(target)
    assert len(before) > 100 and before.keys() == after.keys()
    # a row whose decision changed only in numbers, within the tolerance, keeps its recorded
    # confidence and evidence byte for byte; the rows that moved changed more than that (a near
    # tie that swapped two areas in the evidence, a margin that crossed min_margin) ...
    moved = {k for k in before if before[k] != after[k]} | {("prompts", changed)}
    for k in moved - {("prompts", changed)}:
        (area, source, conf, ev), (was_area, was_source, was_conf, was_ev) = after[k], before[k]
        assert (area, source) != (was_area, was_source) or not numbers_within(
            [conf, json.loads(ev)], [was_conf, json.loads(was_ev)], 0.02
        ), k
    # ... and they are all that is written
    assert {e: c["written"] for e, c in second["entities"].items() if c["written"]} == Counter(t for t, _ in moved)
    assert all(c["written"] == 0 for c in second["junctions"].values())
    assert len(moved) < len(before) / 20

    # a reviewer's decision wins over the recorded one
    key = next(k for k in by_model if k != changed)
    area = after[("prompts", key)][0]
    other = "Legal" if area != "Legal" else "Finance"
    answers = sample_env["overrides"] / "review.csv"
    with open(answers, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=review.COLUMNS)
        w.writeheader()
        row = {"tenant": "pharma", "kind": "area", "entity": "prompts", "key": key, "value": area}
        w.writerow({c: "" for c in review.COLUMNS} | row | {"decision": other})
    review.import_decisions(answers, folder=sample_env["overrides"])
    third = migrate_tenant(tenant="pharma")
    assert third["entities"]["prompts"]["written"] >= 1
    assert _areas(target)[("prompts", key)][:3] == (other, "override", 1.0)
