"""Tenant assignment: explicit labels, legacy ids through aliases, keywords, default."""

from __future__ import annotations

import json

import polars as pl

from tasks.normalize.rules import load_rules
from tasks.normalize.tenancy import assign_tenants

RULES = load_rules()
DH, PHARMA, PLATFORM = (
    "684f6c2c-b50d-4726-ad92-c76c3b785a89",
    "c6d221f8-1e8d-4dd9-86c5-d640ad6bf30b",
    "c1977eb4-cb2e-4cf7-8cf8-4ac71e27a244",
)


def frame(rows: list[dict]) -> pl.DataFrame:
    cols = list({k: None for r in rows for k in r} | {"_tenants": None})
    return pl.DataFrame({c: [r.get(c) for r in rows] for c in cols}, schema={c: pl.Utf8 for c in cols})


def test_prompt_allowed_tenants_through_legacy_aliases():
    rows = frame(
        [
            {"allowed_tenants": json.dumps([DH])},
            {"allowed_tenants": f"{{{PHARMA}}}"},
            {"allowed_tenants": json.dumps([PLATFORM])},
            {"allowed_tenants": "[]"},
            {"allowed_tenants": None},
            {"allowed_tenants": json.dumps(["99999999-9999-9999-9999-999999999999"])},
            {"allowed_tenants": '["nope"]'},
        ]
    )
    got = assign_tenants("prompts", rows, RULES, {})
    assert got[0] == (["digital-health"], "legacy_ids: allowed_tenants", None)
    assert got[1] == (["pharma"], "legacy_ids: allowed_tenants", None)
    assert got[2] == (["digital-health", "pharma"], "legacy_ids: allowed_tenants", None)
    assert got[3] == got[4] == (["digital-health", "pharma"], "default", None)
    assert got[5][0] == [] and got[5][2].startswith(
        "allowed_tenants: legacy tenant id 99999999-9999-9999-9999-999999999999 is not in rules/tenants.yaml"
    )
    assert got[6][2] == "allowed_tenants: invalid UUID 'nope' in array"


def test_agent_label_file_wins_and_unknown_labels_are_refused():
    rows = frame([{"id": "a1"}, {"id": "a2"}, {"id": "a3"}, {"id": "a4"}])
    labels = {"a1": ["pharma", "digital_health"], "a2": ["digital_health"], "a3": ["martian"]}
    got = assign_tenants("agents", rows, RULES, labels)
    assert got[0] == (["digital-health", "pharma"], "explicit: label file", None)
    assert got[1] == (["digital-health"], "explicit: label file", None)
    assert got[2][2].startswith("label file: tenant label 'martian' names no tenant")
    assert got[3] == (["pharma"], "default", None)


def test_manifest_tenants_are_explicit():
    rows = frame([{"name": "x"}]).with_columns(pl.lit('["digital-health"]').alias("_tenants"))
    assert assign_tenants("personas", rows, RULES, {})[0] == (["digital-health"], "explicit: manifest source", None)


def test_keyword_rules_are_whole_word_and_union():
    rows = frame(
        [
            {"tenants_primary": '["Pharmaceutical"]', "tenants_secondary": '["Digital Health Startup"]'},
            {"tenants_primary": '["Payer"]'},
            {"tenants_primary": '["Pharmaceuticals-ish"]'},
        ]
    )
    got = assign_tenants("knowledge_domains", rows, RULES, {})
    assert got[0] == (["digital-health", "pharma"], "keywords: Pharmaceutical, Digital Health Startup", None)
    assert got[1] == (["digital-health", "pharma"], "default", None)
    assert got[2][1] == "default"
