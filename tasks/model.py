"""The embedding model: the only module that imports sentence-transformers (and torch), so
normalize and load code never pays for it. Loaded once per process, offline."""

from __future__ import annotations

import os
import threading
from functools import lru_cache

import numpy as np

from core.settings import ModelSpec

_lock = threading.Lock()


@lru_cache(maxsize=2)
def _load(path: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def encode(spec: ModelSpec, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalized float32 vectors, one per text (cosine distance = 1 - dot product)."""
    with _lock:
        model = _load(str(spec.path))
    vectors = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    if vectors.shape[1] != spec.dim:
        raise ValueError(f"model {spec.model_id} gave {vectors.shape[1]} dimensions, its config says {spec.dim}")
    return vectors.astype(np.float32, copy=False)
