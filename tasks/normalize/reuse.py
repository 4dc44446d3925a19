"""A normalize stage reused when its inputs are unchanged: the entity's extracted rows, the rule
files, the tenant-label file and the normalizer code. Its output is kept as Parquet under
`$VITAL_HOME/stages/normalize/<entity>/<key>/`, the key a hash of all four, so a re-run over
unchanged sources reads the result instead of normalizing again. Anything that cannot be
stored or read back is simply normalized again."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict
from functools import cache
from pathlib import Path

import polars as pl

from core.settings import vital_home
from tasks.normalize.base import Normalized
from tasks.normalize.rules import Rules
from tasks.normalize.spill import Spill, restore

log = logging.getLogger(__name__)
KEEP = 3  # stored results per entity (e.g. two manifests over the same entity)
CODE = (Path(__file__).parent, Path(__file__).parents[2] / "core")


@cache
def _code_hash() -> str:
    digest = hashlib.sha256(pl.__version__.encode())
    for folder in CODE:
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


class RowDigest:
    """A hash of an entity's extracted rows, batch by batch as they are read: each batch's column
    types and two 64-bit hashes per row (128 bits). Equal digests: the same rows in the same order."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, frame: pl.DataFrame) -> None:
        self._digest.update(json.dumps(list(frame.schema.items()), default=str).encode())
        for seed in (0, 1):
            self._digest.update(frame.hash_rows(seed=seed).to_numpy().tobytes())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def stage_key(entity: str, rows: str, rules: Rules, labels) -> str | None:
    """The hash of everything normalize reads (rows: the extracted rows' RowDigest), or None
    when the rules' files are unknown."""
    if not rules.fingerprint:
        return None
    digest = hashlib.sha256(f"{entity}\n{rules.fingerprint}\n{_code_hash()}\n{rows}\n".encode())
    digest.update(json.dumps(asdict(labels) if labels else None, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def _folder(entity: str) -> Path:
    return vital_home() / "stages" / "normalize" / entity


def load_stage(entity: str, key: str | None, folder: str | None = None) -> Normalized | None:
    """The stored stage, its long texts linked into folder (the run's, so that pruning the
    stored stages never takes them away during the run); whole rows when folder is None."""
    where = _folder(entity) / key if key else None
    if where is None or not (where / "meta.json").exists():
        return None
    try:
        meta = json.loads((where / "meta.json").read_text())
        spill = Spill.from_meta(meta.get("spill"), [str(p) for p in _parts(where, meta.get("spill"))])
        frame = pl.read_parquet(where / "rows.parquet")
        if spill is not None:
            if folder is None:
                frame, spill = restore(frame, spill), None
            else:
                spill = spill.copy_to(Path(folder), entity)
        return Normalized(
            entity,
            frame,
            {name: pl.read_parquet(where / f"link.{name}.parquet") for name in meta["links"]},
            pl.read_parquet(where / "rejects.parquet"),
            findings=meta["findings"],
            read=meta["read"],
            spill=spill,
        )
    except (OSError, ValueError, KeyError, pl.exceptions.PolarsError) as exc:
        log.warning("normalize stage of %s not reused (%s): normalizing again", entity, exc)
        return None


def _parts(where: Path, spill: dict | None) -> list[Path]:
    return [where / f"rows.text.{n}.parquet" for n in range(1, len(spill["counts"]) + 1)] if spill else []


def save_stage(entity: str, key: str | None, n: Normalized) -> None:
    """Written to a temporary folder, then renamed: a reader sees all of it or nothing."""
    if key is None:
        return
    folder = _folder(entity)
    tmp = folder / f".{key}.{os.getpid()}"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        n.frame.write_parquet(tmp / "rows.parquet")
        if n.spill is not None:
            n.spill.copy_to(tmp, "rows")
        n.rejects.write_parquet(tmp / "rejects.parquet")
        for name, frame in n.links.items():
            frame.write_parquet(tmp / f"link.{name}.parquet")
        meta = {"links": list(n.links), "findings": n.findings, "read": n.read}
        meta["spill"] = n.spill.as_meta() if n.spill is not None else None
        (tmp / "meta.json").write_text(json.dumps(meta))
        tmp.rename(folder / key)
    except (OSError, pl.exceptions.PolarsError) as exc:  # e.g. a column Parquet cannot hold
        log.info("normalize stage of %s not stored for reuse: %s", entity, exc)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime)
    for stale in old[:-KEEP]:
        shutil.rmtree(stale, ignore_errors=True)
