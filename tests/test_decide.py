"""Decisions from evidence, without a database or the model: explicit values through synonyms,
overrides first, the model's margin, keyword rules among near areas, links with a margin and a
cap per target, the review file's validation, and the whole decide step on a tiny slice."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json

import numpy as np
import polars as pl
import pytest

from core.errors import ConfigError
from tasks import review
from tasks.decide import decide_slice, load_decision_rules
from tasks.links import LinkRule, hub_corrected, load_link_rules, name_overlap, rank_links, title_parts
from tasks.normalize import SHAPES
from tasks.normalize.areas import AreaClassifier, ModelView, area_of, decide_area, rule_area
from tasks.normalize.base import normalize_frame
from tasks.normalize.resolve import slice_tenant
from tasks.normalize.rules import load_rules

RULES = load_rules()


def view(**scores: float) -> ModelView:
    """A model reading: area -> best similarity (prototype i)."""
    return ModelView(
        {a.replace("_", " "): (s, i) for i, (a, s) in enumerate(scores.items())}, [f"p{i}" for i in range(len(scores))]
    )


@pytest.mark.parametrize(
    "entity, values, area",
    [
        ("capabilities", {"category": "technical_cmc"}, "Manufacturing"),
        ("capabilities", {"category": "regulatory"}, "Regulatory"),
        ("prompts", {"category": "safety"}, "Regulatory"),
        ("prompts", {"category": "project"}, "Operations"),
        ("agents", {"business_function": "Pharmacovigilance"}, "Regulatory"),
        ("personas", {"function": "Medical Affairs - HEOR Leadership"}, "Medical Affairs"),
        ("org_roles", {"function_titles": ["Clinical Development"]}, "Clinical"),
    ],
)
def test_explicit_values_map_through_synonyms(entity, values, area):
    cols = area_of(entity, values, RULES)
    assert (cols["functional_area"], cols["functional_area_source"], cols["functional_area_confidence"]) == (
        area,
        "explicit",
        1.0,
    )
    assert json.loads(cols["functional_area_evidence"])["explicit"][0]["value"]


def test_a_topic_category_is_not_an_area():
    # "digital-health" would map to IT/Digital through the enum synonyms; prompts say it is a topic
    cols = area_of("prompts", {"category": "digital-health", "description": "zzz"}, RULES)
    assert cols["functional_area_source"] == "default"


def test_several_explicit_areas_are_chosen_by_the_model():
    cols = area_of("org_roles", {"function_titles": ["Research & Development", "Medical Affairs"], "name": "x"}, RULES)
    assert cols["functional_area_source"] == "explicit"
    decided = decide_area(cols, RULES, model=view(Medical_Affairs=0.6, Research_and_Development=0.5, Legal=0.9))
    ev = json.loads(decided["functional_area_evidence"])
    assert decided["functional_area"] == "Medical Affairs"  # Legal scores higher but is not a candidate
    assert ev["candidates"] == ["Medical Affairs", "Research & Development"]
    assert decided["functional_area_confidence"] <= RULES.areas.confidence["explicit_choice"]


def test_an_override_wins_and_keeps_what_was_inferred():
    cols = area_of("agents", {"business_function": "Legal"}, RULES)
    decided = decide_area(
        cols, RULES, override={"value": "Quality", "evidence": {"file": "x.csv"}}, model=view(Legal=0.9)
    )
    ev = json.loads(decided["functional_area_evidence"])
    assert (decided["functional_area"], decided["functional_area_source"], decided["functional_area_confidence"]) == (
        "Quality",
        "override",
        1.0,
    )
    assert ev["was"]["functional_area"] == "Legal"


def test_a_confident_model_lowers_the_confidence_of_an_explicit_value_but_not_the_value():
    cols = area_of("agents", {"business_function": "IT/Digital"}, RULES)
    decided = decide_area(cols, RULES, model=view(Clinical=0.6, IT_Digital=0.3))
    assert decided["functional_area"] == "IT/Digital"
    assert decided["functional_area_confidence"] == RULES.areas.confidence["explicit_contradicted"]
    assert json.loads(decided["functional_area_evidence"])["contradicted_by_model"]["area"] == "Clinical"


def test_inheritance_comes_before_the_model():
    cols = area_of("org_roles", {"name": "x"}, RULES)
    inherited = [{"link": "function_roles", "from": "FUNC-003 Regulatory Affairs", "area": "Regulatory"}]
    decided = decide_area(cols, RULES, inherited=inherited, model=view(Regulatory=0.5, Legal=0.49))
    assert (decided["functional_area"], decided["functional_area_source"]) == ("Regulatory", "inherited")
    assert decided["functional_area_confidence"] == RULES.areas.confidence["inherited"]


def test_the_model_decides_with_a_margin_and_keyword_rules_break_near_ties():
    cols = area_of("jobs_to_be_done", {"name": "zzz"}, RULES)
    sure = decide_area(
        cols, RULES, values={"name": "zzz"}, entity="jobs_to_be_done", model=view(Legal=0.6, Finance=0.4)
    )
    assert (sure["functional_area"], sure["functional_area_source"]) == ("Legal", "model")
    assert sure["functional_area_confidence"] == pytest.approx(min(0.95, 0.5 + 4 * 0.2))
    values = {"name": "negotiating payer coverage"}
    near = decide_area(cols, RULES, values=values, entity="jobs_to_be_done", model=view(Legal=0.5, Market_Access=0.48))
    assert (near["functional_area"], near["functional_area_source"]) == ("Market Access", "rule")
    ev = json.loads(near["functional_area_evidence"])
    assert ev["rule"]["among"] == ["Legal", "Market Access"] and ev["model"]["margin"] == pytest.approx(0.02)
    unsure = decide_area(cols, RULES, values={"name": "zzz"}, entity="jobs_to_be_done", model=view(Legal=0.5, HR=0.49))
    assert unsure["functional_area_source"] == "model" and json.loads(unsure["functional_area_evidence"])["low_margin"]


def test_no_decision_depends_on_the_order_of_the_areas():
    flipped = dataclasses.replace(
        RULES, areas=dataclasses.replace(RULES.areas, areas=tuple(reversed(RULES.areas.areas)))
    )
    for text in ("audit of the legal contract", "pricing and sales", "a trial protocol for a payer", "zzz"):
        values = {"name": text}
        assert rule_area(values, ("name",), RULES.areas) == rule_area(values, ("name",), flipped.areas)
    # a tie decides nothing
    assert rule_area({"name": "legal audit"}, ("name",), RULES.areas)[0] is None


def test_the_classifier_takes_the_nearest_prototype_after_removing_the_shared_direction():
    rng = np.random.default_rng(0)
    shared = np.ones(8) * 3
    a, b = np.eye(8)[0], np.eye(8)[1]
    corpus = np.array([shared + a, shared + b, shared + a * 0.9, shared + b * 1.1])
    clf = AreaClassifier.train(
        corpus,
        [("Legal", "contracts", shared + a), ("Finance", "accounting", shared + b)],
        [("agents", "Legal", shared + a + rng.normal(0, 0.01, 8)) for _ in range(3)],
        remove_components=0,
    )
    assert clf.labels[-1] == "agents whose area is Legal (3 rows)"
    scores = clf.scores(np.array([shared + a * 0.8]))[0]
    assert max(scores, key=lambda k: scores[k][0]) == "Legal"


def test_similarity_links_need_a_margin_and_respect_the_cap_per_target():
    src = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0]])
    src /= np.linalg.norm(src, axis=1, keepdims=True)
    dst = np.array([[1.0, 0.0], [0.98, 0.2], [0.0, 1.0]])
    dst /= np.linalg.norm(dst, axis=1, keepdims=True)
    areas = [{"Legal"}, {"Legal"}, {"Legal"}]
    rule = LinkRule(top_k=3, min_similarity=0.5, min_score=-9, window=0.5, margin=0.05, cap_per_target=1, hub_k=0)
    links = rank_links(["s1", "s2", "s3"], src, areas, ["t1", "t2", "t3"], dst, ["Legal"] * 3, rule)
    got = {(c.source, c.target) for c in links}
    # t1 and t2 are near ties for s1 and s2: both linked (the cut comes after them), but each
    # target keeps only its best source; s3 links t3 alone
    assert ("s3", "t3") in got and len({t for _, t in got}) == len(got)
    assert all(c.margin >= 0.05 for c in links)
    # a target of another area is never a candidate
    assert rank_links(["s3"], src[2:], [{"HR"}], ["t3"], dst[2:], ["Legal"], rule) == []
    # the same input gives the same links
    assert links == rank_links(["s1", "s2", "s3"], src, areas, ["t1", "t2", "t3"], dst, ["Legal"] * 3, rule)


def test_hub_correction_and_name_overlap():
    sims = np.array([[0.9, 0.8], [0.7, 0.2], [0.8, 0.3]])  # target 0 is close to everything
    corrected = hub_corrected(sims, 2)
    assert corrected[0].argmax() == 1 or corrected[0, 1] - corrected[0, 0] > sims[0, 1] - sims[0, 0]
    overlap = name_overlap(["Reimbursement Strategist"], ["securing reimbursement for DTx", "designing trials"])
    assert overlap[0, 0] > 0.2 and overlap[0, 1] == 0
    assert {"medical writer", "scientific publications"} <= title_parts("Medical Writer - Scientific Publications")


# ---------------------------------------------------------------------------------------------
# the review file


def _write(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=review.COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in review.COLUMNS})


ROW = {"tenant": "pharma", "kind": "area", "entity": "jobs_to_be_done", "key": "JTBD_001", "value": "Clinical"}


def test_review_import_places_decisions_and_replaces_earlier_ones(tmp_path):
    f = tmp_path / "r.csv"
    _write(
        f,
        [
            ROW | {"decision": "regulatory affairs"},  # a synonym: stored as its label
            ROW | {"key": "JTBD_002", "decision": "ok"},  # keep the exported value
            {
                "tenant": "pharma",
                "kind": "link",
                "entity": "agent_jtbds",
                "key": "a1",
                "target_key": "JTBD_001",
                "decision": "yes",
            },
            {"tenant": "pharma", "kind": "tenant", "entity": "capabilities", "key": "c1", "decision": "ok"},
            ROW | {"key": "JTBD_003"},  # no decision: skipped
        ],
    )
    out = review.import_decisions(f, folder=tmp_path / "overrides")
    assert out == {"imported": 4, "empty": 1, "replaced": 0, "files": [str(tmp_path / "overrides" / "pharma.csv")]}
    o = review.load_overrides("pharma", tmp_path / "overrides")
    assert o.area("jobs_to_be_done", "JTBD_001")["value"] == "Regulatory"
    assert o.area("jobs_to_be_done", "JTBD_002")["value"] == "Clinical"
    assert o.links("agent_jtbds") == {
        ("a1", "JTBD_001"): {
            "decision": "accept",
            "evidence": o._evidence(o.rows[("link", "agent_jtbds", "a1", "JTBD_001")]),
        }
    }
    assert o.reviewed("tenant", "capabilities", "c1")
    _write(f, [ROW | {"decision": "Quality"}])
    assert review.import_decisions(f, folder=tmp_path / "overrides")["replaced"] == 1
    assert (
        review.load_overrides("pharma", tmp_path / "overrides").area("jobs_to_be_done", "JTBD_001")["value"]
        == "Quality"
    )


def test_a_wrong_review_file_imports_nothing_and_names_each_line(tmp_path):
    f = tmp_path / "r.csv"
    _write(
        f,
        [
            ROW | {"decision": "Astrology"},
            ROW | {"tenant": "acme", "decision": "Legal"},
            {
                "tenant": "pharma",
                "kind": "link",
                "entity": "agent_jtbds",
                "key": "a1",
                "target_key": "t",
                "decision": "maybe",
            },
            {"tenant": "pharma", "kind": "tenant", "entity": "capabilities", "key": "c1", "decision": "digital-health"},
        ],
    )
    with pytest.raises(review.ReviewFileError) as err:
        review.import_decisions(f, folder=tmp_path / "overrides")
    lines = str(err.value).splitlines()
    assert lines[0] == "4 decision(s) cannot be imported; nothing was imported:"
    assert lines[1] == (
        f"  {f}:2: decision 'Astrology' is not a functional area; write one of Commercial, Medical Affairs, Market "
        "Access, Clinical, Regulatory, Research & Development, Manufacturing, Quality, Operations, IT/Digital, "
        "Legal, Finance, HR, Business Development, or `ok` to keep 'Clinical'"
    )
    assert lines[2] == f"  {f}:3: tenant 'acme' is not in rules/tenants.yaml (digital-health, pharma)"
    assert lines[3] == f"  {f}:4: a link decision is `accept` or `reject`, not 'maybe'"
    assert lines[4] == f"  {f}:5: a tenant decision can only be `ok` (reviewed); to change it, edit rules/tenancy.yaml"
    assert not (tmp_path / "overrides").exists()
    f.write_text("a,b\n1,2\n")
    with pytest.raises(review.ReviewFileError, match="missing column"):
        review.import_decisions(f, folder=tmp_path / "overrides")


def test_rule_files_are_checked(tmp_path):
    (tmp_path / "links.yaml").write_text("agent_jtbds: {top_k: 0}\n")
    with pytest.raises(ConfigError, match="agent_jtbds needs top_k >= 1"):
        load_link_rules(tmp_path / "links.yaml")
    (tmp_path / "links.yaml").write_text("agent_jtbds: {topk: 3}\n")
    with pytest.raises(ConfigError, match="unknown key 'topk'"):
        load_link_rules(tmp_path / "links.yaml")
    (tmp_path / "decisions.yaml").write_text("review_below: 2\nconfidence: {}\n")
    with pytest.raises(ConfigError, match="needs review_below"):
        load_decision_rules(tmp_path / "decisions.yaml")
    assert set(load_link_rules()) == {"persona_roles", "jtbd_personas", "agent_jtbds"}
    assert 0 < load_decision_rules().review_below < 1


# ---------------------------------------------------------------------------------------------
# the whole step on a tiny slice, with fake vectors


def _raw(records: list[dict], tenants: list[str] | None = None) -> pl.DataFrame:
    cols = list({k: None for r in records for k in r})
    frame = pl.DataFrame({c: [r.get(c) for r in records] for c in cols}, schema={c: pl.Utf8 for c in cols})
    return frame.with_columns(
        pl.lit("test.json").alias("_source"),
        pl.Series("_row", range(1, len(records) + 1)),
        pl.lit(json.dumps(tenants) if tenants else None, dtype=pl.Utf8).alias("_tenants"),
    )


def fake_vectors(texts: list[str]) -> np.ndarray:
    """Deterministic vectors: bag of hashed words (texts that share words are similar)."""
    out = np.zeros((len(texts), 64), np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
        out[i] /= np.linalg.norm(out[i]) or 1
    return out


def tiny_slice(prompts: list[dict] | None = None, spill_to=None):
    """spill_to: a folder for the rows' long texts (tasks/normalize/spill.py), as a run keeps them."""
    pharma = ["pharma"]
    normalized = {
        "org_functions": normalize_frame(
            "org_functions",
            _raw([{"Unique_ID": "FUNC-1", "Department_Name": "Regulatory Affairs"}], pharma),
            RULES,
            SHAPES["org_functions"],
        ),
        "org_roles": normalize_frame(
            "org_roles",
            _raw(
                [
                    {"Unique_ID": "R1", "Name": "Regulatory Writer", "Mapped_to_Functions": "FUNC-1"},
                    {"Unique_ID": "R2", "Name": "Brand Director", "Description": "marketing brand plans"},
                ],
                pharma,
            ),
            RULES,
            SHAPES["org_roles"],
        ),
        "personas": normalize_frame(
            "personas",
            _raw(
                [
                    {
                        "slug": "writer",
                        "name": "Regulatory Writer",
                        "title": "Regulatory Writer",
                        "department": "Regulatory Affairs",
                    }
                ],
                pharma,
            ),
            RULES,
            SHAPES["personas"],
        ),
        "jobs_to_be_done": normalize_frame(
            "jobs_to_be_done",
            _raw(
                [
                    {
                        "code": "J1",
                        "name": "preparing regulatory submissions",
                        "description": "When preparing submissions",
                    },
                    {"code": "J2", "name": "planning brand campaigns", "description": "When planning marketing"},
                ],
                pharma,
            ),
            RULES,
            SHAPES["jobs_to_be_done"],
        ),
    }
    if prompts:
        normalized["prompts"] = normalize_frame(
            "prompts", _raw(prompts, pharma), RULES, SHAPES["prompts"], spill_to=spill_to
        )
    return slice_tenant(normalized, RULES.tenants.by_slug("pharma"), RULES.create_missing)


def test_the_decide_step_on_a_tiny_slice(tmp_path):
    part = tiny_slice()
    decided = decide_slice(part, RULES, fake_vectors, overrides=review.Overrides("pharma"))
    roles = {r["legacy_key"]: r for r in part.entities["org_roles"].rows.iter_rows(named=True)}
    assert (roles["R1"]["functional_area"], roles["R1"]["functional_area_source"]) == ("Regulatory", "inherited")
    links = part.junctions["persona_roles"]
    assert links.height == 1 and links["mapping_source"][0] == "automated"  # the persona's title is the role's name
    assert json.loads(links["metadata"][0])["evidence"]["title"] == "regulatory writer"
    kinds = {(d.kind, d.entity) for d in decided.decisions}
    assert ("area", "org_roles") in kinds and ("link", "persona_roles") in kinds
    assert [d.confidence for d in decided.decisions] == sorted(d.confidence for d in decided.decisions)

    # a reviewer: J1 is Quality, the persona is not that role, and a row that does not exist
    _write(
        tmp_path / "r.csv",
        [
            ROW | {"key": "J1", "decision": "Quality"},
            {
                "tenant": "pharma",
                "kind": "link",
                "entity": "persona_roles",
                "key": "writer",
                "target_key": "R1",
                "decision": "reject",
            },
            ROW | {"key": "J9", "decision": "Legal"},
        ],
    )
    review.import_decisions(tmp_path / "r.csv", folder=tmp_path / "o")
    part = tiny_slice()
    decided = decide_slice(part, RULES, fake_vectors, overrides=review.load_overrides("pharma", tmp_path / "o"))
    jobs = {r["legacy_key"]: r for r in part.entities["jobs_to_be_done"].rows.iter_rows(named=True)}
    assert (jobs["J1"]["functional_area"], jobs["J1"]["functional_area_source"]) == ("Quality", "override")
    assert part.junctions["persona_roles"].height == 0
    assert len(decided.stale_overrides) == 1 and "'J9'" in decided.stale_overrides[0]

    # without vectors (migrate --no-embed): no model, no similarity links, still a decision per row
    part = tiny_slice()
    decide_slice(part, RULES, None, overrides=review.Overrides("pharma"))
    assert set(part.entities["jobs_to_be_done"].rows["functional_area_source"]) <= {"rule", "default"}


def test_etl_decisions_hold_the_last_run_and_each_tenant_sees_its_own(target_dsn):
    import psycopg

    from core.identity import tenant_id

    row = {
        "kind": "area",
        "entity": "jobs_to_be_done",
        "key": "J1",
        "target_key": "",
        "name": "x",
        "value": "Legal",
        "source": "model",
        "confidence": 0.6,
        "margin": 0.02,
        "evidence": "{}",
        "reviewed": False,
    }
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        for tenant in ("pharma", "digital-health"):
            assert review.write_decisions(conn, tenant, [row, row | {"key": "J2"}], None) == 2
        assert review.write_decisions(conn, "pharma", [row, row | {"key": "J2"}], None) == 0  # unchanged
        review.write_decisions(conn, "pharma", [row | {"value": "HR"}], None)  # J2 gone, J1 changed
        assert [(r["key"], r["value"]) for r in review.read_decisions(conn, "pharma")] == [("J1", "HR")]
        conn.execute("DROP ROLE IF EXISTS vital_review_reader")
        conn.execute("CREATE ROLE vital_review_reader NOLOGIN")
        conn.execute("GRANT USAGE ON SCHEMA etl TO vital_review_reader")
        conn.execute("GRANT SELECT ON etl.decisions TO vital_review_reader")
        try:
            conn.execute("SET ROLE vital_review_reader")
            assert conn.execute("SELECT count(*) FROM etl.decisions").fetchone()[0] == 0
            conn.execute("SELECT set_config('app.tenant_id', %s, false)", (str(tenant_id("digital-health")),))
            assert {r[0] for r in conn.execute("SELECT tenant_slug FROM etl.decisions")} == {"digital-health"}
        finally:
            conn.execute("RESET ROLE")
            conn.execute("DROP OWNED BY vital_review_reader")
            conn.execute("DROP ROLE vital_review_reader")


def _prompts(n: int) -> list[dict]:
    """Prompts of several areas; every third shares a template line (boilerplate), some name
    a category, some say nothing an area can be read from."""
    topics = ["adverse event safety reporting", "brand campaign marketing", "clinical trial protocol", "zzz qqq"]
    return [
        {
            "id": f"P{i}",
            "name": f"Prompt {i}",
            "category": "safety" if i % 5 == 0 else None,
            "description": f"{topics[i % 4]} case {i}" + ("\nAnswer in English, cite sources." if i % 3 == 0 else ""),
            "detailed_prompt": f"You are an expert in {topics[(i + 1) % 4]}.",
        }
        for i in range(40)
    ]


@pytest.mark.parametrize("vectors", [fake_vectors, None], ids=["model", "no-model"])
def test_deciding_in_chunks_gives_the_decisions_of_one_pass(monkeypatch, vectors):
    """A table no other decision reads (prompts) is turned into dicts a chunk at a time, its
    template lines counted over all chunks; the rows other steps read (parents, link ends) are
    held whole. The decisions, area columns and links equal those of one pass (numbers within
    float noise: the model scores a chunk at a time)."""
    import tasks.decide as decide

    def run(chunk: int):
        monkeypatch.setattr(decide, "DECIDE_CHUNK_ROWS", chunk)
        part = tiny_slice(_prompts(40))
        decided = decide_slice(part, RULES, vectors, overrides=review.Overrides("pharma"))
        rows = decide._Rows(tiny_slice(_prompts(40)), RULES)
        return part, decided, rows

    whole, one_pass, rows_whole = run(10_000)
    chunked, in_chunks, rows_chunked = run(3)
    assert set(rows_chunked.held) == {"org_functions", "org_roles", "personas", "jobs_to_be_done"}
    assert rows_chunked.common["prompts"] == rows_whole.common["prompts"] != set()  # the template line
    first = next(rows_chunked.chunks("prompts"))
    assert len(first) == 3 and all("Answer in English" not in (r["description"] or "") for r in first)

    def keyed(decided):
        return {(d.kind, d.entity, d.key, d.target_key): d.row("pharma") for d in decided.decisions}

    a, b = keyed(one_pass), keyed(in_chunks)
    assert a.keys() == b.keys() and any(k[1] == "prompts" for k in a)
    for k in a:
        x, y = dict(a[k]), dict(b[k])
        ex, ey = json.loads(x.pop("evidence")), json.loads(y.pop("evidence"))
        assert decide.numbers_within(
            [x.pop("confidence"), x.pop("margin"), ex], [y.pop("confidence"), y.pop("margin"), ey], 0.002
        ), k
        assert x == y, k
    for e, s in whole.entities.items():
        cols = ["legacy_key", "functional_area", "functional_area_source"]
        assert s.rows.select(cols).equals(chunked.entities[e].rows.select(cols)), e
    assert whole.junctions.keys() == chunked.junctions.keys()
    for j, frame in whole.junctions.items():
        assert frame.drop("metadata", strict=False).equals(chunked.junctions[j].drop("metadata", strict=False)), j


def test_only_tables_a_reference_names_are_indexed(monkeypatch):
    """slice_tenant indexes a table's keys and names only when a reference needs them: prompts,
    which nothing names, never (a 200,000-row table's index was most of the step's memory)."""
    import tasks.normalize.resolve as resolve

    indexed: list[set[str]] = []

    class Recording(resolve.Index):
        def __init__(self, rows: pl.DataFrame):
            indexed.append(set(rows["legacy_key"].to_list()) if rows.height else set())
            super().__init__(rows)

    monkeypatch.setattr(resolve, "Index", Recording)
    part = tiny_slice(_prompts(40))
    assert any("FUNC-1" in keys for keys in indexed)  # roles name their function
    assert not any("P1" in keys for keys in indexed)
    assert part.junctions["function_roles"].height == 1 and part.entities["prompts"].rows.height == 40
