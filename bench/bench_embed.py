"""Embedding, on real VITAL texts (agents, prompts, capabilities, tools of ../shared/vital/, through
the project's text templates), in two tables:

1. the pipeline's embed stage (hashing, cache lookup, encode, COPY into etl.embedding_cache)
   against SentenceTransformer.encode called directly on the same texts, with the best of
   several batch sizes;
2. the backends (VITAL_EMBEDDING_BACKEND / _QUANTIZE): sentences/s of each next to torch fp32
   measured in the same run (best of --repeat rounds, the backends taking turns in each round so
   that other load on the machine falls on all of them), the ratio, and the quality gate of
   rules/embedding.yaml on a sample of the texts (mean cosine and top-10 neighbour overlap
   against torch fp32), passed or not.

    python bench/bench_embed.py [--texts 1000] [--repeat 3] [--backends-only]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from importlib.util import find_spec

import psycopg

from common import ROOT, bench_home, fresh_target, save, table, timed

VITAL = ROOT.parent / "shared" / "vital" / "exports"


def vital_texts(n: int) -> list[str]:
    """Up to n distinct texts from the real VITAL exports, as the pipeline would embed them
    (an even spread over agents, prompts, capabilities and tools)."""
    from tasks.embed import TEMPLATES

    if not VITAL.is_dir():
        raise SystemExit(f"{VITAL}: the real VITAL data is not there (see DESIGN §11)")
    out = []
    for a in json.loads((VITAL / "agents.json").read_text()):
        caps = [c.replace("_", " ") for c in (a.get("capabilities") or "").strip("{}").split(",") if c]
        row = {**a, "functional_area": a.get("business_function"), "metadata": {"legacy_capabilities": caps}}
        out.append(TEMPLATES["agents"](row))
    with open(VITAL / "prompts.csv", newline="", encoding="utf-8") as f:
        out += [TEMPLATES["prompts"]({**p, "body": p["detailed_prompt"]}) for p in csv.DictReader(f)]
    out += [TEMPLATES["capabilities"](c) for c in json.loads((VITAL / "capabilities.json").read_text())]
    out += [TEMPLATES["tools"](t) for t in json.loads((VITAL / "tools.json").read_text())]
    unique = list(dict.fromkeys(t for t in out if t))
    return unique if n >= len(unique) else [unique[i * len(unique) // n] for i in range(n)]


def stage_table(data: list[str]) -> tuple[list[dict], int]:
    """Table 1: raw SentenceTransformer.encode by batch size vs the embed stage (torch fp32)."""
    from core.settings import model_spec
    from tasks.embed import content_sha256, ensure_cached
    from tasks.model import _load, encode

    spec = model_spec().reference()
    model = _load(str(spec.path))
    model.encode(data[:64], normalize_embeddings=True)  # warm up
    direct = {}
    for bs in (32, 64, 128):
        t, _ = timed(model.encode, data, batch_size=bs, normalize_embeddings=True, show_progress_bar=False)
        direct[bs] = len(data) / t
    best_bs = max(direct, key=direct.get)
    with bench_home() as server:
        dsn = fresh_target(server)
        hashes = [content_sha256(spec.model_id, t) for t in data]
        with psycopg.connect(dsn, autocommit=True) as conn:
            t_stage, stats = timed(ensure_cached, conn, spec, data, hashes, encode)
            t_again, again = timed(ensure_cached, conn, spec, data, hashes, encode)
    assert stats.embedded == len(set(data)) and again.embedded == 0
    stage = len(data) / t_stage
    rows = [
        {
            "method": f"SentenceTransformer.encode, batch {bs}",
            "sentences_per_s": round(r, 1),
            "ratio": round(r / direct[best_bs], 3),
        }
        for bs, r in direct.items()
    ]
    rows.append(
        {
            "method": "vital-etl embed stage (cold cache)",
            "sentences_per_s": round(stage, 1),
            "ratio": round(stage / direct[best_bs], 3),
        }
    )
    rows.append(
        {
            "method": "vital-etl embed stage (warm cache: 0 encoded)",
            "sentences_per_s": round(len(data) / t_again),
            "ratio": round(len(data) / t_again / direct[best_bs], 1),
        }
    )
    return rows, best_bs


def backend_table(data: list[str], repeat: int) -> list[dict]:
    """Table 2: every backend against torch fp32, same texts, same run."""
    from core.settings import model_spec
    from tasks.model import encode, export_model, gate_sample, load_embedding_rules, measure

    reference = model_spec().reference()
    specs = [reference, reference.with_backend("onnx"), reference.with_backend("onnx", "int8")]
    if find_spec("openvino"):
        specs.append(reference.with_backend("openvino"))
    rules = load_embedding_rules()
    sample = gate_sample(data, rules.sample_size)
    exported = {}
    for spec in specs[1:]:
        start = time.perf_counter()
        export_model(spec)
        exported[spec.variant] = round(time.perf_counter() - start, 1)
    for spec in specs:
        encode(spec, data[:32])  # load and warm up
    best = dict.fromkeys(specs, 0.0)
    for _ in range(repeat):
        for spec in specs:
            t, _ = timed(encode, spec, data)
            best[spec] = max(best[spec], len(data) / t)
    ref_sample = encode(reference, sample)
    rows = []
    for spec in specs:
        gate = measure(ref_sample, encode(spec, sample), rules)
        rows.append(
            {
                "backend": spec.variant,
                "model_id": spec.model_id,
                "sentences_per_s": round(best[spec], 1),
                "ratio": round(best[spec] / best[reference], 2),
                "mean_cosine": round(gate.mean_cosine, 4),
                "top10_overlap": round(gate.neighbour_overlap, 3),
                "gate": "reference" if spec.is_reference else ("passes" if gate.passed else "fails"),
                "export_s": exported.get(spec.variant, ""),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the backends table; the best counts")
    ap.add_argument("--backends-only", action="store_true", help="skip table 1 (the embed stage)")
    args = ap.parse_args()
    data = vital_texts(args.texts)
    payload: dict = {
        "texts": len(data),
        "text_source": "../shared/vital/exports (agents, prompts, capabilities, tools) via tasks.embed.TEMPLATES",
        "mean_chars": round(sum(map(len, data)) / len(data)),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    if not args.backends_only:
        rows, best_bs = stage_table(data)
        print(table(rows, ["method", "sentences_per_s", "ratio"]))
        payload |= {"best_batch_size": best_bs, "results": rows}
    with tempfile.TemporaryDirectory(prefix="vital-bench-models-") as home:
        os.environ["VITAL_HOME"] = home  # exports are timed too: a fresh VITAL_HOME
        backends = backend_table(data, args.repeat)
    columns = ["backend", "sentences_per_s", "ratio", "mean_cosine", "top10_overlap", "gate", "export_s"]
    print(table(backends, columns))
    passing = [r for r in backends if r["gate"] == "passes"]
    fastest = max(passing, key=lambda r: r["ratio"]) if passing else None
    verdict = (
        f"fastest backend that passes the gate: {fastest['backend']}, {fastest['ratio']}x torch fp32 "
        f"(goal 2.5x: {'met' if fastest['ratio'] >= 2.5 else 'not met'})"
        if fastest
        else "no backend passes the gate"
    )
    print(verdict)
    payload |= {
        "repeat": args.repeat,
        "backends": backends,
        "verdict": verdict,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"results: {save('embed', payload)}")


if __name__ == "__main__":
    main()
