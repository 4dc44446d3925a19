"""The loader against real PostgreSQL: idempotent upserts, a killed connection retried, a bad
row quarantined while its batch loads; load_frame (column-wise) writes what load_rows writes,
skips unchanged rows, quarantines with the database's message, and keeps the text path."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
import pytest

from core.identity import row_id, tenant_id
from tasks.load import HASH, UNCHANGED, frame_hashes, load_frame, load_rows, mark_unchanged, to_text

PHARMA = str(tenant_id("pharma"))


def agents(n: int) -> list[dict]:
    return [
        {
            "id": str(row_id(PHARMA, "agents", f"a{i}")),
            "tenant_id": PHARMA,
            "legacy_key": f"a{i}",
            "name": f"agent {i}",
            "functional_area": "Clinical",
            "status": "active",
            "temperature": 0.5,
            "metadata": {"i": i},
        }
        for i in range(n)
    ]


def count(dsn: str, table: str = "agents") -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_to_text():
    assert to_text(['a "b"', None, "c\\d"]) == '{"a \\"b\\"",NULL,"c\\\\d"}'
    assert to_text({"k": 1}) == '{"k": 1}' and to_text(True) == "t" and to_text(None) is None


def test_upsert_is_idempotent_and_touches_only_changed_rows(target_dsn):
    rows = agents(25)
    first = load_rows(target_dsn, "agents", rows, batch_size=10)
    assert (first.loaded, first.written, first.batches, first.failed) == (25, 25, 3, [])
    again = load_rows(target_dsn, "agents", rows, batch_size=10)
    assert (again.loaded, again.written) == (25, 0)
    rows[3]["name"] = "renamed"
    third = load_rows(target_dsn, "agents", rows, batch_size=10)
    assert third.written == 1 and count(target_dsn) == 25


def test_a_killed_connection_mid_batch_is_retried_and_nothing_is_lost(target_dsn):
    killed = []

    def kill_once(conn):
        if not killed:
            pid = conn.info.backend_pid
            with psycopg.connect(target_dsn, autocommit=True) as other:
                assert other.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
            killed.append(pid)

    result = load_rows(target_dsn, "agents", agents(30), batch_size=10, on_batch=kill_once)
    assert killed and result.retries == 1
    assert (result.loaded, result.failed) == (30, [])
    assert count(target_dsn) == 30


def test_a_row_violating_a_constraint_is_isolated_and_the_rest_loads(target_dsn):
    rows = agents(10)
    rows[6]["temperature"] = 5  # CHECK (temperature BETWEEN 0 AND 2)
    rows[2]["status"] = "zombie"  # not an agent_status label
    result = load_rows(target_dsn, "agents", rows, batch_size=10)
    assert result.loaded == 8 and count(target_dsn) == 8
    reasons = {row["legacy_key"]: reason for row, reason in result.failed}
    assert reasons["a6"].startswith(
        'new row for relation "agents" violates check constraint "agents_temperature_check"'
    )
    assert reasons["a2"] == 'invalid input value for enum agent_status: "zombie"'


@pytest.mark.parametrize("table", ["agents"])
def test_junction_rows_load_with_their_composite_key(target_dsn, table):
    rows = agents(2)
    load_rows(target_dsn, "agents", rows)
    link = {
        "tenant_id": PHARMA,
        "agent_id": rows[0]["id"],
        "related_agent_id": rows[1]["id"],
        "relation_type": "compatible",
    }
    assert load_rows(target_dsn, "agent_relations", [link, link]).loaded == 2
    assert count(target_dsn, "agent_relations") == 1


def test_null_in_a_not_null_column_with_a_default_takes_the_default(target_dsn):
    rows = agents(1)
    rows[0]["status"] = None  # agents.status is NOT NULL DEFAULT 'development'
    assert load_rows(target_dsn, "agents", rows).failed == []
    with psycopg.connect(target_dsn) as conn:
        assert conn.execute("SELECT status, metadata FROM agents").fetchone() == ("development", {"i": 0})


# ---------------------------------------------------------------------------------------------
# load_frame: the column-wise entry point. Same rows in the target as load_rows, same skipping,
# same quarantine, same text path.

MODEL = "test/model-384"
AGENT_COLUMNS = (
    "legacy_key, name, display_name, temperature, max_tokens, tier, functional_area, status, validation_status,"
    " is_custom, metadata, legacy_created_at, legacy_updated_at, embedding_model, content_sha256, embedding::text,"
    " deleted_at"
)
PERSONA_COLUMNS = (
    "legacy_key, name, years_experience_min, goals, pain_points, is_active, functional_area, metadata,"
    " content_sha256, embedding::text"
)


@pytest.fixture
def second_target(pg_server):
    """Another fresh, bootstrapped database on the session's server (load_rows vs load_frame)."""
    from conftest import bootstrap

    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = pg_server.dsn(name)
    bootstrap(dsn)
    yield dsn
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cache_vectors(dsn: str, shas: list[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for n, sha in enumerate(shas):
            vector = "[" + ",".join(str(round(0.001 * (n + 1) * (i % 7 - 3), 6)) for i in range(384)) + "]"
            conn.execute(
                "INSERT INTO etl.embedding_cache (model, content_sha256, embedding) VALUES (%s, %s, %s::vector)",
                (MODEL, sha, vector),
            )


def varied_agents(naive: bool = False) -> list[dict]:
    """Agents with a value of every kind the loader types, and NULLs where a column allows one."""
    zone = None if naive else UTC
    rows = agents(6)
    for i, r in enumerate(rows):
        r |= {
            "display_name": None if i % 2 else f'Agent «{i}» "quoted" \\ back',
            "temperature": [0.5, 1.25, None, 2.0, 0.0, 0.33][i],
            "max_tokens": [100, None, 4096, 1, 2**31 - 1, None][i],
            "tier": [0, 5, None, 3, 1, 2][i],
            "functional_area": ["Clinical", "Regulatory", "Commercial", "Clinical", "Medical Affairs", "Regulatory"][i],
            "status": [None, "active", "development", "active", "deprecated", "active"][i],
            "validation_status": [None, "validated", None, "pending", None, "validated"][i],
            "is_custom": [True, False, None, True, False, None][i],
            "metadata": [{"i": i, "nested": {"a": [1, 2, None]}, "text": "é ü 中"}, {}, {"x": None}][i % 3],
            "legacy_created_at": None if i == 3 else datetime(2024, 1 + i, 2, 3, 4, 5, 123456, tzinfo=zone),
            "legacy_updated_at": datetime(2025, 3, 30 - i, 23, 59, 59, tzinfo=zone) if i % 2 else None,
            "embedding_model": MODEL,
            "content_sha256": f"sha-{i}" if i != 4 else None,  # 5: no vector in the cache
        }
    return rows


def frame_of(rows: list[dict], extra: bool = True) -> pl.DataFrame:
    """Rows as a batch file holds them: Polars dtypes, `metadata` JSON text, `_` columns."""
    out = pl.DataFrame(
        [r | {"metadata": json.dumps(r["metadata"])} for r in rows],
        schema_overrides={"temperature": pl.Float64, "max_tokens": pl.Int64, "tier": pl.Int64},
    )
    if extra:
        out = out.with_columns(
            pl.Series("_source", [f"agents.json:{i}" for i in range(len(rows))]),
            pl.Series("_row", list(range(1, len(rows) + 1))),
        )
    return out


def target_rows(dsn: str, table: str, columns: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT {columns} FROM {table} ORDER BY legacy_key").fetchall()


@pytest.mark.parametrize("naive", [False, True], ids=["aware-times", "zone-less-times"])
def test_load_frame_writes_the_same_rows_as_load_rows(target_dsn, second_target, naive):
    rows = varied_agents(naive)
    for dsn in (target_dsn, second_target) if naive else ():  # zone-less times are read in the session's zone
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE \"{conn.info.dbname}\" SET TimeZone = 'America/New_York'")
    cache_vectors(target_dsn, [f"sha-{i}" for i in range(6)])
    cache_vectors(second_target, [f"sha-{i}" for i in range(6)])
    frame = frame_of(rows)
    assert frame["legacy_created_at"].dtype == pl.Datetime("us", None if naive else "UTC")

    by_rows = load_rows(target_dsn, "agents", rows, batch_size=4, tenant="pharma")
    by_frame = load_frame(second_target, "agents", frame, batch_size=4, tenant="pharma")
    assert (by_rows.loaded, by_rows.written, by_rows.failed) == (6, 6, [])
    assert (by_frame.loaded, by_frame.written, by_frame.failed) == (6, 6, [])

    got = target_rows(second_target, "agents", AGENT_COLUMNS)
    assert got == target_rows(target_dsn, "agents", AGENT_COLUMNS)
    first = got[0]
    assert first[3] == Decimal("0.50") and first[7] == "development"  # numeric; NULL took the default
    assert first[10] == {"i": 0, "nested": {"a": [1, 2, None]}, "text": "é ü 中"}
    assert first[11] == datetime(2024, 1, 2, 3 + (5 if naive else 0), 4, 5, 123456, tzinfo=UTC)
    assert first[15].startswith("[0,0,0,0,0,0,0,-0.003,") or first[15].startswith("[-0.003,")
    assert [r[15] is None for r in got] == [False, False, False, False, True, False]
    assert got[2][3] is None and got[1][4] is None and got[3][11] is None  # NULLs stay NULL

    with psycopg.connect(second_target) as conn:
        ids = conn.execute("SELECT id::text FROM agents ORDER BY legacy_key").fetchall()
    assert [i for (i,) in ids] == [r["id"] for r in rows]


def test_load_frame_types_text_arrays_like_load_rows(target_dsn, second_target):
    rows = [
        {
            "id": str(row_id(PHARMA, "personas", f"p{i}")),
            "tenant_id": PHARMA,
            "legacy_key": f"p{i}",
            "name": f"persona {i}",
            "years_experience_min": [3, None, 32767][i],
            "goals": [["grow", 'say "hi"', "a,b", "{x}", "back\\slash"], [], None][i],  # NULL: the default '{}'
            "pain_points": [["one"], ["x", "y"], ["z"]][i],
            "is_active": [None, False, True][i],
            "functional_area": [None, "Clinical", "Regulatory"][i],
            "metadata": {"p": i},
            "embedding_model": MODEL,
            "content_sha256": f"sha-{i}",
        }
        for i in range(3)
    ]
    cache_vectors(target_dsn, ["sha-0", "sha-2"])
    cache_vectors(second_target, ["sha-0", "sha-2"])
    frame = frame_of(rows, extra=False)
    assert frame["goals"].dtype == pl.List(pl.Utf8)
    assert load_rows(target_dsn, "personas", rows, tenant="pharma").written == 3
    assert load_frame(second_target, "personas", frame, tenant="pharma").written == 3
    got = target_rows(second_target, "personas", PERSONA_COLUMNS)
    assert got == target_rows(target_dsn, "personas", PERSONA_COLUMNS)
    assert got[0][3] == ["grow", 'say "hi"', "a,b", "{x}", "back\\slash"] and got[2][3] == [] and got[1][3] == []
    assert [g[5] for g in got] == [True, False, True]  # NULL took is_active's default
    assert got[2][2] == 32767 and got[1][9] is None and got[0][9] is not None


def test_load_frame_skips_unchanged_rows_and_resends_a_row_whose_vector_arrived(target_dsn):
    rows = varied_agents()
    cache_vectors(target_dsn, [f"sha-{i}" for i in range(3)])  # 3, 5: no vector yet
    frame = frame_of(rows)
    first = load_frame(target_dsn, "agents", frame, batch_size=4, tenant="pharma")
    assert (first.loaded, first.written, first.unchanged, first.batches) == (6, 6, 0, 2)
    with psycopg.connect(target_dsn) as conn:
        hashes = dict(conn.execute("SELECT legacy_key, row_hash FROM etl.id_map WHERE entity = 'agents'").fetchall())
    assert sorted(hashes) == [f"a{i}" for i in range(6)] and all(len(h) == 64 for h in hashes.values())

    again = load_frame(target_dsn, "agents", frame, batch_size=4, tenant="pharma")
    assert (again.loaded, again.written, again.unchanged, again.batches) == (6, 0, 6, 0)

    cache_vectors(target_dsn, ["sha-5"])  # the embed stage caught up with a5
    changed = frame.with_columns(
        pl.when(pl.col("legacy_key") == "a1").then(pl.lit("renamed")).otherwise("name").alias("name")
    )
    third = load_frame(target_dsn, "agents", changed, batch_size=4, tenant="pharma")
    assert (third.loaded, third.written, third.unchanged) == (6, 2, 4)
    with psycopg.connect(target_dsn) as conn:
        assert conn.execute("SELECT name FROM agents WHERE legacy_key = 'a1'").fetchone()[0] == "renamed"
        assert conn.execute("SELECT embedding IS NOT NULL FROM agents WHERE legacy_key = 'a5'").fetchone()[0]
        after = dict(conn.execute("SELECT legacy_key, row_hash FROM etl.id_map WHERE entity = 'agents'").fetchall())
    assert {k for k in after if after[k] != hashes[k]} == {"a1"}  # a5's values did not change, its vector did


def test_row_hashes_are_the_same_in_another_process():
    frame = frame_of(varied_agents(), extra=False)
    columns = [c for c in frame.columns if c != "id"]
    here = frame_hashes(frame, columns)
    assert len(set(here)) == 6
    script = (
        "import sys, polars as pl; from tasks.load import frame_hashes; "
        "f = pl.read_ipc(sys.stdin.buffer); print('\\n'.join(frame_hashes(f, sys.argv[1].split(','))))"
    )
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    there = (
        subprocess.run(
            [sys.executable, "-c", script, ",".join(columns)],
            input=buffer.getvalue(),
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "12345"},
            cwd=Path(__file__).resolve().parents[1],
        )
        .stdout.decode()
        .split()
    )
    assert there == here
    assert frame_hashes(frame.with_columns(pl.col("tier") + 1), columns) != here  # a value counts
    assert frame_hashes(frame, columns[:-1]) != here  # so do the columns


def test_load_frame_quarantines_a_bad_row_with_the_database_message_and_keeps_its_extra_columns(target_dsn):
    rows = varied_agents()
    rows[4]["temperature"] = 5  # CHECK (temperature BETWEEN 0 AND 2)
    rows[1]["status"] = "zombie"  # not an agent_status label
    result = load_frame(target_dsn, "agents", frame_of(rows), batch_size=6, tenant="pharma")
    assert (result.loaded, result.written) == (4, 4) and count(target_dsn) == 4
    failed = {row["legacy_key"]: (row, reason) for row, reason in result.failed}
    assert set(failed) == {"a1", "a4"}
    row, reason = failed["a1"]
    assert reason == 'invalid input value for enum agent_status: "zombie"'
    assert (row["_source"], row["_row"], row["status"]) == ("agents.json:1", 2, "zombie")
    assert json.loads(row["metadata"]) == rows[1]["metadata"]  # the row as given: metadata JSON text
    assert failed["a4"][1].startswith(
        'new row for relation "agents" violates check constraint "agents_temperature_check"'
    )
    with psycopg.connect(target_dsn) as conn:  # refused rows get no hash: the next run sends them again
        keys = {k for (k,) in conn.execute("SELECT legacy_key FROM etl.id_map WHERE entity = 'agents'")}
    assert keys == {"a0", "a2", "a3", "a5"}


@pytest.mark.parametrize("entry", ["frame", "rows"])
def test_a_value_python_cannot_type_takes_the_text_path_and_the_database_judges_it(target_dsn, entry, caplog):
    rows = agents(3)
    rows[0]["legacy_created_at"] = "Jan 2 2024 03:04:05 UTC"  # a legacy spelling PostgreSQL reads
    rows[1]["legacy_created_at"] = "2024-02-03T04:05:06+00:00"
    rows[2]["legacy_created_at"] = "the day before yesterday"  # nobody reads this one
    caplog.set_level("INFO", logger="tasks.load")
    if entry == "frame":
        result = load_frame(target_dsn, "agents", frame_of(rows), tenant="pharma")
    else:
        result = load_rows(target_dsn, "agents", rows, tenant="pharma")
    assert any("takes the text path" in r.getMessage() for r in caplog.records)
    assert result.loaded == 2 and count(target_dsn) == 2
    [(row, reason)] = result.failed
    assert row["legacy_key"] == "a2"
    assert reason == 'invalid input syntax for type timestamp with time zone: "the day before yesterday"'
    with psycopg.connect(target_dsn) as conn:
        got = dict(conn.execute("SELECT legacy_key, legacy_created_at FROM agents").fetchall())
    assert got == {
        "a0": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "a1": datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC),
    }


# ---------------------------------------------------------------------------------------------
# mark_unchanged: the pre-check a run makes before writing a batch file. What it finds travels
# with the batch (hashes, marks), so the loader neither hashes nor queries again.


def marks(dsn: str, table: str, frame: pl.DataFrame, vectors: bool = False) -> pl.DataFrame:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return mark_unchanged(conn, table, frame, "pharma", vectors)


def test_mark_unchanged_finds_what_the_loader_would_skip_and_the_loader_takes_its_marks(target_dsn):
    rows = varied_agents()
    cache_vectors(target_dsn, [f"sha-{i}" for i in range(6) if i != 3])  # a3: no vector yet
    frame = frame_of(rows)
    assert marks(target_dsn, "agents", frame).equals(frame)  # no row of the tenant yet: nothing to compare
    assert load_frame(target_dsn, "agents", frame, tenant="pharma").written == 6

    changed = frame.with_columns(
        pl.when(pl.col("legacy_key") == "a1").then(pl.lit("renamed")).otherwise("name").alias("name")
    )
    marked = marks(target_dsn, "agents", changed)
    assert marked.columns == [*changed.columns, HASH, UNCHANGED]
    with psycopg.connect(target_dsn) as conn:  # the hashes are the loader's own
        stored = dict(conn.execute("SELECT legacy_key, row_hash FROM etl.id_map WHERE entity = 'agents'").fetchall())
    assert [stored[k] == h for k, h in zip(marked["legacy_key"], marked[HASH])] == [True, False, True, True, True, True]
    assert marked[UNCHANGED].to_list() == [True, False, True, True, True, True]
    # embedding now: a3's vector is not in the cache (a4 has no content hash), so its batch must
    # go to the embed step
    assert marks(target_dsn, "agents", changed, vectors=True)[UNCHANGED].to_list() == [
        True, False, True, False, False, True
    ]  # fmt: skip

    # the loader takes the marks as they are (it does not query again): a row marked unchanged is
    # not sent even when it did change, a row marked changed is sent
    trusted = marked.with_columns(pl.Series(UNCHANGED, [True, True, True, True, True, False]))
    result = load_frame(target_dsn, "agents", trusted, tenant="pharma")
    assert (result.loaded, result.written, result.unchanged) == (6, 0, 5)
    result = load_frame(target_dsn, "agents", marked, tenant="pharma")
    assert (result.loaded, result.written, result.unchanged) == (6, 1, 5)
    assert marks(target_dsn, "agents", changed)[UNCHANGED].all()


def test_mark_unchanged_compares_junction_rows_with_the_target(target_dsn):
    ends = agents(3)
    load_rows(target_dsn, "agents", ends)
    links = pl.DataFrame(
        [
            {
                "tenant_id": PHARMA,
                "agent_id": ends[0]["id"],
                "related_agent_id": ends[i]["id"],
                "relation_type": "compatible",
                "relevance_score": [None, 0.25, 0.8][i],
                "metadata": [None, '{"derived_from": {"agent_id": "a.json"}}', "{}"][i],  # NULL: the default
            }
            for i in range(3)
        ]
    )
    assert marks(target_dsn, "agent_relations", links).equals(links)  # no link of the tenant yet
    assert load_frame(target_dsn, "agent_relations", links, tenant="pharma").written == 3
    assert marks(target_dsn, "agent_relations", links)[UNCHANGED].all()

    with psycopg.connect(target_dsn, autocommit=True) as conn:  # the target moved: those rows are sent again
        conn.execute("UPDATE agent_relations SET deleted_at = now() WHERE related_agent_id = %s", (ends[1]["id"],))
        conn.execute("UPDATE agent_relations SET relevance_score = 0.5 WHERE related_agent_id = %s", (ends[2]["id"],))
    marked = marks(target_dsn, "agent_relations", links)
    assert marked[UNCHANGED].to_list() == [True, False, False] and HASH not in marked.columns
    result = load_frame(target_dsn, "agent_relations", marked, tenant="pharma")
    assert (result.loaded, result.written, result.unchanged) == (3, 2, 1)
    assert marks(target_dsn, "agent_relations", links)[UNCHANGED].all()

    # a value the database refuses: nothing is known unchanged, the loader judges it
    bad = links.with_columns(pl.Series("mapping_source", ["automated", "automated", "guessed"]))
    assert not marks(target_dsn, "agent_relations", bad)[UNCHANGED].any()
