"""File readers: JSON, JSONL, CSV, Parquet and folders of Markdown, yielding Polars frames of
text columns in batches (normalizers parse types, so every reader hands over the same thing:
strings, with nested values as JSON text).

Each reader also reports what it detected (encoding, BOM, a skipped junk line, where the
records were in a JSON object) so the run report can say it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import polars as pl

from core.errors import TerminalError


class SourceError(TerminalError):
    """A source file cannot be read at all (empty, not UTF-8, not JSON ...)."""


def canonical(value) -> str | None:
    """Any value -> the text form normalizers read: None, str, JSON text for lists and objects."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal, UUID)):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy arrays (pgvector), numpy scalars
        value = value.tolist()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def frame_of(records: list[dict], columns: list[str] | None = None) -> pl.DataFrame:
    """Records -> a frame of Utf8 columns (the union of keys, first-seen order)."""
    if columns is None:
        seen: dict[str, None] = {}
        for r in records:
            seen.update(dict.fromkeys(r))
        columns = list(seen)
    data = {c: [canonical(r.get(c)) for r in records] for c in columns}
    return pl.DataFrame(data, schema={c: pl.Utf8 for c in columns})


def _batches(records: list[dict], batch_rows: int, start: int = 1) -> Iterator[pl.DataFrame]:
    columns = list({k: None for r in records for k in r})
    for i in range(0, len(records), batch_rows):
        chunk = records[i : i + batch_rows]
        yield frame_of(chunk, columns).with_columns(
            pl.Series("_row", range(start + i, start + i + len(chunk)), dtype=pl.Int64)
        )


def _text(path: Path) -> tuple[str, dict]:
    data = path.read_bytes()
    if not data.strip():
        raise SourceError(f"{path}: file is empty")
    detected = {"bom": data.startswith(b"\xef\xbb\xbf")}
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{path}: not UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 1]!r}); re-export as UTF-8"
        ) from None
    detected["encoding"] = "utf-8"
    return text, detected


def read_json(
    path: Path, batch_rows: int, records_key: str | None = None, detected: dict | None = None
) -> Iterator[pl.DataFrame]:
    text, info = _text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if isinstance(data, dict):
        if records_key is None:
            lists = [k for k, v in data.items() if isinstance(v, list)]
            if len(lists) != 1:
                raise SourceError(
                    f"{path}: a JSON object with {len(lists)} arrays; name the records with "
                    f"`records:` in the manifest (arrays: {', '.join(lists) or 'none'})"
                )
            records_key = lists[0]
        if not isinstance(data.get(records_key), list):
            raise SourceError(f"{path}: no array under key {records_key!r}")
        info["records"] = records_key
        info["envelope"] = {k: v for k, v in data.items() if k != records_key and not isinstance(v, (list, dict))}
        data = data[records_key]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    bad = [i + 1 for i, r in enumerate(data) if not isinstance(r, dict)]
    records = [
        r
        if isinstance(r, dict)
        else {"_error": f"record {i + 1} is a {type(r).__name__}, not an object", "_raw": canonical(r)}
        for i, r in enumerate(data)
    ]
    info["rows"] = len(records)
    if bad:
        info["non_object_records"] = len(bad)
    if detected is not None:
        detected.update(info)
    yield from _batches(records, batch_rows)


def read_jsonl(path: Path, batch_rows: int, detected: dict | None = None) -> Iterator[pl.DataFrame]:
    text, info = _text(path)
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            records.append(
                obj
                if isinstance(obj, dict)
                else {"_error": f"line {n}: a {type(obj).__name__}, not an object", "_raw": line}
            )
        except json.JSONDecodeError as exc:
            records.append({"_error": f"line {n}: not valid JSON: {exc.msg}", "_raw": line[:500]})
    info["rows"] = len(records)
    if detected is not None:
        detected.update(info)
    yield from _batches(records, batch_rows)


def read_csv(path: Path, batch_rows: int, delimiter: str = ",", detected: dict | None = None) -> Iterator[pl.DataFrame]:
    """RFC-4180 CSV, all cells as text. A junk first line (a title, no delimiter, while the next
    line has several) is skipped and reported; rows with the wrong number of cells are
    quarantined with that reason."""
    text, info = _text(path)
    first, _, rest = text.partition("\n")
    if first.count(delimiter) == 0 and rest.split("\n", 1)[0].count(delimiter) >= 1:
        info["skipped_first_line"] = first.strip()[:80]
        text = rest
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise SourceError(f"{path}: no header line") from None
    except csv.Error as exc:
        raise SourceError(f"{path}: malformed CSV header: {exc}") from None
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise SourceError(f"{path}: duplicate column name(s) {', '.join(dupes)}")
    records = []
    try:
        for cells in reader:
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if len(cells) != len(header):
                records.append(
                    {
                        "_error": f"record {len(records) + 1} (line {reader.line_num}) has {len(cells)} "
                        f"cells, the header has {len(header)}",
                        "_raw": delimiter.join(cells)[:500],
                    }
                )
                continue
            records.append(dict(zip(header, cells)))
    except csv.Error as exc:
        raise SourceError(f"{path}: malformed CSV at line {reader.line_num}: {exc}") from None
    info["rows"] = len(records)
    if detected is not None:
        detected.update(info)
    yield from _batches([{**dict.fromkeys(header), **r} for r in records], batch_rows)


def read_parquet(path: Path, batch_rows: int, detected: dict | None = None) -> Iterator[pl.DataFrame]:
    try:
        lazy = pl.scan_parquet(path)
        total = lazy.select(pl.len()).collect().item()
    except Exception as exc:  # polars raises several error types for a bad file
        raise SourceError(f"{path}: not a readable Parquet file: {exc}") from None
    if detected is not None:
        detected.update({"rows": total, "format": "parquet"})
    for offset in range(0, total, batch_rows):
        chunk = lazy.slice(offset, batch_rows).collect()
        yield frame_of(chunk.to_dicts(), chunk.columns).with_columns(
            pl.Series("_row", range(offset + 1, offset + 1 + chunk.height), dtype=pl.Int64)
        )


def read_markdown(folder: Path, batch_rows: int, detected: dict | None = None) -> Iterator[pl.DataFrame]:
    """One row per .md file: path (relative to the folder), title (first heading, else the file
    name), content."""
    records = []
    for path in sorted(folder.rglob("*.md")):
        try:
            content = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            records.append({"path": str(path.relative_to(folder)), "_error": "not UTF-8"})
            continue
        title = next(
            (
                line.lstrip("#").strip()
                for line in content.splitlines()
                if line.startswith("#") and line.lstrip("#").strip()
            ),
            path.stem.replace("_", " "),
        )
        records.append(
            {
                "path": str(path.relative_to(folder)),
                "title": title,
                "content": content,
                "bytes": len(content.encode("utf-8")),
            }
        )
    if detected is not None:
        detected.update({"rows": len(records), "format": "markdown"})
    yield from _batches(records, batch_rows)
