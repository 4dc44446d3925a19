"""Every kind of bad input ends as a quarantine row with a reason, or as one clear error:
never a traceback, never a silent drop (read = valid + rejected, always)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from sources.files import SourceError, read_csv, read_json, read_jsonl
from tasks.normalize import SHAPES
from tasks.normalize.base import normalize_frame
from tasks.normalize.rules import load_rules

RULES = load_rules()
AGENT = {
    "id": "ed83433a-c04d-4789-9fde-5bf4310a8f73",
    "name": "anticoagulation_specialist",
    "display_name": "Anticoagulation Specialist",
    "business_function": "Clinical Development",
    "status": "inactive",
    "temperature": "0.70",
    "max_tokens": "4000",
    "tier": "2",
    "capabilities": "{medication_information,dosing_calculation}",
    "is_custom": "f",
}


def raw(records: list[dict]) -> pl.DataFrame:
    cols = list({k: None for r in records for k in r})
    frame = pl.DataFrame({c: [r.get(c) for r in records] for c in cols}, schema={c: pl.Utf8 for c in cols})
    return frame.with_columns(
        pl.lit("test.json").alias("_source"),
        pl.Series("_row", range(1, len(records) + 1)),
        pl.lit(None, dtype=pl.Utf8).alias("_tenants"),
    )


def normalize(entity: str, records: list[dict]):
    n = normalize_frame(entity, raw(records), RULES, SHAPES[entity])
    assert n.read == n.rows.height + n.rejects.height == len(records)
    return n


def only_reason(entity, bad: dict) -> str:
    n = normalize(
        entity,
        [AGENT | {"id": "11111111-0000-0000-0000-000000000001", "name": "good"}, bad] if entity == "agents" else [bad],
    )
    assert n.rejects.height == 1
    return n.rejects["reason"][0]


def test_a_good_agent_is_shaped():
    n = normalize("agents", [AGENT])
    row = n.rows.row(0, named=True)
    assert (row["functional_area"], row["status"], row["temperature"], row["max_tokens"], row["is_custom"]) == (
        "Clinical",
        "archived",
        0.7,
        4000,
        False,
    )
    meta = json.loads(row["metadata"])
    assert meta["legacy_status"] == "inactive" and meta["legacy_business_function"] == "Clinical Development"
    assert n.links["agent_capabilities"]["b_ref"].to_list() == ["medication_information", "dosing_calculation"]


def test_malformed_array_literal_is_quarantined():
    reason = only_reason("agents", AGENT | {"capabilities": "{medication_information,dosing"})
    assert reason == (
        "capabilities: malformed array literal '{medication_information,dosing': must start with '{' and end with '}'"
    )


def test_unknown_enum_value_without_a_rule_is_quarantined_and_named():
    reason = only_reason("agents", AGENT | {"status": "zombie"})
    assert reason == (
        "rules/enums.yaml: agent_status 'zombie' has no mapping; add it under agent_status.synonyms "
        "(known: development, testing, active, maintenance, deprecated, archived)"
    )


def test_unknown_business_function_is_quarantined_not_nulled():
    reason = only_reason("agents", AGENT | {"business_function": "Astrology"})
    assert reason.startswith("rules/enums.yaml: functional_area 'Astrology' has no mapping")


def test_invalid_uuid_in_an_array_is_quarantined():
    reason = only_reason(
        "capabilities",
        {
            "capability_name": "x",
            "capability_slug": "x",
            "depends_on": "{9b2f0e6a-0000-0000-0000-000000000001,not-a-uuid}",
        },
    )
    assert reason == "depends_on: invalid UUID 'not-a-uuid' in array"


def test_duplicate_natural_key_keeps_the_first_and_quarantines_the_rest():
    n = normalize("tools", [{"name": "R", "slug": "r"}, {"name": "R again", "slug": "r"}, {"name": "S", "slug": "s"}])
    assert n.rows["legacy_key"].to_list() == ["r", "s"]
    assert n.rows["name"].to_list() == ["R", "S"]
    assert n.rejects["reason"].to_list() == ["duplicate natural key 'r': kept the row from test.json row 1"]
    assert json.loads(n.rejects["payload"][0])["name"] == "R again"


def test_missing_required_field_is_quarantined():
    assert only_reason("agents", AGENT | {"name": None, "id": "x"}) == "missing required field name"
    assert only_reason("jobs_to_be_done", {"code": "J1", "name": "  "}) == "missing required field name / title"


def test_wrong_type_is_quarantined():
    assert only_reason("agents", AGENT | {"temperature": "hot"}) == "temperature: not a number: 'hot'"
    assert (
        only_reason("jobs_to_be_done", {"code": "J1", "name": "x", "validation_score": "1.7"})
        == "validation_score: 1.7 is outside 0..1"
    )


def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "agents.json"
    path.write_text("   \n")
    with pytest.raises(SourceError, match=rf"^{path}: file is empty$"):
        list(read_json(path, 100))


def test_malformed_json_file_is_a_clear_error(tmp_path):
    path = tmp_path / "agents.json"
    path.write_text('[{"id": "a"},\n {"id": }]')
    with pytest.raises(SourceError, match=rf"^{path}: not valid JSON at line 2 column 9: Expecting value$"):
        list(read_json(path, 100))


def test_malformed_jsonl_line_is_quarantined(tmp_path):
    path = tmp_path / "tools.jsonl"
    path.write_text('{"name": "R", "slug": "r"}\n{"name": oops}\n[1]\n')
    frame = pl.concat(list(read_jsonl(path, 100))).with_columns(
        pl.lit("tools.jsonl").alias("_source"), pl.lit(None, dtype=pl.Utf8).alias("_tenants")
    )
    n = normalize_frame("tools", frame, RULES, SHAPES["tools"])
    assert n.rows.height == 1
    assert n.rejects["reason"].to_list() == ["line 2: not valid JSON: Expecting value", "line 3: a list, not an object"]


def test_csv_row_with_wrong_cell_count_is_quarantined_and_junk_line_skipped(tmp_path):
    path = tmp_path / "tools.csv"
    path.write_bytes('\ufeffTools export 2025\nname,slug,tags\nR,r,"[""stats""]"\nS,s\n'.encode())
    detected: dict = {}
    frame = pl.concat(list(read_csv(path, 100, detected=detected))).with_columns(
        pl.lit("tools.csv").alias("_source"), pl.lit(None, dtype=pl.Utf8).alias("_tenants")
    )
    assert detected["bom"] is True and detected["skipped_first_line"] == "Tools export 2025"
    n = normalize_frame("tools", frame, RULES, SHAPES["tools"])
    assert n.rows["tags"].to_list() == [["stats"]]
    assert n.rejects["reason"].to_list() == ["record 2 (line 3) has 2 cells, the header has 3"]


def test_malformed_csv_is_a_clear_error(tmp_path):
    path = tmp_path / "tools.csv"
    path.write_text('name,slug\n"R,r\n')
    with pytest.raises(SourceError, match=rf"^{path}: malformed CSV at line \d+: "):
        list(read_csv(path, 100))


def test_csv_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "tools.csv"
    path.write_bytes("name,slug\nCaf\xe9,c\n".encode("latin-1"))
    with pytest.raises(SourceError, match=r"not UTF-8 .*re-export as UTF-8"):
        list(read_csv(path, 100))


def test_jsonl_is_read_as_a_stream_in_batches_with_its_record_numbers(tmp_path):
    path = tmp_path / "tools.jsonl"
    lines = [json.dumps({"name": f"T{i}", "slug": f"t{i}"} | ({"extra": "x"} if i == 5 else {})) for i in range(1, 8)]
    lines.insert(3, "")  # a blank line is not a record
    lines.append(json.dumps({"name": "line\u2028separator", "slug": "ls"}, ensure_ascii=False))
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\n").encode())
    detected: dict = {}
    batches = list(read_jsonl(path, 3, detected))
    assert [b.height for b in batches] == [3, 3, 2]
    frame = pl.concat(batches, how="diagonal_relaxed")
    assert frame["_row"].to_list() == list(range(1, 9))
    assert frame["slug"].to_list() == [f"t{i}" for i in range(1, 8)] + ["ls"]
    assert frame["extra"].to_list() == [None] * 4 + ["x", None, None, None]
    assert frame["name"][-1] == "line\u2028separator"  # not a line break in JSON Lines
    assert detected == {"bom": True, "encoding": "utf-8", "rows": 8}


def test_jsonl_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "tools.jsonl"
    data = b'{"name": "R", "slug": "r"}\n{"name": "Caf\xe9", "slug": "c"}\n'
    path.write_bytes(data)
    at = data.index(b"\xe9")
    with pytest.raises(SourceError, match=rf"^{path}: not UTF-8 \(byte {at}: b'\\xe9'\); re-export as UTF-8$"):
        list(read_jsonl(path, 100))
