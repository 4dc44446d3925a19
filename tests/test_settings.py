"""The embedding model decides the vector size; the schema follows it."""

from __future__ import annotations

import json

import psycopg
import pytest

from core.errors import ConfigError
from core.settings import DEFAULT_MODEL_ID, model_spec

from conftest import bootstrap


def _fake_model(folder, dim):
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": dim}))
    return folder


def test_bundled_model_is_the_default():
    spec = model_spec()
    assert (spec.model_id, spec.dim) == (DEFAULT_MODEL_ID, 384)
    assert (spec.path / "model.safetensors").exists()


def test_model_folder_sets_id_and_dimension(tmp_path, monkeypatch):
    folder = _fake_model(tmp_path / "tiny-model", 8)
    monkeypatch.setenv("VITAL_EMBEDDING_MODEL", str(folder))
    assert (model_spec().model_id, model_spec().dim) == ("tiny-model", 8)
    monkeypatch.setenv("VITAL_EMBEDDING_MODEL_ID", "acme/tiny")
    assert model_spec().model_id == "acme/tiny"


def test_schema_vector_columns_follow_the_model(fresh_dsn, tmp_path, monkeypatch):
    folder = _fake_model(tmp_path / "m", 8)
    monkeypatch.setenv("VITAL_EMBEDDING_MODEL", str(folder))
    bootstrap(fresh_dsn, params={"embedding_dim": model_spec().dim})
    with psycopg.connect(fresh_dsn) as conn:
        dims = {
            r[0]
            for r in conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attname = 'embedding' AND attnum > 0"
            )
        }
    assert dims == {"vector(8)"}


def test_missing_model_folder_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("VITAL_EMBEDDING_MODEL", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"is not a folder; give the path of a sentence-transformers model folder"):
        model_spec()


def test_folder_without_size_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("VITAL_EMBEDDING_MODEL", str(tmp_path))
    with pytest.raises(ConfigError, match=r"cannot tell the embedding size"):
        model_spec()
