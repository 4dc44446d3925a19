"""Columns of a run's frames kept in Parquet files beside them instead of in memory.

An entity's rows pass through slicing, deciding and loading whole, but only loading (and the
deciding of areas, a chunk at a time) reads their long texts: those columns are written, a
normalized batch at a time, to `<folder>/<entity>.text.<n>.parquet`, and the frame in memory
keeps a row number (`_spill`) into them. Once decided, the load needs of every row only its
keys: the rest is set aside the same way (`<entity>.aside.<n>.parquet`, row number `_aside`).
`restore` gives whole rows back for any part of the frame (filtered, sliced, with rows added:
those have no number and keep their own values), so memory holds a batch of whole rows at a time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from core.catalogue import REF_COLUMNS

INDEX = "_spill"
ASIDE = "_aside"
PART_ROWS = 5000  # rows of a part file of columns set aside
# a text column is kept on disk when its values average at least this many bytes (in the first
# batch of the entity); shorter ones cost less in memory than the reading back would
SPILL_MIN_BYTES = 128
# columns that slicing, resolving and tenant decisions read over all rows at once
RESIDENT = ("legacy_key", "name", "metadata", "tenant_rule", "id", "tenant_id")


@dataclass(frozen=True)
class Spill:
    """The files of an entity's spilled columns: part n holds rows counts[:n].sum() onward."""

    paths: tuple[str, ...]
    counts: tuple[int, ...]
    columns: tuple[str, ...]
    order: tuple[str, ...]  # the column order of the whole rows
    index: str = INDEX  # the frame's column that numbers its rows in the parts

    def copy_to(self, folder: Path, stem: str) -> Spill:
        """The same parts under another folder (hard links where the file system allows)."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for n, path in enumerate(self.paths, start=1):
            to = folder / f"{stem}.{'text' if self.index == INDEX else 'aside'}.{n}.parquet"
            to.unlink(missing_ok=True)
            try:
                os.link(path, to)
            except OSError:
                shutil.copyfile(path, to)
            paths.append(str(to))
        return Spill(tuple(paths), self.counts, self.columns, self.order, self.index)

    def as_meta(self) -> dict:
        return {"counts": list(self.counts), "columns": list(self.columns), "order": list(self.order)}

    @classmethod
    def from_meta(cls, meta: dict | None, paths: list[str]) -> Spill | None:
        if not meta:
            return None
        return cls(tuple(paths), tuple(meta["counts"]), tuple(meta["columns"]), tuple(meta["order"]))


class Spiller:
    """Takes an entity's frames one after the other and returns each without its long text
    columns (or the given ones), which go to one part file per frame. folder None: nothing
    is spilled."""

    def __init__(
        self, folder: str | Path | None, entity: str, columns: tuple[str, ...] | None = None, kind: str = "text"
    ):
        self.folder, self.entity, self.kind = (Path(folder) if folder else None), entity, kind
        self.columns = columns
        self.index = INDEX if kind == "text" else ASIDE
        self.order: list[str] = []
        self.paths: list[str] = []
        self.counts: list[int] = []

    def add(self, frame: pl.DataFrame) -> pl.DataFrame:
        if self.folder is None or frame.height == 0:
            return frame
        if self.columns is None:
            self.columns = _long_text_columns(self.entity, frame)
        self.order += [c for c in frame.columns if c not in self.order]
        if not self.columns:
            return frame
        start = sum(self.counts)
        if self.kind == "text":
            parts = frame.select(
                (pl.col(c) if c in frame.columns else pl.lit(None)).cast(pl.Utf8).alias(c) for c in self.columns
            )
        else:
            parts = frame.select(self.columns)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.entity}.{self.kind}.{len(self.paths) + 1}.parquet"
        parts.write_parquet(path, compression="lz4")
        self.paths.append(str(path))
        self.counts.append(frame.height)
        light = frame.drop([c for c in self.columns if c in frame.columns])
        return light.with_columns(pl.int_range(start, start + frame.height, dtype=pl.Int64).alias(self.index))

    def done(self) -> Spill | None:
        if not self.paths:
            return None
        return Spill(tuple(self.paths), tuple(self.counts), tuple(self.columns or ()), tuple(self.order), self.index)


def set_aside(frame: pl.DataFrame, folder: str | Path, entity: str, keep: tuple[str, ...]):
    """(frame with only the columns keep names (those it has) and a row number, the Spill of
    the others), PART_ROWS rows a part file; (frame, None) when there is nothing to set aside."""
    rest = tuple(c for c in frame.columns if c not in keep)
    if frame.height == 0 or not rest:
        return frame, None
    spiller = Spiller(folder, entity, rest, kind="aside")
    parts = [spiller.add(frame.slice(start, PART_ROWS)) for start in range(0, frame.height, PART_ROWS)]
    return pl.concat(parts, rechunk=True), spiller.done()


def _long_text_columns(entity: str, frame: pl.DataFrame) -> tuple[str, ...]:
    resident = set(RESIDENT) | set(REF_COLUMNS.get(entity, {}))
    return tuple(
        c
        for c, dtype in frame.schema.items()
        if dtype == pl.Utf8
        and c not in resident
        and not c.startswith("_")
        and (frame[c].str.len_bytes().sum() or 0) >= SPILL_MIN_BYTES * frame.height
    )


def restore(frame: pl.DataFrame, *spills: Spill | None) -> pl.DataFrame:
    """The whole rows of frame (any part of the spilled frame): the columns of each spill read
    back from the part files its rows are in (the last set aside first), in the original column
    order (new columns after)."""
    for spill in reversed(spills):
        if spill is not None and spill.index in frame.columns:
            frame = _restore(frame, spill)
    return frame


def _restore(frame: pl.DataFrame, spill: Spill) -> pl.DataFrame:
    numbers = frame[spill.index]
    lo, hi = numbers.min(), numbers.max()
    if lo is None:  # only rows added after spilling (created rows): nothing to read
        parts = pl.DataFrame(schema={spill.index: pl.Int64} | dict(pl.read_parquet_schema(spill.paths[0])))
    else:
        first, paths, start = None, [], 0
        for path, count in zip(spill.paths, spill.counts):
            if start + count > lo and start <= hi:
                first = start if first is None else first
                paths.append(path)
            start += count
        parts = pl.read_parquet(paths).with_row_index(spill.index, offset=first).cast({spill.index: pl.Int64})
    own = [c for c in spill.columns if c in frame.columns]  # values of rows added later
    joined = frame.join(parts, on=spill.index, how="left", maintain_order="left", suffix="_spilled")
    if own:
        joined = joined.with_columns(pl.coalesce(pl.col(c), pl.col(f"{c}_spilled")).alias(c) for c in own).drop(
            [f"{c}_spilled" for c in own]
        )
    order = [c for c in spill.order if c in joined.columns and c != spill.index]
    return joined.select(order + [c for c in joined.columns if c not in order and c != spill.index])


def batches(frame: pl.DataFrame, spills: tuple[Spill, ...], size: int) -> Iterator[pl.DataFrame]:
    """The whole rows of frame, size rows at a time."""
    for start in range(0, frame.height, size):
        yield restore(frame.slice(start, size), *spills)
