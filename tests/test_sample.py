"""The bundled sample: deterministic, scalable, and every planted problem accounted for."""

from __future__ import annotations

import hashlib
import tracemalloc

import polars as pl
import psycopg
import pytest

from sources import sample
from sources.legacy_pg import read_postgres


def digest(s: sample.Sample) -> str:
    h = hashlib.sha256()
    for name in sorted(s.files):
        h.update(name.encode() + s.files[name])
    for table in sorted(s.tables):
        h.update(repr(s.tables[table]).encode())
    return h.hexdigest()


def test_same_seed_same_bytes_and_scale_multiplies():
    assert digest(sample.generate(seed=3)) == digest(sample.generate(seed=3))
    assert digest(sample.generate(seed=3)) != digest(sample.generate(seed=4))
    one, three = sample.generate(scale=1), sample.generate(scale=3)
    for table in ("agents", "capabilities", "prompts", "jtbd_core"):
        assert len(three.tables[table]) == 3 * len(one.tables[table])


def test_legacy_database_has_vital_shapes(fresh_dsn):
    counts = sample.build_legacy_db(sample.generate(), fresh_dsn)
    assert counts == {"agents": 40, "capabilities": 20, "prompts": 60, "jtbd_core": 30, "knowledge_documents": 3}
    with psycopg.connect(fresh_dsn) as conn:
        types = dict(
            conn.execute(
                """SELECT table_name || '.' || column_name, udt_name FROM information_schema.columns
               WHERE table_schema = 'public'"""
            ).fetchall()
        )
        assert types["agents.capabilities"] == "_text" and types["agents.compatible_agents"] == "_uuid"
        assert types["capabilities.depends_on"] == "_uuid" and types["prompts.allowed_tenants"] == "_uuid"
        assert "jtbd_core.functional_area" not in types
        assert conn.execute("SELECT vector_dims(embedding) FROM knowledge_documents LIMIT 1").fetchone()[0] == 1536
        assert conn.execute("SELECT count(*) FROM agents WHERE business_function IS NULL").fetchone()[0] > 0


def test_postgres_reader_turns_arrays_json_and_vectors_into_text(fresh_dsn):
    sample.build_legacy_db(sample.generate(), fresh_dsn)
    batches = list(read_postgres(fresh_dsn, "SELECT * FROM agents ORDER BY created_at, id", batch_rows=15))
    assert [b.height for b in batches] == [15, 15, 10]
    assert batches[0]["_row"].to_list()[:3] == [1, 2, 3]
    row = batches[0].row(1, named=True)
    assert row["capabilities"].startswith('["') and row["compatible_agents"].startswith('["')
    doc = next(read_postgres(fresh_dsn, "SELECT embedding FROM knowledge_documents", 10))
    assert doc["embedding"][0].startswith("[") and doc["embedding"][0].count(",") == 1535


@pytest.mark.slow
def test_reading_a_large_legacy_table_streams_in_batches(fresh_dsn):
    """Memory stays bounded: a 60k-row table read in batches of 2,000 holds a small fraction
    of what reading it whole holds (a ratio measured in the same test, not a timing)."""
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("""CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat('x', 200) AS body,
                        ARRAY[gen_random_uuid(), gen_random_uuid()] AS refs FROM generate_series(1, 60000) g""")

    def peak(batch_rows: int) -> int:
        tracemalloc.start()
        rows = 0
        for batch in read_postgres(fresh_dsn, "SELECT * FROM big", batch_rows):
            assert batch.height <= batch_rows
            rows += batch.height
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert rows == 60000
        return top

    streamed, whole = peak(2000), peak(60000)
    assert streamed * 5 < whole, (streamed, whole)


def test_a_legacy_table_is_read_in_primary_key_order_so_row_numbers_stay_put(fresh_dsn):
    """An UPDATE moves a row to the end of a heap scan; read in key order, every row keeps its
    number (`_row`, its provenance), so other rows do not look changed on the next run."""
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE legacy_tools (code text, region int, name text, PRIMARY KEY (region, code))")
        conn.execute("INSERT INTO legacy_tools SELECT 't' || g, g % 2, 'Tool ' || g FROM generate_series(1, 6) g")

    def numbers(relation=()):
        frame = pl.concat(list(read_postgres(fresh_dsn, "SELECT * FROM legacy_tools", 4, relation=relation)))
        return dict(zip(zip(frame["region"], frame["code"]), frame["_row"]))

    keyed, plain = numbers(("public", "legacy_tools")), numbers()
    assert list(keyed) == sorted(keyed, key=lambda k: (int(k[0]), k[1]))  # the key's column order
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("UPDATE legacy_tools SET name = 'Tool 1, renamed' WHERE code = 't1'")
    assert numbers() != plain  # a plain scan renumbers rows after the update
    assert numbers(("public", "legacy_tools")) == keyed
