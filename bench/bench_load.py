"""Load: our batch path (typed binary COPY; a tenant's first load straight into the table, the
vector read from etl.embedding_cache) against raw binary COPY of the same values into the same
target table (same indexes and constraints) and into a bare table, executemany INSERT, and one
INSERT + commit per row (how LangChain's PGVector store writes), with 384-dim vectors. Rows/s,
and each as a ratio of raw COPY into the same table.

"vital-etl load" is the load stage alone (tasks.load.load_frame on a Polars frame, as a batch file
holds it: target columns, `metadata` JSON text; the vectors already cached by the embed stage);
"vital-etl load_rows" is the same load from dicts (`metadata` a dict), as older callers give it;
"vital-etl embed-stage write + load" adds the embed stage's write of the vectors into the cache.
"re-load, nothing changed" loads the same frame again (each row's hash is unchanged: nothing sent);
"upsert, every row changed" loads them again with every name changed (staging + ON CONFLICT).

    python bench/bench_load.py [--sizes 10000,100000] [--row-by-row 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import uuid

import numpy as np
import polars as pl
import psycopg
from pgvector.psycopg import register_vector

from core.identity import row_id, tenant_id
from core.settings import ModelSpec
from tasks.embed import ensure_cached
from tasks.load import _Utf8Dumper, load_frame, load_rows

from common import bench_home, fresh_target, save, table, timed

DIM = 384
MODEL = ModelSpec("bench/random-384", None, DIM)
PHARMA = str(tenant_id("pharma"))
ENUMS = ("functional_area_type", "agent_status")
BARE = """CREATE TABLE bare (id uuid PRIMARY KEY, tenant_id uuid NOT NULL, legacy_key text, name text,
          description text, functional_area text, metadata jsonb, embedding vector(384))"""


def make_rows(n: int, seed: int = 1) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = []
    for i in range(n):
        text = f"agent {i} for pharmacovigilance signal detection and regulatory submissions"
        rows.append(
            {
                "id": str(row_id(PHARMA, "agents", f"a{i}")),
                "tenant_id": PHARMA,
                "legacy_key": f"a{i}",
                "name": f"agent {i}",
                "description": text,
                "functional_area": "Regulatory",
                "status": "active",
                "metadata": {"i": i},
                "embedding_model": MODEL.model_id,
                "content_sha256": hashlib.sha256(f"{MODEL.model_id}\n{text}".encode()).hexdigest(),
            }
        )
    return rows, vectors


def cache(dsn: str, rows: list[dict], vectors: np.ndarray, batch: int) -> None:
    """The embed stage's write: vectors into etl.embedding_cache."""
    lookup = {r["content_sha256"]: v for r, v in zip(rows, vectors)}
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_cached(
            conn,
            MODEL,
            [r["description"] for r in rows],
            [r["content_sha256"] for r in rows],
            lambda spec, texts: np.stack([lookup[h] for h in hashes_of(texts, rows)]),
            batch_size=batch,
        )


def make_frame(rows: list[dict]) -> pl.DataFrame:
    """The rows as a batch file holds them: Polars dtypes, `metadata` as JSON text."""
    return pl.DataFrame([r | {"metadata": json.dumps(r["metadata"])} for r in rows])


def ours(dsn: str, frame: pl.DataFrame, batch: int, expect_written: int | None = None) -> None:
    result = load_frame(dsn, "agents", frame, batch_size=batch, tenant="pharma")
    assert result.loaded == frame.height and not result.failed, result
    if expect_written is not None:
        assert result.written == expect_written, (result.written, expect_written)


def ours_rows(dsn: str, rows: list[dict], batch: int, expect_written: int | None = None) -> None:
    result = load_rows(dsn, "agents", rows, batch_size=batch, tenant="pharma")
    assert result.loaded == len(rows) and not result.failed, result
    if expect_written is not None:
        assert result.written == expect_written, (result.written, expect_written)


def raw_copy_target(dsn: str, rows: list[dict], vectors: np.ndarray) -> None:
    """The same values COPYed straight into the real `agents` table: the ceiling for a loader."""
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        oids = [conn.execute("SELECT %s::regtype::oid::int", (name,)).fetchone()[0] for name in ENUMS]
        for name, oid in zip(ENUMS, oids):  # enum labels in binary: their text
            conn.adapters.register_dumper(f"bench.{name}", type(name, (_Utf8Dumper,), {"oid": oid}))
        cols = ["id", "tenant_id", "legacy_key", "name", "description", "functional_area", "status", "metadata"]
        cols += ["embedding_model", "content_sha256", "embedding"]
        with conn.cursor().copy(f"COPY agents ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "uuid", "text", "text", "text", *oids, "jsonb", "text", "text", "vector"])
            for r, v in zip(rows, vectors):
                copy.write_row(
                    [
                        uuid.UUID(r["id"]),
                        uuid.UUID(PHARMA),
                        r["legacy_key"],
                        r["name"],
                        r["description"],
                        r["functional_area"],
                        r["status"],
                        psycopg.types.json.Jsonb(r["metadata"]),
                        r["embedding_model"],
                        r["content_sha256"],
                        v,
                    ]
                )


def hashes_of(texts, rows):
    by_text = {r["description"]: r["content_sha256"] for r in rows}
    return [by_text[t] for t in texts]


def raw_copy(dsn: str, rows: list[dict], vectors: np.ndarray) -> None:
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        conn.execute(BARE)
        with conn.cursor().copy("COPY bare FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "uuid", "text", "text", "text", "text", "jsonb", "vector"])
            for r, v in zip(rows, vectors):
                copy.write_row(
                    [
                        uuid.UUID(r["id"]),
                        uuid.UUID(PHARMA),
                        r["legacy_key"],
                        r["name"],
                        r["description"],
                        r["functional_area"],
                        psycopg.types.json.Jsonb(r["metadata"]),
                        v,
                    ]
                )


def executemany(dsn: str, rows: list[dict], vectors: np.ndarray) -> None:
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        conn.execute(BARE)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO bare VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        r["id"],
                        PHARMA,
                        r["legacy_key"],
                        r["name"],
                        r["description"],
                        r["functional_area"],
                        psycopg.types.json.Jsonb(r["metadata"]),
                        v,
                    )
                    for r, v in zip(rows, vectors)
                ],
            )


def row_by_row(dsn: str, rows: list[dict], vectors: np.ndarray) -> None:
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        conn.execute(BARE)
        conn.commit()
        for r, v in zip(rows, vectors):
            conn.execute(
                "INSERT INTO bare VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    r["id"],
                    PHARMA,
                    r["legacy_key"],
                    r["name"],
                    r["description"],
                    r["functional_area"],
                    psycopg.types.json.Jsonb(r["metadata"]),
                    v,
                ),
            )
            conn.commit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--row-by-row", type=int, default=2000, help="rows for the per-row baseline (it is slow)")
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args()
    out = []
    with bench_home() as server:
        for n in map(int, args.sizes.split(",")):
            rows, vectors = make_rows(n)
            t_target, _ = timed(raw_copy_target, fresh_target(server), rows, vectors)
            t_raw, _ = timed(raw_copy, fresh_target(server), rows, vectors)
            dsn = fresh_target(server)
            t_cache, _ = timed(cache, dsn, rows, vectors, args.batch)
            frame = make_frame(rows)
            t_ours, _ = timed(ours, dsn, frame, args.batch, n)
            t_again, _ = timed(ours, dsn, frame, args.batch, 0)
            changed = frame.with_columns(pl.col("name") + " (renamed)")
            t_upsert, _ = timed(ours, dsn, changed, args.batch, n)
            dsn_rows = fresh_target(server)
            cache(dsn_rows, rows, vectors, args.batch)
            t_rows, _ = timed(ours_rows, dsn_rows, rows, args.batch, n)
            t_many, _ = timed(executemany, fresh_target(server), rows, vectors)
            k = min(n, args.row_by_row)
            t_row, _ = timed(row_by_row, fresh_target(server), rows[:k], vectors[:k])
            same = n / t_target
            for name, rate in (
                ("raw binary COPY into the same agents table (baseline)", same),
                ("raw binary COPY into a bare table", n / t_raw),
                ("vital-etl load (vectors already cached)", n / t_ours),
                ("vital-etl load_rows (dicts; vectors already cached)", n / t_rows),
                ("vital-etl embed-stage write + load", n / (t_cache + t_ours)),
                ("vital-etl re-load, nothing changed", n / t_again),
                ("vital-etl upsert, every row changed", n / t_upsert),
                ("executemany INSERT (bare table)", n / t_many),
                (f"INSERT + commit per row ({k} rows, bare table)", k / t_row),
            ):
                out.append(
                    {
                        "rows": n,
                        "method": name,
                        "rows_per_s": round(rate),
                        "x_raw_copy_same_table": round(rate / same, 3),
                        "x_raw_copy_bare_table": round(rate / (n / t_raw), 3),
                    }
                )
            ours_rate = n / t_ours
            out.append(
                {
                    "rows": n,
                    "method": "vital-etl vs per-row",
                    "rows_per_s": "",
                    "x_raw_copy_same_table": f"{ours_rate / (k / t_row):.1f}x per-row",
                    "x_raw_copy_bare_table": "",
                }
            )
    print(table(out, ["rows", "method", "rows_per_s", "x_raw_copy_same_table", "x_raw_copy_bare_table"]))
    print(f"results: {save('load', {'results': out})}")


if __name__ == "__main__":
    main()
