"""Load: our batch path (binary COPY of text into a staging table, then INSERT ... SELECT with
casts, the vector joined from etl.embedding_cache, ON CONFLICT DO UPDATE) against raw binary
COPY into a bare table, executemany INSERT, and one INSERT + commit per row (how LangChain's
PGVector store writes), with 384-dim vectors. Rows/s, and each as a ratio of raw COPY.

    python bench/bench_load.py [--sizes 10000,100000] [--row-by-row 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import uuid

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from core.identity import row_id, tenant_id
from core.settings import ModelSpec
from tasks.embed import ensure_cached
from tasks.load import load_rows

from common import bench_home, fresh_target, save, table, timed

DIM = 384
MODEL = ModelSpec("bench/random-384", None, DIM)
PHARMA = str(tenant_id("pharma"))
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


def ours(dsn: str, rows: list[dict], vectors: np.ndarray, batch: int) -> None:
    lookup = {r["content_sha256"]: v for r, v in zip(rows, vectors)}
    with psycopg.connect(dsn, autocommit=True) as conn:  # the embed stage's write: vectors into the cache
        ensure_cached(
            conn,
            MODEL,
            [r["description"] for r in rows],
            [r["content_sha256"] for r in rows],
            lambda spec, texts: np.stack([lookup[h] for h in hashes_of(texts, rows)]),
            batch_size=batch,
        )
    result = load_rows(dsn, "agents", rows, batch_size=batch)
    assert result.loaded == len(rows) and not result.failed


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
            t_raw, _ = timed(raw_copy, fresh_target(server), rows, vectors)
            t_ours, _ = timed(ours, fresh_target(server), rows, vectors, args.batch)
            t_many, _ = timed(executemany, fresh_target(server), rows, vectors)
            k = min(n, args.row_by_row)
            t_row, _ = timed(row_by_row, fresh_target(server), rows[:k], vectors[:k])
            raw = n / t_raw
            for name, rate in (
                ("raw binary COPY (baseline)", raw),
                ("vital-etl batch path", n / t_ours),
                ("executemany INSERT", n / t_many),
                (f"INSERT + commit per row ({k} rows)", k / t_row),
            ):
                out.append({"rows": n, "method": name, "rows_per_s": round(rate), "x_raw_copy": round(rate / raw, 3)})
            ours_rate = n / t_ours
            out.append(
                {
                    "rows": n,
                    "method": "vital-etl vs per-row",
                    "rows_per_s": "",
                    "x_raw_copy": f"{ours_rate / (k / t_row):.1f}x per-row",
                }
            )
    print(table(out, ["rows", "method", "rows_per_s", "x_raw_copy"]))
    print(f"results: {save('load', {'results': out})}")


if __name__ == "__main__":
    main()
