"""Incremental re-runs and memory.

incremental: migrate-tenant on the bundled sample at --scale, then again with no change, then
with 1% of the legacy agents and prompts changed: wall time as a ratio of the first run, and
texts embedded.

memory: peak RSS of `vital-etl migrate` (embedding deferred with --no-embed) over a legacy
`prompts` table of 50k, 100k and 200k rows: how it grows.

    python bench/bench_runs.py incremental [--scale 5]
    python bench/bench_runs.py memory [--sizes 50000,100000,200000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg

from common import ROOT, bench_home, fresh_target, save, table, timed


def incremental(scale: int) -> None:
    from flows.migrate import migrate_tenant
    from sources import sample

    with bench_home() as server:
        source = server.dsn("bench_legacy")
        os.environ["VITAL_SOURCE_DSN"] = source
        os.environ["VITAL_TARGET_DSN"] = fresh_target(server)
        s = sample.generate(scale=scale)
        sample.write_files(s, sample.sample_dir())
        sample.build_legacy_db(s, source)
        migrate_tenant(tenant="pharma", entities=["tools"], dry_run=True)  # start Prefect, load the model
        from core.settings import model_spec
        from tasks.model import _load

        _load(str(model_spec().path))
        runs = []
        for label in ("first run", "no change", "1% of agents and prompts changed"):
            if label.startswith("1%"):
                with psycopg.connect(source) as conn:
                    for t in ("agents", "prompts"):
                        conn.execute(
                            f"UPDATE {t} SET description = description || ' (revised)' "
                            f"WHERE id IN (SELECT id FROM {t} ORDER BY id LIMIT "
                            f"(SELECT greatest(1, count(*) / 100) FROM {t}))"
                        )
            t, summary = timed(migrate_tenant, tenant="pharma")
            runs.append(
                {
                    "run": label,
                    "seconds": round(t, 1),
                    "embedded": sum(c["embedded"] for c in summary["entities"].values()),
                    "rows": sum(c["loaded"] for c in summary["entities"].values()),
                    "written": sum(c["written"] for c in summary["entities"].values())
                    + sum(c.get("written", 0) for c in summary["junctions"].values()),
                    "unchanged": sum(c["unchanged"] for c in summary["entities"].values()),
                }
            )
    for r in runs:
        r["x_first_run"] = round(r["seconds"] / runs[0]["seconds"], 3)
    print(table(runs, ["run", "rows", "written", "unchanged", "seconds", "x_first_run", "embedded"]))
    print(f"results: {save('incremental', {'scale': scale, 'results': runs})}")


PROMPTS = """CREATE TABLE prompts AS SELECT gen_random_uuid() AS id, 'USR-' || g AS prompt_code,
    'Prompt ' || g || ': ' || md5(g::text) AS name, 'prompt-' || g AS slug,
    'Helps with case ' || g || ' ' || repeat(md5((g * 7)::text), 6) AS description,
    'You are an expert. ' || repeat(md5((g * 13)::text) || ' ', 20) AS detailed_prompt,
    (ARRAY['general','clinical','regulatory'])[1 + g % 3] AS category,
    (ARRAY['advanced','intermediate','expert'])[1 + g % 3] AS complexity,
    ARRAY['tag' || g % 50, 'sample'] AS tags,
    ARRAY['c6d221f8-1e8d-4dd9-86c5-d640ad6bf30b']::uuid[] AS allowed_tenants, true AS is_active,
    now() AS created_at FROM generate_series(1, {n}) g"""


def memory(sizes: list[int], batch: int) -> None:
    rows = []
    with bench_home() as server:
        for n in sizes:
            source = server.dsn(f"bench_mem_{n}")
            with psycopg.connect(source) as conn:
                conn.execute("DROP TABLE IF EXISTS prompts")
                conn.execute(PROMPTS.format(n=n))
            manifest = Path(os.environ["VITAL_HOME"]) / f"m{n}.yaml"
            manifest.write_text("entities: {prompts: [{kind: postgres, table: public.prompts}]}\n")
            env = {**os.environ, "VITAL_SOURCE_DSN": source, "VITAL_TARGET_DSN": fresh_target(server)}
            cmd = [
                str(ROOT / ".venv" / "bin" / "vital-etl"),
                "migrate",
                "--tenant",
                "pharma",
                "--manifest",
                str(manifest),
                "--no-embed",
                "--batch-size",
                str(batch),
            ]
            start, peak = time.perf_counter(), 0
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            ps = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    peak = max(peak, ps.memory_info().rss)
                except psutil.NoSuchProcess:
                    break
                time.sleep(0.05)
            err = proc.stderr.read()
            if proc.returncode != 0:
                sys.exit(f"migrate failed for {n} rows: {err[-2000:]}")
            rows.append(
                {
                    "legacy_rows": n,
                    "peak_rss_mib": round(peak / 2**20),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
    base = rows[0]
    for r in rows:
        r["rows_x"] = round(r["legacy_rows"] / base["legacy_rows"], 1)
        r["rss_x"] = round(r["peak_rss_mib"] / base["peak_rss_mib"], 2)
    print(table(rows, ["legacy_rows", "rows_x", "peak_rss_mib", "rss_x", "seconds"]))
    print(f"results: {save('memory', {'batch_size': batch, 'results': rows})}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["incremental", "memory"])
    ap.add_argument("--scale", type=int, default=5)
    ap.add_argument("--sizes", default="50000,100000,200000")
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args()
    if args.what == "incremental":
        incremental(args.scale)
    else:
        memory([int(x) for x in args.sizes.split(",")], args.batch)


if __name__ == "__main__":
    main()
