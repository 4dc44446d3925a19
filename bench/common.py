"""Shared by the benchmarks: a private embedded PostgreSQL, a bootstrapped target, timing,
peak RSS, and the JSON results file. Benchmarks print a table and write bench/results/<name>.json."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


def machine() -> dict:
    import psutil

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }


@contextmanager
def bench_home():
    """A throwaway VITAL_HOME with its own embedded PostgreSQL, stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="vital-bench-") as d:
        os.environ["VITAL_HOME"] = d
        for var in ("VITAL_SOURCE_DSN", "VITAL_TARGET_DSN"):
            os.environ.pop(var, None)
        from local.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(Path(d))
        server.start(persistent=False)
        try:
            yield server
        finally:
            server.stop()


def fresh_target(server) -> str:
    """A new database with the schema and the tenants."""
    import psycopg

    from core.tenants import load_tenants
    from tasks import schema
    from tasks.tenants import upsert_tenants

    dsn = server.dsn(f"bench_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        plan = schema.preflight(conn, schema.discover(), {"embedding_dim": 384})
        schema.apply_plan(conn, plan)
        upsert_tenants(conn, load_tenants())
    return dsn


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(f"{r.get(c, '')}") for r in rows)) for c in columns}
    head = " | ".join(c.ljust(widths[c]) for c in columns)
    lines = [head, "-+-".join("-" * widths[c] for c in columns)]
    lines += [" | ".join(f"{r.get(c, '')}".ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2, default=str))
    return path
