"""Embedding backends (VITAL_EMBEDDING_BACKEND): the model id names the backend, an exported
backend embeds like torch fp32, the quality gate falls back to torch fp32 with its reason, the
export is made once, and backfill re-embeds on a switch and reuses the cache on the way back.
The real model on a few texts."""

from __future__ import annotations

import uuid
from importlib.util import find_spec

import numpy as np
import psycopg
import pytest

from core.errors import ConfigError
from core.identity import tenant_id
from core.settings import DEFAULT_MODEL_ID, model_spec
from tasks import model
from tasks.backfill import backfill_spec, backfill_table
from tasks.model import GateRules, accepted_spec, encode, export_dir, export_model, load_embedding_rules

TEXTS = [
    "Pharmacovigilance Specialist\nSignal detection in adverse event reports",
    "Medical Science Liaison\nScientific exchange with key opinion leaders",
    "Regulatory Affairs Strategist\nEMA and FDA submission planning",
    "Clinical Trial Designer\nAdaptive designs, sample size and endpoints",
    "Health Economics Modeler\nCost-effectiveness and budget impact models",
    "Real-World Evidence Analyst\nClaims and registry data studies",
    "Medical Writer\nClinical study reports and publications",
    "Market Access Lead\nPayer value dossiers and HTA submissions",
    "Biostatistician\nSurvival analysis and mixed models",
    "Drug Safety Physician\nBenefit-risk assessment and PSUR writing",
    "Patient Engagement Manager\nPatient-reported outcomes in digital tools",
    "Dosing Calculator\nCalculate an optimal dosing regimen for renal impairment",
]


@pytest.fixture(scope="module")
def models_home(tmp_path_factory):
    """One VITAL_HOME for the module's exports (each backend is exported once)."""
    return tmp_path_factory.mktemp("models-home")


@pytest.fixture
def backend(models_home, monkeypatch):
    """Set VITAL_EMBEDDING_BACKEND (and _QUANTIZE); returns the configured spec."""
    monkeypatch.setenv("VITAL_HOME", str(models_home))

    def configure(name: str, quantize: str = "none"):
        monkeypatch.setenv("VITAL_EMBEDDING_BACKEND", name)
        monkeypatch.setenv("VITAL_EMBEDDING_QUANTIZE", quantize)
        return model_spec()

    return configure


def test_the_model_id_names_the_backend(monkeypatch):
    for var in ("VITAL_EMBEDDING_BACKEND", "VITAL_EMBEDDING_QUANTIZE"):
        monkeypatch.delenv(var, raising=False)
    assert model_spec().model_id == DEFAULT_MODEL_ID  # torch fp32: unchanged, existing caches stay valid
    monkeypatch.setenv("VITAL_EMBEDDING_BACKEND", "onnx")
    assert model_spec().model_id == f"{DEFAULT_MODEL_ID}+onnx-fp32"
    monkeypatch.setenv("VITAL_EMBEDDING_QUANTIZE", "int8")
    spec = model_spec()
    assert (spec.model_id, spec.backend, spec.quantize) == (f"{DEFAULT_MODEL_ID}+onnx-int8", "onnx", "int8")
    assert spec.reference().model_id == DEFAULT_MODEL_ID and spec.base_id == DEFAULT_MODEL_ID


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"VITAL_EMBEDDING_BACKEND": "tensorrt"},
            "VITAL_EMBEDDING_BACKEND='tensorrt': Input should be 'torch', 'onnx' or 'openvino'",
        ),
        (
            {"VITAL_EMBEDDING_QUANTIZE": "int4"},
            "VITAL_EMBEDDING_QUANTIZE='int4': Input should be 'none' or 'int8'",
        ),
        (
            {"VITAL_EMBEDDING_BACKEND": "torch", "VITAL_EMBEDDING_QUANTIZE": "int8"},
            "VITAL_EMBEDDING_QUANTIZE=int8 needs VITAL_EMBEDDING_BACKEND=onnx (got torch, which runs fp32); "
            "set VITAL_EMBEDDING_BACKEND=onnx or unset the quantization",
        ),
    ],
)
def test_a_wrong_backend_setting_is_one_clear_error(monkeypatch, env, message):
    for var in ("VITAL_EMBEDDING_BACKEND", "VITAL_EMBEDDING_QUANTIZE"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as err:
        model_spec()
    assert str(err.value) == message


def test_the_export_is_made_once_and_reused(backend):
    spec = backend("onnx")
    folder = export_model(spec)
    assert folder == export_dir(spec) and folder.name == "sentence-transformers--all-MiniLM-L6-v2-onnx-fp32"
    made = (folder / "model.onnx").stat().st_mtime_ns
    model._exported.cache_clear()  # as a new process: nothing loaded
    vectors = encode(spec, TEXTS[:3])
    assert (folder / "model.onnx").stat().st_mtime_ns == made  # loaded, not exported again
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize(
    "name",
    ["onnx", pytest.param("openvino", marks=pytest.mark.skipif(not find_spec("openvino"), reason="no openvino"))],
)
def test_an_accepted_backend_embeds_like_torch_fp32(backend, name):
    spec = backend(name)
    reference = encode(spec.reference(), TEXTS)
    vectors = encode(spec, TEXTS)
    assert np.sum(reference * vectors, axis=1).min() >= 0.99
    chosen, note = accepted_spec(TEXTS)
    assert chosen == spec and chosen.model_id == f"{DEFAULT_MODEL_ID}+{name}-fp32"
    assert note.startswith(f"embedding backend {name}-fp32 accepted: mean cosine ")
    assert note.endswith(f"over 12 of the tenant's texts; vectors are stored as {DEFAULT_MODEL_ID}+{name}-fp32")


def test_a_backend_that_fails_the_gate_falls_back_to_torch_fp32(backend, tmp_path):
    spec = backend("onnx", "int8")
    rules_file = tmp_path / "embedding.yaml"
    rules_file.write_text(
        "gate:\n  sample_size: 200\n  neighbours: 10\n  min_mean_cosine: 0.9999\n  min_neighbour_overlap: 0.95\n"
    )
    rules = load_embedding_rules(rules_file)
    assert rules == GateRules(200, 10, 0.9999, 0.95)
    chosen, note = accepted_spec(TEXTS, rules=rules)
    assert chosen == spec.reference() and chosen.model_id == DEFAULT_MODEL_ID
    assert note.startswith("embedding backend onnx-int8 refused: mean cosine 0.99")
    assert "(min 0.9999), top-10 neighbour overlap " in note
    assert note.endswith(
        f"against torch fp32 over 12 of the tenant's texts (rules/embedding.yaml); embedding with torch fp32 "
        f"({DEFAULT_MODEL_ID}) instead"
    )


def test_bad_gate_rules_are_a_clear_error(tmp_path):
    path = tmp_path / "embedding.yaml"
    path.write_text("gate:\n  sample_size: 200\n  neighbours: 10\n  min_mean_cosine: high\n")
    with pytest.raises(ConfigError) as err:
        load_embedding_rules(path)
    assert str(err.value) == (
        f"{path}: needs gate.sample_size, gate.neighbours, gate.min_mean_cosine and gate.min_neighbour_overlap "
        "as numbers (could not convert string to float: 'high')"
    )


def test_backfill_after_a_backend_switch_reembeds_every_row_once_and_switching_back_reuses_the_cache(
    target_dsn, backend
):
    pharma = str(tenant_id("pharma"))
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        for i, text in enumerate(TEXTS[:6]):
            name, description = text.split("\n")
            conn.execute(
                "INSERT INTO tools (id, tenant_id, legacy_key, name, description) VALUES (%s, %s, %s, %s, %s)",
                (uuid.uuid4(), pharma, f"tool-{i}", name, description),
            )

        def backfill() -> dict:
            spec, _ = backfill_spec(conn, pharma)
            return {**backfill_table(conn, "tools", spec, encode, pharma), "model": spec.model_id}

        def stored() -> dict:
            return dict(conn.execute("SELECT legacy_key, embedding::text FROM tools ORDER BY 1").fetchall())

        backend("torch")
        assert backfill() == {"rows": 6, "stale": 6, "embedded": 6, "reused": 0, "model": DEFAULT_MODEL_ID}
        torch_vectors = stored()

        backend("onnx")
        switched = backfill()
        assert switched == {
            "rows": 6,
            "stale": 6,
            "embedded": 6,
            "reused": 0,
            "model": f"{DEFAULT_MODEL_ID}+onnx-fp32",
        }
        assert backfill()["stale"] == 0  # once
        models = {r[0] for r in conn.execute("SELECT DISTINCT embedding_model FROM tools")}
        assert models == {f"{DEFAULT_MODEL_ID}+onnx-fp32"}

        backend("torch")
        assert backfill() == {"rows": 6, "stale": 6, "embedded": 0, "reused": 6, "model": DEFAULT_MODEL_ID}
        assert stored() == torch_vectors


def test_the_torch_device_follows_the_setting(monkeypatch):
    import torch

    monkeypatch.setenv("VITAL_EMBEDDING_DEVICE", "cpu")
    assert model.torch_device() == "cpu"
    monkeypatch.setenv("VITAL_EMBEDDING_DEVICE", "auto")
    assert model.torch_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("VITAL_EMBEDDING_DEVICE", "cuda")
    if torch.cuda.is_available():
        assert model.torch_device() == "cuda"
    else:
        with pytest.raises(ConfigError) as err:
            model.torch_device()
        assert str(err.value) == (
            "VITAL_EMBEDDING_DEVICE=cuda, but torch sees no CUDA device (a CPU build of torch, or no GPU); "
            "set VITAL_EMBEDDING_DEVICE=auto or cpu"
        )
