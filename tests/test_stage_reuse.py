"""The normalize stage (issue 14): rows shaped in bounded pieces give the same result as whole,
and a stored stage is reused only while everything it reads is unchanged."""

from __future__ import annotations

import dataclasses

import polars as pl
from polars.testing import assert_frame_equal
from test_bad_input import raw

from tasks.normalize import SHAPES
from tasks.normalize.base import normalize_frame
from tasks.normalize.reuse import RowDigest, load_stage, save_stage, stage_key
from tasks.normalize.rules import load_rules
from tasks.normalize.tenancy import LabelFile

TOOLS = [
    {"name": "PubMed search", "slug": "pubmed", "description": "Literature search", "category": "research"},
    {"name": "FDA labels", "slug": "fda-labels", "description": "Drug labels", "tags": '["regulatory"]'},
    {"name": "FDA labels", "slug": "fda-labels", "description": "the same slug again"},
]


def rows_digest(frame: pl.DataFrame) -> str:
    digest = RowDigest()
    digest.add(frame)
    return digest.hexdigest()


def test_a_stored_stage_comes_back_equal_and_only_for_the_same_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("VITAL_HOME", str(tmp_path))
    rules, frame = load_rules(), raw(TOOLS)
    first = normalize_frame("tools", frame, rules, SHAPES["tools"])
    assert first.rejects.height == 1  # the duplicate: rejects are kept too
    key = stage_key("tools", rows_digest(frame), rules, None)
    assert load_stage("tools", key) is None
    save_stage("tools", key, first)

    again = load_stage("tools", stage_key("tools", rows_digest(frame), rules, None))
    assert again is not None
    assert_frame_equal(again.rows, first.rows)
    assert_frame_equal(again.rejects, first.rejects)
    assert again.links.keys() == first.links.keys()
    assert (again.read, again.findings) == (first.read, first.findings)

    edited = raw([TOOLS[0] | {"description": "Literature search, revised"}, *TOOLS[1:]])
    other_rules = dataclasses.replace(rules, fingerprint="0" * 64)
    labels = LabelFile({"pubmed": ["pharma"]}, {}, "labels.csv")
    for changed in (
        stage_key("tools", rows_digest(edited), rules, None),  # one value of one row
        stage_key(
            "tools", rows_digest(frame.with_columns(pl.col("_row") + 1)), rules, None
        ),  # where the rows came from
        stage_key("tools", rows_digest(frame), other_rules, None),  # a rule file
        stage_key("tools", rows_digest(frame), rules, labels),  # a tenant-label file
        stage_key("agents", rows_digest(frame), rules, None),  # another entity
    ):
        assert changed != key and load_stage("tools", changed) is None
    # rules built in code, not read from files, have no fingerprint: never reused
    assert stage_key("tools", rows_digest(frame), dataclasses.replace(rules, fingerprint=""), None) is None


def test_a_damaged_stored_stage_is_normalized_again_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("VITAL_HOME", str(tmp_path))
    rules, frame = load_rules(), raw(TOOLS)
    key = stage_key("tools", rows_digest(frame), rules, None)
    save_stage("tools", key, normalize_frame("tools", frame, rules, SHAPES["tools"]))
    (tmp_path / "stages" / "normalize" / "tools" / key / "rows.parquet").write_bytes(b"not parquet")
    assert load_stage("tools", key) is None


def test_rows_shaped_in_pieces_give_the_same_frame_as_all_at_once(monkeypatch):
    from tasks.normalize import base

    rules = load_rules()
    records = [
        {"name": f"Tool {i}", "slug": f"tool-{i % 7}", "description": "x" * i, "version": str(i) if i % 2 else None}
        for i in range(1, 12)
    ]
    whole = normalize_frame("tools", raw(records), rules, SHAPES["tools"])
    monkeypatch.setattr(base, "ROWS_PER_FRAME", 2)
    pieces = normalize_frame("tools", raw(records), rules, SHAPES["tools"])
    assert_frame_equal(pieces.rows, whole.rows)
    assert_frame_equal(pieces.rejects, whole.rejects)  # duplicate slugs across pieces still found
    assert whole.rejects.height == 4
    batches = normalize_frame("tools", raw(records).iter_slices(3), rules, SHAPES["tools"])  # read batch by batch
    assert_frame_equal(batches.rows, whole.rows)
    assert_frame_equal(batches.rejects, whole.rejects)
    assert batches.read == whole.read == 11
