"""Nothing lost, nothing mis-linked (issue 12), over the real VITAL data in ../shared/vital:
one test per defect, each on what the loader is given (the dry-run path, no target database),
and the field-by-field comparison of `make fidelity` (tasks/fidelity.py).

Also issue 13 #11: a row created for an unresolved reference never takes the id or the key of
a source row (in one load batch and across batches)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psycopg
import pytest

from core.identity import row_id
from sources.manifest import load_manifest
from tasks.chunk import CHUNK_CHARS, chunk_markdown
from tasks.extract import extract_entity, read_labels
from tasks.normalize import SHAPES
from tasks.normalize.base import normalize_frame
from tasks.normalize.resolve import slice_tenant
from tasks.normalize.rules import load_rules
from tasks.prepare import rows_for_load

from conftest import SHARED_VITAL

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "sources" / "manifests" / "vital.yaml"
EXPORTS = SHARED_VITAL / "exports"
TENANTS = ("pharma", "digital-health")
pytestmark = pytest.mark.skipif(not SHARED_VITAL.is_dir(), reason="../shared/vital is not beside this checkout")


@dataclass
class Vital:
    rules: object
    raw: dict[str, pl.DataFrame]
    labels: dict
    normalized: dict
    slices: dict
    rows: dict[str, dict[str, dict[str, dict]]]  # tenant -> entity -> legacy key -> loader row

    def all_rows(self, entity: str):
        for tenant in TENANTS:
            yield from self.rows[tenant][entity].values()

    def ids(self, tenant: str, entity: str) -> dict[str, str]:
        return {r["id"]: key for key, r in self.rows[tenant][entity].items()}


@pytest.fixture(scope="module")
def vital(pg_server) -> Vital:
    manifest = load_manifest(MANIFEST)
    rules = load_rules()
    labels = {e: read_labels(s, manifest) for e, s in manifest.tenant_labels.items()}
    raw = {e: extract_entity(manifest, e).frame for e in SHAPES}
    normalized = {e: normalize_frame(e, raw[e], rules, SHAPES[e], labels=labels.get(e)) for e in SHAPES}
    slices = {t: slice_tenant(normalized, rules.tenants.by_slug(t), rules.create_missing) for t in TENANTS}
    rows = {
        t: {e: {r["legacy_key"]: r for r in rows_for_load(s.rows)} for e, s in part.entities.items()}
        for t, part in slices.items()
    }
    return Vital(rules, raw, labels, normalized, slices, rows)


def _json(name: str, records: str | None = None) -> list[dict]:
    data = json.loads((EXPORTS / name).read_text(encoding="utf-8"))
    return data[records] if records else data


def _csv(name: str) -> list[dict]:
    with (EXPORTS / name).open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def _codes(cell: str) -> list[str]:
    return [c.strip() for c in (cell or "").split(",") if c.strip()]


# 1 ---------------------------------------------------------------------------------------------


def test_1_legacy_metadata_source_survives_the_loaders_provenance(vital):
    """The JTBDs' legacy metadata.source (which decided each one's tenant) is intact; the
    loader's provenance has its own reserved key, _etl."""
    library = {j["code"]: j["metadata"] for j in _json("jtbd_library.json")}
    checked = 0
    for row in vital.all_rows("jobs_to_be_done"):
        legacy = library.get(row["legacy_key"])
        if legacy is None:
            continue  # the three JTBDs of the legacy database have no metadata object
        for key, value in legacy.items():
            assert row["metadata"][key] == value, (row["legacy_key"], key)
        assert row["metadata"]["_etl"]["source"].endswith("jtbd_library.json")
        checked += 1
    assert checked == 145  # 127 JTBDs, 18 of them in both tenants
    sources = {r["metadata"]["source"] for r in vital.all_rows("jobs_to_be_done") if r["legacy_key"] in library}
    assert sources == {"Persona Master Catalogue v6.0", "Digital Health JTBD Library Complete.md"}


# 2 ---------------------------------------------------------------------------------------------

# junction -> (side a: entity, source file, code column naming side b) and the same for side b
CODE_COLUMNS = {
    "function_departments": ((None, None), ("departments.csv", "Mapped_to_Functions")),
    "function_roles": ((None, None), ("roles.csv", "Mapped_to_Functions")),
    "department_roles": (("departments.csv", "Mapped_to_Roles"), ("roles.csv", "Mapped_to_Departments")),
    "role_responsibilities": (("roles.csv", "Mapped_to_Responsibilities"), (None, None)),
}
ORG = {
    "function_departments": ("org_functions", "org_departments", "function_id", "department_id"),
    "function_roles": ("org_functions", "org_roles", "function_id", "role_id"),
    "department_roles": ("org_departments", "org_roles", "department_id", "role_id"),
    "role_responsibilities": ("org_roles", "org_responsibilities", "role_id", "responsibility_id"),
}


def _code_lists(file: str, column: str, existing: set[str]) -> dict[str, set[str]]:
    """row code -> the codes its column names that exist (a column naming no existing row says
    nothing about the rows that do)."""
    out = {}
    for row in _csv(f"notion/{file}"):
        key = (row.get("Unique_ID") or row.get("Department_ID") or "").strip()
        named = {c for c in _codes(row.get(column, "")) if c in existing}
        if named:
            out[key] = named
    return out


def test_2_org_links_never_contradict_a_code_column(vital):
    """Zero links to a row whose code disagrees with the source's code column: FUNC-004 and
    DEPT-012 link ROLE-049 (not the R&D 'Formulation Scientist' ROLE-010); ROLE-024/030/031 link
    RESP-117/149/154, not the same-named RESP-029/104/113."""
    for tenant in TENANTS:
        part = vital.slices[tenant]
        for junction, (a_entity, b_entity, a_col, b_col) in ORG.items():
            a_ids, b_ids = vital.ids(tenant, a_entity), vital.ids(tenant, b_entity)
            pairs = {(a_ids[a], b_ids[b]) for a, b in part.junctions[junction].select(a_col, b_col).iter_rows()}
            (a_file, a_column), (b_file, b_column) = CODE_COLUMNS[junction]
            a_codes = _code_lists(a_file, a_column, set(b_ids.values())) if a_file else {}
            b_codes = _code_lists(b_file, b_column, set(a_ids.values())) if b_file else {}
            wrong = [
                (a, b)
                for a, b in pairs
                if (a in a_codes and b not in a_codes[a]) or (b in b_codes and a not in b_codes[b])
            ]
            assert wrong == [], (tenant, junction, wrong[:5])
            if junction == "function_roles":
                assert ("FUNC-004", "ROLE-049") in pairs and ("FUNC-004", "ROLE-010") not in pairs
            if junction == "department_roles":
                assert ("DEPT-012", "ROLE-049") in pairs and ("DEPT-012", "ROLE-010") not in pairs
            if junction == "role_responsibilities":
                for role, right, wrong_one in (
                    ("ROLE-024", "RESP-117", "RESP-029"),
                    ("ROLE-030", "RESP-149", "RESP-104"),
                    ("ROLE-031", "RESP-154", "RESP-113"),
                ):
                    assert (role, right) in pairs and (role, wrong_one) not in pairs
    # a shared name that a code column decided is reported with its candidates
    findings = "\n".join(vital.slices["pharma"].findings)
    assert (
        "'Formulation Scientist' (named by FUNC-004) matches 2 rows (ROLE-010, ROLE-049); linked ROLE-049" in findings
    )


def test_2_a_name_matching_several_rows_links_nothing_and_is_reported(vital):
    """Without the roles' code column nothing tells the two 'Formulation Scientist' roles apart:
    the functions' name references link neither and the finding names both candidates."""
    roles = vital.raw["org_roles"].drop("Mapped_to_Functions", "🏫 Functions")
    normalized = dict(vital.normalized)
    normalized["org_roles"] = normalize_frame("org_roles", roles, vital.rules, SHAPES["org_roles"])
    part = slice_tenant(normalized, vital.rules.tenants.by_slug("pharma"), vital.rules.create_missing)
    functions = {
        r: k
        for k, r in zip(part.entities["org_functions"].rows["legacy_key"], part.entities["org_functions"].rows["id"])
    }
    roles_by_id = {
        r: k for k, r in zip(part.entities["org_roles"].rows["legacy_key"], part.entities["org_roles"].rows["id"])
    }
    pairs = {
        (functions[f], roles_by_id[r])
        for f, r in part.junctions["function_roles"].select("function_id", "role_id").iter_rows()
    }
    assert not {("FUNC-004", "ROLE-010"), ("FUNC-004", "ROLE-049"), ("FUNC-001", "ROLE-010")} & pairs
    assert (
        "function_roles: 'Formulation Scientist' (named by FUNC-004) matches 2 rows: ROLE-010, ROLE-049; linked none"
        in "\n".join(part.findings)
    )
    meta = json.loads(part.entities["org_functions"].rows.filter(pl.col("legacy_key") == "FUNC-004")["metadata"][0])
    assert meta["_etl"]["ambiguous"]["Roles"] == {"Formulation Scientist": ["ROLE-010", "ROLE-049"]}
    assert part.link_report["function_roles"]["ambiguous"] >= 2


def test_2_names_are_folded_without_merging_distinct_keys(vital):
    """'regulatory_affairs' and 'regulatory-affairs' are two knowledge domains: each exact key
    finds its own row; only a plain name that fits both is ambiguous."""
    from tasks.normalize.refs import Index

    index = Index(vital.normalized["knowledge_domains"].rows)
    assert index.lookup("regulatory_affairs") == ["regulatory_affairs"]
    assert index.lookup("regulatory-affairs") == ["regulatory-affairs"]
    assert index.lookup("Regulatory Affairs") == ["regulatory-affairs", "regulatory_affairs"]
    agent = pl.DataFrame({"id": ["a-1"], "name": ["Reg agent"], "knowledge_domains": ["{regulatory_affairs}"]})
    normalized = dict(vital.normalized)
    normalized["agents"] = normalize_frame("agents", agent, vital.rules, SHAPES["agents"])
    part = slice_tenant(normalized, vital.rules.tenants.by_slug("pharma"), vital.rules.create_missing)
    tenant = vital.rules.tenants.by_slug("pharma").id
    assert part.junctions["agent_knowledge_domains"]["knowledge_domain_id"].to_list() == [
        str(row_id(tenant, "knowledge_domains", "regulatory_affairs"))
    ]


# 3 ---------------------------------------------------------------------------------------------


def test_3_unresolved_references_are_kept_on_their_row(vital):
    """The 430 codes RESP-201..630 of 86 roles name no responsibility: each stays in its role's
    metadata._etl.unresolved, in every tenant."""
    existing = {r["Unique_ID"] for r in _csv("notion/responsibilities.csv")}
    expected = {
        r["Unique_ID"]: [c for c in _codes(r["Mapped_to_Responsibilities"]) if c not in existing]
        for r in _csv("notion/roles.csv")
    }
    expected = {k: v for k, v in expected.items() if v}
    assert len(expected) == 86 and sum(len(v) for v in expected.values()) == 430
    for tenant in TENANTS:
        for key, codes in expected.items():
            kept = vital.rows[tenant]["org_roles"][key]["metadata"]["_etl"]["unresolved"]["Mapped_to_Responsibilities"]
            assert kept == codes, key


# 4 ---------------------------------------------------------------------------------------------


def test_4_legacy_ids_are_stored(vital):
    """The digital-health personas' unique_id and the departments' Department_ID (VP-DEPT-n)."""
    dh = {p["code"]: p["unique_id"] for p in _json("dh_personas.json")}
    persona_rows = vital.rows["digital-health"]["personas"]
    assert {k: persona_rows[k]["metadata"]["unique_id"] for k in dh} == dh
    departments = _csv("notion/departments.csv")
    assert len(departments) == 35
    for d in departments:
        for tenant in TENANTS:
            rows = vital.rows[tenant]["org_departments"]
            if d["Unique_ID"]:
                assert rows[d["Unique_ID"]]["metadata"]["Department_ID"] == d["Department_ID"]
            else:
                assert d["Department_ID"] in rows  # the natural key of the four without a Unique_ID


# 5 ---------------------------------------------------------------------------------------------

# (entity, export, key field, source field): each a mapped enum (or a lower-cased level)
ENUM_FIELDS = [
    ("prompts", "prompts.csv", "id", "complexity"),
    ("capabilities", "capabilities.json", "capability_slug", "complexity_level"),
    ("personas", "personas_medical_affairs.json", "slug", "validation_status"),
    ("personas", "dh_personas.json", "code", "expertise_level"),
    ("jobs_to_be_done", "jtbd_library.json", "code", "frequency"),
    ("jobs_to_be_done", "jtbd_library.json", "code", "complexity"),
    ("jobs_to_be_done", "jtbd_library.json", "code", "job_category"),
    ("jobs_to_be_done", "jtbd_library.json", "code", "status"),
    ("agents", "agents.json", "id", "status"),
    ("org_departments", "notion/departments.csv", "Unique_ID", "Data_Classification"),
]


@pytest.mark.parametrize("entity, export, key, field", ENUM_FIELDS, ids=[f"{e}.{f}" for e, _, _, f in ENUM_FIELDS])
def test_5_raw_enum_spelling_is_kept_beside_the_mapped_value(vital, entity, export, key, field):
    records = _csv(export) if export.endswith(".csv") else _json(export)
    checked = 0
    for record in records:
        if not record.get(field):
            continue
        for tenant in TENANTS:
            row = vital.rows[tenant][entity].get(record[key] or record.get("Department_ID"))
            if row is not None:
                assert row["metadata"][f"legacy_{field}"] == record[field], (record[key], tenant)
                checked += 1
    assert checked
    spelled = {
        ("prompts", "complexity"): "advanced",
        ("personas", "validation_status"): "approved",
        ("jobs_to_be_done", "frequency"): "yearly",
        ("personas", "expertise_level"): "EXPERT",
    }.get((entity, field))
    if spelled:
        assert any(r["metadata"].get(f"legacy_{field}") == spelled for r in vital.all_rows(entity))


# 6 ---------------------------------------------------------------------------------------------


def test_6_numbers_and_booleans_stay_typed_in_metadata(vital):
    prompts = list(vital.all_rows("prompts"))
    assert all(r["metadata"]["usage_count"] == 0 and type(r["metadata"]["usage_count"]) is int for r in prompts)
    assert all(r["metadata"]["rag_enabled"] is False for r in prompts)
    full = {d["domain_id"]: d for d in _json("knowledge_domains_full.json", "domains")}
    for key, d in full.items():
        meta = vital.rows["pharma"]["knowledge_domains"][key]["metadata"]
        assert type(meta["tier"]) is int and meta["tier"] == d["tier"]
        assert type(meta["rag_priority_weight"]) is float and meta["rag_priority_weight"] == d["rag_priority_weight"]
        assert meta["is_cross_tenant"] is d["is_cross_tenant"]
    for p in _json("dh_personas.json"):
        meta = vital.rows["digital-health"]["personas"][p["code"]]["metadata"]
        assert (
            type(meta["typical_availability_hours"]) is int
            and meta["typical_availability_hours"] == p["typical_availability_hours"]
        )
        assert (
            type(meta["response_time_sla_hours"]) is int
            and meta["response_time_sla_hours"] == p["response_time_sla_hours"]
        )
    tool = vital.rows["pharma"]["tools"]["r-statistical-software"]["metadata"]
    assert tool["tier"] == 1 and type(tool["tier"]) is int


# 7 ---------------------------------------------------------------------------------------------


def test_7_prompt_bodies_are_byte_identical(vital):
    source = {r["id"]: r["detailed_prompt"] for r in _csv("prompts.csv")}
    assert sum(b.endswith("\n") for b in source.values()) == 159
    for tenant in TENANTS:
        bodies = {k: r["body"] for k, r in vital.rows[tenant]["prompts"].items()}
        assert bodies == source


def test_7_document_titles_come_from_a_real_heading_or_the_file_name(vital):
    titles = {r["legacy_key"]: r["title"] for r in vital.all_rows("knowledge_documents")}
    assert len(titles) == 47
    assert not [k for k, t in titles.items() if not re.search(r"\w", t)]
    assert titles["templates__L2-EXPERT-template.md"] == "L2 EXPERT System Prompt Template"
    assert titles["examples__L2-pharmacovigilance-expert.md"] == "L2 EXPERT: Pharmacovigilance Expert"
    contents = {r["legacy_key"]: r["content"] for r in vital.all_rows("knowledge_documents")}
    for key, content in contents.items():
        assert content == (SHARED_VITAL / "knowledge" / key).read_text(encoding="utf-8-sig"), key


# 8 ---------------------------------------------------------------------------------------------


def test_8_a_child_follows_its_parents_tenants(vital):
    """No knowledge domain sits in a tenant without its parent: the enterprise_x child of the
    pharma-only clinical_practice_guidelines is pharma-only too."""
    child = "clinical_practice_guidelines.enterprise_x"
    assert child in vital.rows["pharma"]["knowledge_domains"]
    assert child not in vital.rows["digital-health"]["knowledge_domains"]
    rule = vital.rows["pharma"]["knowledge_domains"][child]["metadata"]["_etl"]["tenant_rule"]
    assert rule == "inherited: parent 'clinical_practice_guidelines'"
    for tenant in TENANTS:
        rows = vital.rows[tenant]["knowledge_domains"]
        orphans = [k for k, r in rows.items() if r.get("parent_ref") and r.get("parent_id") is None]
        assert orphans == [], (tenant, orphans)
        assert not [f for f in vital.slices[tenant].findings if "parent_ref" in f]


def test_8_a_source_that_puts_a_child_elsewhere_is_a_finding(vital):
    frame = vital.raw["knowledge_domains"].with_columns(
        pl.when(pl.col("domain_id") == "clinical_practice_guidelines.enterprise_x")
        .then(pl.lit('["digital-health"]'))
        .otherwise(pl.col("_tenants"))
        .alias("_tenants")
    )
    n = normalize_frame("knowledge_domains", frame, vital.rules, SHAPES["knowledge_domains"])
    assert any(
        "'clinical_practice_guidelines.enterprise_x' is in digital-health (explicit: manifest source) but its parent "
        "'clinical_practice_guidelines' is only in pharma" in f
        for f in n.findings
    )


# 9 ---------------------------------------------------------------------------------------------


def test_9_unmatched_label_rows_are_findings_and_label_columns_are_kept(vital):
    labels = _json("agent_tenant_labels.json")
    agents = {a["id"] for a in _json("agents.json")}
    unmatched = [r["agent_id"] for r in labels if r["agent_id"] not in agents]
    assert len(unmatched) == 65
    findings = "\n".join(vital.normalized["agents"].findings)
    assert "65 of 319 rows" in findings and all(a in findings for a in unmatched)
    by_id = {r["agent_id"]: r for r in labels}
    without = [a["id"] for a in _json("agents.json") if "department" not in a]
    assert len(without) == 127
    for row in vital.all_rows("agents"):
        label = by_id.get(row["legacy_key"])
        if label is None:
            continue  # the legacy database's agents have no label row
        assert row["metadata"]["label_file"] == label
        if row["legacy_key"] in without:
            assert row["department"] == label["department"]
            assert row["metadata"]["_etl"]["department"] == "label file"


# 10 --------------------------------------------------------------------------------------------


def _documents() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8-sig") for p in sorted((SHARED_VITAL / "knowledge").glob("*.md"))}


def test_10_chunks_start_on_line_boundaries_and_cover_every_character():
    from tasks.chunk import rebuild

    total = 0
    for name, text in _documents().items():
        chunks = chunk_markdown(text)
        total += len(chunks)
        assert rebuild(chunks) == text, name
        for a, b in zip(chunks, chunks[1:]):
            assert b.start <= a.end, (name, b.index)  # no gap
        for c in chunks:
            assert c.start == 0 or text[c.start - 1] == "\n", (name, c.index, text[c.start - 20 : c.start + 20])
            assert len(c.content) <= CHUNK_CHARS
            assert c.content[c.before : len(c.content) - c.after] == text[c.start : c.end]
    assert total > 1000


def test_10_overlaps_are_whole_lines():
    overlaps = 0
    for text in _documents().values():
        chunks = chunk_markdown(text)
        for a, b in zip(chunks, chunks[1:]):
            if b.start < a.end:
                overlaps += 1
                shared = text[b.start : a.end]
                assert shared.endswith("\n") and len(shared) <= 150 + 600
    assert overlaps > 300


def test_10_table_continuations_repeat_the_header_row():
    from tasks.chunk import _lines

    continued = 0
    for name, text in _documents().items():
        lines = {line.start: line for line in _lines(text)}
        for c in chunk_markdown(text):
            line = lines[c.start]
            if line.table:
                continued += 1
                header, rule = line.table
                assert c.content.startswith(f"{header}\n{rule}\n"), (name, c.index)
    assert continued > 0


def test_10_code_fences_are_balanced_in_every_chunk():
    from tasks.chunk import _lines

    for name, text in _documents().items():
        for c in chunk_markdown(text):
            lines = _lines(c.content)
            assert not lines or lines[-1].fence is None or lines[-1].closes, (name, c.index, c.content[-200:])


# 12 --------------------------------------------------------------------------------------------


def test_12_the_real_data_manifest_reads_every_source_including_the_legacy_database(vital):
    manifest = load_manifest(MANIFEST)
    dumped = {e: s.dump_data.name for e, specs in manifest.entities.items() for s in specs if s.kind == "supabase_dump"}
    assert dumped == {"tools": "data.sql", "jobs_to_be_done": "data.sql", "agents": "data.sql"}
    assert vital.normalized["agents"].read == 8 + 254
    assert vital.normalized["tools"].read == 6 + 94 and vital.normalized["jobs_to_be_done"].read == 3 + 127
    readme = (ROOT / "README.md").read_text()
    assert "sources/manifests/vital.yaml" in readme and "legacy-db/" in readme


# the comparison of `make fidelity` --------------------------------------------------------------


def test_fidelity_every_field_of_every_record_is_kept(vital):
    from tasks.fidelity import compare, prepared_targets

    targets = prepared_targets(MANIFEST, vital.rules)
    reports = compare(SHARED_VITAL, targets, vital.rules)
    problems = [e for r in reports.values() for e in r.examples]
    assert problems == []
    for path, r in reports.items():
        assert r.outcomes["lost"] == r.outcomes["changed"] == r.records_lost == 0, path
        assert r.loaded + r.quarantined + r.unmatched_labels == r.records, path
    assert reports["exports/agent_tenant_labels.json"].unmatched_labels == 65
    # the 2,416 records of the exports and documents (and the 319 rows of the label file)
    assert sum(r.records for p, r in reports.items() if p != "exports/agent_tenant_labels.json") == 2416


# issue 13 #11 -----------------------------------------------------------------------------------


def _stub_case(rules):
    """A real capability whose key is what a created row's key would be, and an agent that names
    a capability no row has under that name."""
    capabilities = pl.DataFrame(
        {
            "capability_slug": ["ref:protocol-development", "dosing"],
            "capability_name": ["Real protocol capability", "dosing"],
            "description": ["the real row", "another"],
        }
    )
    agents = pl.DataFrame({"id": ["a-1"], "name": ["agent"], "capabilities": ['{"Protocol development",dosing}']})
    normalized = {
        "capabilities": normalize_frame("capabilities", capabilities, rules, SHAPES["capabilities"]),
        "agents": normalize_frame("agents", agents, rules, SHAPES["agents"]),
    }
    return slice_tenant(normalized, rules.tenants.by_slug("pharma"), rules.create_missing)


def test_13_11_a_created_row_never_takes_a_source_rows_key_or_id():
    rules = load_rules()
    part = _stub_case(rules)
    caps = part.entities["capabilities"]
    assert caps.created == 1 and caps.rows.height == 3
    keys = caps.rows["legacy_key"].to_list()
    ids = caps.rows["id"].to_list()
    assert len(set(keys)) == 3 and len(set(ids)) == 3
    real = caps.rows.filter(pl.col("legacy_key") == "ref:protocol-development")
    assert real["name"][0] == "Real protocol capability" and real["description"][0] == "the real row"
    stub = caps.rows.filter(pl.col("legacy_key").str.ends_with("#created"))
    assert stub["name"][0] == "Protocol development"
    linked = set(part.junctions["agent_capabilities"]["capability_id"].to_list())
    assert linked == {stub["id"][0], caps.rows.filter(pl.col("legacy_key") == "dosing")["id"][0]}


@pytest.mark.parametrize("batch_size", [1, 1000], ids=["across-batches", "one-batch"])
def test_13_11_a_created_row_never_overwrites_a_real_row_in_the_target(target_dsn, batch_size):
    from tasks.load import load_rows

    part = _stub_case(load_rules())
    rows = rows_for_load(part.entities["capabilities"].rows)
    result = load_rows(target_dsn, "capabilities", rows, batch_size=batch_size)
    assert not result.failed and result.loaded == 3
    with psycopg.connect(target_dsn) as conn:
        got = dict(conn.execute("SELECT legacy_key, name FROM capabilities").fetchall())
    assert got["ref:protocol-development"] == "Real protocol capability"
    assert got["ref:protocol-development#created"] == "Protocol development"
    assert len(got) == 3
