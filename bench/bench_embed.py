"""Embedding: the pipeline's embed stage (hashing, cache lookup, encode, COPY into
etl.embedding_cache) against SentenceTransformer.encode called directly on the same texts
with the best of several batch sizes. Sentences/s and the ratio.

    python bench/bench_embed.py [--texts 1500]
"""

from __future__ import annotations

import argparse

import psycopg

from core.settings import model_spec
from sources.sample import SPECIALTIES
from tasks.embed import content_sha256, ensure_cached
from tasks.model import _load, encode

from common import bench_home, fresh_target, save, table, timed


def texts(n: int) -> list[str]:
    return [
        f"Prompt {i}: you are an expert in {SPECIALTIES[i % len(SPECIALTIES)]}. Answer with evidence, cite "
        f"guidelines and flag uncertainty. Case {i}."
        for i in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=1500)
    args = ap.parse_args()
    spec, data = model_spec(), texts(args.texts)
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
    assert stats.embedded == len(set(data)) and again.embedded == 0
    print(table(rows, ["method", "sentences_per_s", "ratio"]))
    print(f"results: {save('embed', {'texts': len(data), 'best_batch_size': best_bs, 'results': rows})}")


if __name__ == "__main__":
    main()
