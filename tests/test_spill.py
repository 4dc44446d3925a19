"""Long texts kept on disk (tasks/normalize/spill.py, issue 14): a run's frames hold the short
columns of every row and read descriptions and bodies back a batch at a time; what any step
sees of the rows is the same as when everything is in memory."""

from __future__ import annotations

import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_bad_input import raw
from test_decide import _prompts, fake_vectors, tiny_slice

from tasks import review
from tasks.decide import decide_slice
from tasks.normalize import SHAPES, base, spill
from tasks.normalize.base import normalize_frame
from tasks.normalize.resolve import slice_tenant
from tasks.normalize.reuse import RowDigest, load_stage, save_stage, stage_key
from tasks.normalize.rules import load_rules
from tasks.normalize.spill import ASIDE, INDEX, restore

RULES = load_rules()
LONG = "Searches the literature for {0} and summarises what it finds, with sources. " * 3


def tools(n: int) -> list[dict]:
    """n tools with long descriptions; slugs repeat (duplicates), one description is short."""
    out = [{"name": f"Tool {i}", "slug": f"tool-{i % 5}", "description": LONG.format(i)} for i in range(n)]
    out[1]["description"] = "short"
    return out


def test_spilled_rows_come_back_as_the_rows_kept_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "ROWS_PER_FRAME", 3)  # several part files, duplicates across them
    whole = normalize_frame("tools", raw(tools(11)), RULES, SHAPES["tools"])
    spilled = normalize_frame("tools", raw(tools(11)), RULES, SHAPES["tools"], spill_to=tmp_path)

    assert "description" in whole.frame.columns and "description" not in spilled.frame.columns
    assert INDEX in spilled.frame.columns and "name" in spilled.frame.columns  # short columns stay
    assert len(spilled.spill.paths) == 4 and all(p.startswith(str(tmp_path)) for p in spilled.spill.paths)
    assert spilled.rows.columns == whole.rows.columns
    assert_frame_equal(spilled.rows, whole.rows)
    # a duplicate's quarantine payload still holds its description
    assert_frame_equal(spilled.rejects, whole.rejects)
    assert whole.rejects.height == 6 and all(
        "Searches the literature" in json.loads(p)["description"] for p in spilled.rejects["payload"]
    )
    # nothing is spilled without a folder, or when no text column is long
    short = [{"name": f"T{i}", "slug": f"t{i}", "description": "x"} for i in range(4)]
    assert normalize_frame("tools", raw(short), RULES, SHAPES["tools"], spill_to=tmp_path / "s").spill is None


def test_any_part_of_a_spilled_frame_is_restored_whole(tmp_path):
    spilled = normalize_frame("tools", raw(tools(9)), RULES, SHAPES["tools"], spill_to=tmp_path)
    whole = spilled.rows
    picked = spilled.frame.filter(pl.col("slug").is_in(["tool-2", "tool-4"])).reverse()
    assert_frame_equal(
        restore(picked, spilled.spill), whole.filter(pl.col("slug").is_in(["tool-2", "tool-4"])).reverse()
    )
    # a row added after spilling (a created row) keeps its own values; others read theirs
    added = pl.DataFrame({"legacy_key": ["made"], "name": ["Made"], "description": ["its own text"]})
    mixed = restore(pl.concat([added, spilled.frame.head(2)], how="diagonal_relaxed"), spilled.spill)
    assert mixed["description"].to_list() == ["its own text", *whole["description"].head(2).to_list()]
    only_added = restore(pl.concat([added, spilled.frame.clear()], how="diagonal_relaxed"), spilled.spill)
    assert only_added["description"].to_list() == ["its own text"]


def test_a_slice_reads_its_batches_whole(tmp_path, monkeypatch):
    normalized = {"tools": normalize_frame("tools", raw(tools(9)), RULES, SHAPES["tools"], spill_to=tmp_path)}
    in_memory = {"tools": normalize_frame("tools", raw(tools(9)), RULES, SHAPES["tools"])}
    tenant = RULES.tenants.by_slug("pharma")
    part, expected = (slice_tenant(n, tenant).entities["tools"] for n in (normalized, in_memory))
    assert part.spills and "description" not in part.frame.columns
    assert_frame_equal(part.rows, expected.rows)
    assert_frame_equal(pl.concat(list(part.batches(2))), expected.rows)
    assert part.loaded == expected.loaded == 5

    # decided, the rows wait for their load with only their keys in memory
    monkeypatch.setattr(spill, "PART_ROWS", 2)
    part.set_aside(tmp_path / "aside", ("id", "legacy_key", "_source"))
    assert part.frame.columns == ["legacy_key", "_source", "id", ASIDE] and len(part.spills) == 2
    assert len(list((tmp_path / "aside").glob("tools.aside.*.parquet"))) == 3
    assert_frame_equal(part.rows, expected.rows)
    assert_frame_equal(pl.concat(list(part.batches(3))), expected.rows)
    assert_frame_equal(restore(part.frame.reverse(), *part.spills), expected.rows.reverse())


@pytest.mark.parametrize("vectors", [fake_vectors, None], ids=["model", "no-model"])
def test_decisions_on_spilled_rows_equal_those_in_memory(tmp_path, vectors):
    prompts = [p | {"detailed_prompt": p["detailed_prompt"] + " " + LONG.format(p["id"])} for p in _prompts(40)]
    spilled, in_memory = tiny_slice(prompts, spill_to=tmp_path), tiny_slice(prompts)
    assert spilled.entities["prompts"].spills
    a = decide_slice(spilled, RULES, vectors, overrides=review.Overrides("pharma"))
    b = decide_slice(in_memory, RULES, vectors, overrides=review.Overrides("pharma"))
    assert [d.row("pharma") for d in a.decisions] == [d.row("pharma") for d in b.decisions]
    assert_frame_equal(spilled.entities["prompts"].rows, in_memory.entities["prompts"].rows)


def test_a_stored_stage_keeps_its_long_texts(tmp_path, monkeypatch):
    monkeypatch.setenv("VITAL_HOME", str(tmp_path / "home"))
    frame = raw(tools(7))
    digest = RowDigest()
    digest.add(frame)
    key = stage_key("tools", digest.hexdigest(), RULES, None)
    first = normalize_frame("tools", frame, RULES, SHAPES["tools"], spill_to=tmp_path / "run1")
    save_stage("tools", key, first)

    again = load_stage("tools", key, str(tmp_path / "run2"))
    assert again.spill is not None and all(p.startswith(str(tmp_path / "run2")) for p in again.spill.paths)
    for path in first.spill.paths:  # the first run's folder is removed when it completes
        (tmp_path / "run1" / path.rsplit("/", 1)[1]).unlink()
    assert_frame_equal(again.rows, normalize_frame("tools", frame, RULES, SHAPES["tools"]).rows)
    whole = load_stage("tools", key)  # no folder: whole rows in memory
    assert whole.spill is None and "description" in whole.frame.columns
    assert_frame_equal(whole.rows, again.rows)
