"""Index build: HNSW (cosine) on N 384-dim vectors with our setting (maintenance_work_mem
raised to VITAL_MAINTENANCE_WORK_MEM, default 1GB) against PostgreSQL's default (64MB).

    python bench/bench_hnsw.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from common import bench_home, save, table, timed


def build(dsn: str, mem: str | None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if mem:
            conn.execute(f"SET maintenance_work_mem = '{mem}'")
        conn.execute("DROP INDEX IF EXISTS v_hnsw")
        conn.execute("CREATE INDEX v_hnsw ON v USING hnsw (embedding vector_cosine_ops)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100000)
    args = ap.parse_args()
    mem = os.environ.get("VITAL_MAINTENANCE_WORK_MEM", "1GB")
    rng = np.random.default_rng(3)
    with bench_home() as server:
        dsn = server.dsn("hnsw")
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute("CREATE TABLE v (id int PRIMARY KEY, embedding vector(384))")
            with conn.cursor().copy("COPY v FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "vector"])
                for start in range(0, args.rows, 10000):
                    block = rng.standard_normal((min(10000, args.rows - start), 384), dtype=np.float32)
                    block /= np.linalg.norm(block, axis=1, keepdims=True)
                    for i, vec in enumerate(block):
                        copy.write_row([start + i, vec])
        t_default, _ = timed(build, dsn, None)
        t_ours, _ = timed(build, dsn, mem)
    rows = [
        {"setting": "PostgreSQL default maintenance_work_mem (64MB)", "seconds": round(t_default, 1), "speedup": 1.0},
        {
            "setting": f"vital-etl: maintenance_work_mem = {mem}",
            "seconds": round(t_ours, 1),
            "speedup": round(t_default / t_ours, 2),
        },
    ]
    print(table(rows, ["setting", "seconds", "speedup"]))
    print(f"results: {save('hnsw', {'rows': args.rows, 'results': rows})}")


if __name__ == "__main__":
    main()
