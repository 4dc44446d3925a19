"""The embedding model: the only module that imports sentence-transformers, torch, onnxruntime
and openvino, so normalize and load code never pays for them. Loaded once per process, offline.

Backends (VITAL_EMBEDDING_BACKEND): `torch` runs the model folder with sentence-transformers
(on `cuda` where VITAL_EMBEDDING_DEVICE allows and torch sees a GPU); `onnx` and `openvino` run
a copy exported once from the same folder (no hub) into VITAL_HOME/models/<model>-<backend>-<precision>/,
which every later process reuses. Tokenization, truncation at the folder's `max_seq_length`,
pooling (1_Pooling/config.json) and normalization are those of the sentence-transformers pipeline.

The quality gate: `accepted_spec(sample)` measures the configured backend against torch fp32 on
a sample of a tenant's own texts (rules/embedding.yaml) and says which spec to use, and why.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.errors import ConfigError
from core.settings import RULES_DIR, ModelSpec, settings, vital_home
from core.yamlfile import read_yaml

_lock = threading.Lock()

# texts per run of an exported model (runs go in parallel, one per core): texts are sorted by
# length first, and a larger batch pads more; 16 measured best on 2 cores (bench/bench_embed.py)
EXPORTED_BATCH = 16
# what each backend needs beyond the project's own dependencies
PACKAGES = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# torch (sentence-transformers)


def torch_device() -> str:
    """`cuda` or `cpu`, from VITAL_EMBEDDING_DEVICE (auto: cuda where torch sees a GPU)."""
    wanted = settings().embedding_device
    if wanted == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if wanted == "cuda":
        raise ConfigError(
            "VITAL_EMBEDDING_DEVICE=cuda, but torch sees no CUDA device (a CPU build of torch, or no GPU); "
            "set VITAL_EMBEDDING_DEVICE=auto or cpu"
        )
    return "cpu"


def _load(path: str, device: str | None = None):
    """The SentenceTransformer of a folder on `device` (default: torch_device()), loaded once."""
    return _load_on(path, device or torch_device())


@lru_cache(maxsize=2)
def _load_on(path: str, device: str):
    _offline()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


# ---------------------------------------------------------------------------------------------
# the folder's pipeline, for the exported backends


@dataclass(frozen=True)
class Pipeline:
    """What sentence-transformers does around the transformer, read from the model folder."""

    max_length: int
    lower_case: bool
    pooling: tuple[str, ...]  # cls, max, mean, mean_sqrt_len_tokens (concatenated in this order)
    normalize: bool
    model_type: str
    heads: int
    hidden: int


LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
POOLING = {"cls", "max", "mean", "mean_sqrt_len_tokens"}


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def read_pipeline(folder: Path, backend: str) -> Pipeline:
    """The modules of a sentence-transformers folder that an exported backend can run:
    Transformer, Pooling, Normalize. Anything else is a clear error naming the module."""
    modules = json.loads((folder / "modules.json").read_text()) if (folder / "modules.json").exists() else []
    pooling, normalize = ("mean",), False
    for m in modules:
        kind = m.get("type", "").rsplit(".", 1)[-1]
        if kind == "Pooling":
            cfg = _json(folder / m.get("path", "") / "config.json")
            mode = cfg.get("pooling_mode") or [v for k, v in LEGACY_POOLING.items() if cfg.get(k)] or "mean"
            pooling = (mode,) if isinstance(mode, str) else tuple(mode)
            if set(pooling) - POOLING or cfg.get("include_prompt") is False:
                raise ConfigError(
                    f"{folder}: pooling {', '.join(pooling)} is not supported by the {backend} backend "
                    f"(supported: {', '.join(sorted(POOLING))}); use VITAL_EMBEDDING_BACKEND=torch"
                )
        elif kind == "Normalize":
            normalize = True
        elif kind != "Transformer":
            raise ConfigError(
                f"{folder}: module {m.get('name')} ({kind}) is not supported by the {backend} backend "
                "(it runs Transformer, Pooling and Normalize); use VITAL_EMBEDDING_BACKEND=torch"
            )
    config = _json(folder / "config.json")
    st_config = _json(folder / "sentence_bert_config.json")
    limit = config.get("max_position_embeddings") or 512
    return Pipeline(
        max_length=min(st_config.get("max_seq_length") or limit, limit),
        lower_case=bool(st_config.get("do_lower_case")),
        pooling=tuple(sorted(pooling, key=["cls", "max", "mean", "mean_sqrt_len_tokens"].index)),
        normalize=normalize,
        model_type=config.get("model_type", ""),
        heads=int(config.get("num_attention_heads") or 0),
        hidden=int(config.get("hidden_size") or 0),
    )


def pool(hidden: np.ndarray, mask: np.ndarray, modes: tuple[str, ...]) -> np.ndarray:
    """Token vectors (batch, tokens, dim) -> sentence vectors, as sentence-transformers' Pooling."""
    m = mask[..., None].astype(np.float32)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(np.where(m > 0, hidden, -1e9).max(axis=1))
        else:
            total, count = (hidden * m).sum(axis=1), np.clip(m.sum(axis=1), 1e-9, None)
            out.append(total / (count if mode == "mean" else np.sqrt(count)))
    return np.concatenate(out, axis=1) if len(out) > 1 else out[0]


# ---------------------------------------------------------------------------------------------
# export: once per (model, backend, precision), shared by every process under VITAL_HOME


def export_dir(spec: ModelSpec) -> Path:
    """VITAL_HOME/models/<model>-<backend>-<precision>/ (`/` of the model id as `--`)."""
    return vital_home() / "models" / f"{spec.base_id.replace('/', '--')}-{spec.variant}"


def _fingerprint(folder: Path) -> str:
    """The model folder's files (name, size, mtime): an export of other weights is redone."""
    h = hashlib.sha256(str(folder.resolve()).encode())
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _require(backend: str) -> None:
    from importlib.util import find_spec

    missing = [p for p in PACKAGES[backend] if find_spec(p) is None]
    if missing:
        raise ConfigError(
            f"VITAL_EMBEDDING_BACKEND={backend}: {' and '.join(missing)} not installed; "
            f"run `.venv/bin/pip install {' '.join(missing)}` (or set VITAL_EMBEDDING_BACKEND=torch)"
        )


def _export_onnx(folder: Path, pipeline: Pipeline, target: Path) -> list[str]:
    """torch.onnx.export of the transformer (eager attention, so onnxruntime can fuse it), with
    dynamic batch and sequence axes. Returns the input names, in order."""
    _offline()
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    example = tokenizer(["an example", "a second, longer example"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in example]

    class Positional(torch.nn.Module):
        """The HF model with positional inputs, as torch.onnx.export passes them."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args))).last_hidden_state

    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shapes that the dynamic axes cover
        torch.onnx.export(
            Positional(model),
            tuple(example[n] for n in names),
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return names


@contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization warns through the root logger itself (`logging.warning`); keep
    its advice out of run logs. A filter on the root logger sees only what is logged to it
    directly, not what other loggers propagate to it."""

    def errors_only(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    logging.getLogger().addFilter(errors_only)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(errors_only)


def _build(spec: ModelSpec, pipeline: Pipeline, work: Path) -> None:
    """The backend's model files in `work`, and source.json saying what they came from."""
    raw = work / "exported.onnx"
    names = _export_onnx(spec.path, pipeline, raw)
    if spec.backend == "openvino":
        import openvino as ov

        # fp32 weights kept (save_model's default compresses them to fp16)
        ov.save_model(ov.convert_model(raw), work / "model.xml", compress_to_fp16=False)
    else:
        fused = work / "fused.onnx"
        if pipeline.model_type == "bert" and pipeline.heads and pipeline.hidden:
            from onnxruntime.transformers import optimizer

            opt = optimizer.optimize_model(
                str(raw), model_type="bert", num_heads=pipeline.heads, hidden_size=pipeline.hidden, opt_level=0
            )
            opt.save_model_to_file(str(fused))
        else:
            shutil.copyfile(raw, fused)
        if spec.quantize == "int8":
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # per output channel; unsigned weights are the faster int8 kernels on AVX2 CPUs
            with _quiet_root_logger():  # "consider pre-processing": done (the fused graph)
                quantize_dynamic(
                    fused,
                    work / "model.onnx",
                    per_channel=True,
                    weight_type=QuantType.QUInt8,
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
            fused.unlink()
        else:
            fused.rename(work / "model.onnx")
    raw.unlink(missing_ok=True)
    (work / "source.json").write_text(
        json.dumps(
            {
                "model": spec.base_id,
                "folder": str(spec.path),
                "fingerprint": _fingerprint(spec.path),
                "backend": spec.backend,
                "precision": spec.precision,
                "inputs": names,
            },
            indent=2,
        )
    )


def export_model(spec: ModelSpec) -> Path:
    """The folder of the exported model, exported now only if no process did it before (or the
    model folder changed since). Concurrent processes wait on a file lock; the export is built
    in a scratch folder and renamed into place, so a half-written export is never used."""
    _require(spec.backend)
    target = export_dir(spec)
    target.parent.mkdir(parents=True, exist_ok=True)

    def current() -> bool:
        info = _json(target / "source.json")
        return info.get("fingerprint") == _fingerprint(spec.path) and info.get("folder") == str(spec.path)

    if current():
        return target
    pipeline = read_pipeline(spec.path, spec.backend)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if current():
            return target
        work = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}"
        work.mkdir()
        try:
            _build(spec, pipeline, work)
            if target.exists():
                shutil.rmtree(target)
            work.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------------
# the exported backends


@dataclass
class Exported:
    """An exported model and the folder's tokenizer and pooling: texts -> vectors.

    Batches run in parallel, `workers` at a time, each on one thread (on 2 cores, 2 single-thread
    runs go faster than one run on 2 threads); the tokenizer, which is not safe to call from two
    threads at once, runs first, under a lock."""

    tokenizer: object
    inputs: list[str]
    pipeline: Pipeline
    run: Callable[[dict[str, np.ndarray]], np.ndarray]
    workers: int
    tokenizing: threading.Lock = field(default_factory=threading.Lock)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        p = self.pipeline
        texts = [t.lower() for t in texts] if p.lower_case else list(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # less padding per batch
        batches = []
        with self.tokenizing:
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation="longest_first",
                    max_length=p.max_length,
                    return_tensors="np",
                )
                batches.append((idx, {n: enc[n].astype(np.int64) for n in self.inputs}, enc["attention_mask"]))

        def one(batch) -> np.ndarray:
            _, feeds, mask = batch
            return pool(self.run(feeds), mask, p.pooling)

        with ThreadPoolExecutor(self.workers) as executor:
            pooled = list(executor.map(one, batches))
        if not pooled:
            return np.zeros((0, 0), dtype=np.float32)
        out = np.empty((len(texts), pooled[0].shape[1]), dtype=np.float32)
        for (idx, _, _), vectors in zip(batches, pooled):
            out[idx] = vectors
        if p.normalize:
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out


@lru_cache(maxsize=4)
def _exported(spec: ModelSpec) -> Exported:
    folder = export_model(spec)
    info = _json(folder / "source.json")
    _offline()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    pipeline = read_pipeline(spec.path, spec.backend)
    workers = _cores()
    if spec.backend == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(
            folder / "model.xml",
            "CPU",
            # f32 asked for: on a CPU with bf16/AMX OpenVINO would otherwise compute in bf16, and the
            # same model id (`+openvino-fp32`) would give other vectors on another machine
            {
                "PERFORMANCE_HINT": "THROUGHPUT",
                "NUM_STREAMS": workers,
                "INFERENCE_NUM_THREADS": workers,
                "INFERENCE_PRECISION_HINT": "f32",
            },
        )
        requests = threading.local()

        def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
            if not hasattr(requests, "request"):
                requests.request = compiled.create_infer_request()
            return requests.request.infer(feeds)[0]

    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

        def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
            return session.run(None, feeds)[0]

    return Exported(tokenizer, info["inputs"], pipeline, run, workers)


def encode(spec: ModelSpec, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalized float32 vectors, one per text (cosine distance = 1 - dot product), by the
    spec's backend."""
    if not texts:
        return np.zeros((0, spec.dim), dtype=np.float32)
    if spec.backend == "torch":
        with _lock:
            model = _load(str(spec.path))
        vectors = model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
    else:
        with _lock:
            model = _exported(spec)
        vectors = model.encode(texts, min(batch_size, EXPORTED_BATCH))
    if vectors.shape[1] != spec.dim:
        raise ValueError(f"model {spec.model_id} gave {vectors.shape[1]} dimensions, its config says {spec.dim}")
    return vectors.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# the quality gate


@dataclass(frozen=True)
class GateRules:
    sample_size: int
    neighbours: int
    min_mean_cosine: float
    min_neighbour_overlap: float


def load_embedding_rules(path: Path | None = None) -> GateRules:
    """rules/embedding.yaml (or `path`): the gate a backend other than torch fp32 must pass."""
    path = path or RULES_DIR / "embedding.yaml"
    gate = (read_yaml(path, "embedding rules") or {}).get("gate") or {}
    try:
        rules = GateRules(
            int(gate["sample_size"]),
            int(gate["neighbours"]),
            float(gate["min_mean_cosine"]),
            float(gate["min_neighbour_overlap"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{path}: needs gate.sample_size, gate.neighbours, gate.min_mean_cosine and "
            f"gate.min_neighbour_overlap as numbers ({exc})"
        ) from None
    if rules.sample_size < 2 or rules.neighbours < 1:
        raise ConfigError(f"{path}: gate.sample_size is at least 2 and gate.neighbours at least 1")
    if not (0 <= rules.min_mean_cosine <= 1 and 0 <= rules.min_neighbour_overlap <= 1):
        raise ConfigError(f"{path}: gate.min_mean_cosine and gate.min_neighbour_overlap are in 0..1")
    return rules


def gate_sample(texts, size: int) -> list[str]:
    """Up to `size` distinct non-empty texts, those with the smallest sha256: the same texts give
    the same sample whatever their order, in every process."""
    unique = {t for t in texts if t and t.strip()}
    return sorted(unique, key=lambda t: hashlib.sha256(t.encode()).digest())[:size]


@dataclass(frozen=True)
class GateResult:
    texts: int
    mean_cosine: float
    neighbour_overlap: float | None  # None: fewer than 2 texts
    neighbours: int
    passed: bool


def _top(vectors: np.ndarray, k: int) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def measure(reference: np.ndarray, candidate: np.ndarray, rules: GateRules) -> GateResult:
    """Mean cosine of each text's two vectors, and the mean share of its `neighbours` nearest
    texts (in the sample) that the two agree on."""
    n = len(reference)
    cosine = float(np.mean(np.sum(reference * candidate, axis=1))) if n else 1.0
    k = min(rules.neighbours, n - 1)
    overlap = None
    if k >= 1:
        a, b = _top(reference, k), _top(candidate, k)
        overlap = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))
    passed = cosine >= rules.min_mean_cosine and (overlap is None or overlap >= rules.min_neighbour_overlap)
    return GateResult(n, cosine, overlap, k, passed)


def _note(spec: ModelSpec, fallback: ModelSpec, r: GateResult, rules: GateRules) -> str:
    overlap = (
        f"top-{r.neighbours} neighbour overlap {r.neighbour_overlap:.3f} (min {rules.min_neighbour_overlap})"
        if r.neighbour_overlap is not None
        else "neighbour overlap not measured (fewer than 2 texts)"
    )
    measured = f"mean cosine {r.mean_cosine:.4f} (min {rules.min_mean_cosine}), {overlap}"
    if r.passed:
        return (
            f"embedding backend {spec.variant} accepted: {measured} against torch fp32 over {r.texts} of the "
            f"tenant's texts; vectors are stored as {spec.model_id}"
        )
    return (
        f"embedding backend {spec.variant} refused: {measured} against torch fp32 over {r.texts} of the "
        f"tenant's texts (rules/embedding.yaml); embedding with torch fp32 ({fallback.model_id}) instead"
    )


_decided: dict[tuple, tuple[ModelSpec, str]] = {}
_gate_lock = threading.Lock()


def accepted_spec(
    sample_texts: list[str], rules: GateRules | None = None, spec: ModelSpec | None = None
) -> tuple[ModelSpec, str]:
    """The spec to embed a tenant's texts with, and a one-line note saying why.

    The configured backend (VITAL_EMBEDDING_BACKEND / _QUANTIZE) when it is torch fp32, or when it
    passes the gate of rules/embedding.yaml on up to `sample_size` of `sample_texts` (the tenant's
    own texts); else torch fp32 of the same model. Measured once per process per (backend, sample)."""
    from core.settings import model_spec

    spec = spec or model_spec()
    if spec.is_reference:
        return spec, f"embedding with {spec.model_id} on torch fp32 (the reference: no gate)"
    rules = rules or load_embedding_rules()
    sample = gate_sample(sample_texts, rules.sample_size)
    digest = hashlib.sha256("\0".join(sample).encode()).hexdigest()
    key = (spec, digest, rules)
    with _gate_lock:
        if key not in _decided:
            fallback = spec.reference()
            result = measure(encode(fallback, sample), encode(spec, sample), rules)
            _decided[key] = (spec if result.passed else fallback, _note(spec, fallback, result, rules))
        return _decided[key]
