"""After a load, build_vector_indexes keeps the indexes and ANALYZEs only the tables whose rows
changed since their last ANALYZE: a re-run that wrote nothing analyzes nothing."""

from __future__ import annotations

import time

import psycopg

from core.identity import row_id, tenant_id
from tasks.load import load_rows
from tasks.search import SearchRules, build_vector_indexes

PHARMA = str(tenant_id("pharma"))
RULES = SearchRules(below_share=0.2, min_rows=10, sample=20, k=10, min_recall=0.9)


def tools(n: int, name: str = "tool") -> list[dict]:
    return [
        {"id": str(row_id(PHARMA, "tools", f"t{i}")), "tenant_id": PHARMA, "legacy_key": f"t{i}", "name": f"{name} {i}"}
        for i in range(n)
    ]


def stats(dsn: str, until=lambda got: True, settle: float = 0.0) -> tuple[int, int]:
    """(analyze_count, n_mod_since_analyze) of tools, once `until` holds: the statistics of a
    backend arrive as it exits, a moment after its connection closed."""
    deadline = time.monotonic() + 10
    with psycopg.connect(dsn, autocommit=True) as conn:
        time.sleep(settle)
        while True:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            got = conn.execute(
                "SELECT analyze_count, n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'tools'"
            ).fetchone()
            if until(got) or time.monotonic() > deadline:
                return got
            time.sleep(0.05)


def test_only_tables_with_changed_rows_are_analyzed_again(target_dsn):
    load_rows(target_dsn, "tools", tools(3), tenant="pharma")
    assert build_vector_indexes(target_dsn, ["tools"], RULES) == ["tools_embedding_hnsw"]
    analyzed, changed = stats(target_dsn, until=lambda got: got[0] >= 1)
    assert analyzed >= 1 and changed == 0

    assert build_vector_indexes(target_dsn, ["tools"], RULES) == []  # nothing changed: no ANALYZE
    assert stats(target_dsn, settle=0.5) == (analyzed, 0)

    assert load_rows(target_dsn, "tools", tools(3, "renamed"), tenant="pharma").written == 3
    assert stats(target_dsn, until=lambda got: got[1] > 0) == (analyzed, 3)  # the loader's backend has ended
    assert build_vector_indexes(target_dsn, ["tools"], RULES) == []
    assert stats(target_dsn) == (analyzed + 1, 0)
