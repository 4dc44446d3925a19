"""File readers: JSON, JSONL, CSV, Parquet and folders of Markdown, yielding Polars frames of
text columns in batches (normalizers parse types, so every reader hands over the same thing:
strings, with nested values as JSON text).

Each reader also reports what it detected (encoding, BOM, a skipped junk line, where the
records were in a JSON object) so the run report can say it.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import polars as pl

from core import jsontext
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


# Per row, the JSON list of the columns whose text is JSON for a value that is not text in the
# source (a number, boolean, array or object), so that what is kept as-is keeps its type.
TYPED = "_typed"
_JSON_LITERAL = re.compile(r"-?(?:0|[1-9]\d{0,17})(?:\.\d{1,17})?(?:[eE][+-]?\d{1,3})?|true|false")


def is_typed(value) -> bool:
    """A value a source holds as a JSON number, boolean, array or object (not as text)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Decimal):
        return value.is_finite()
    return isinstance(value, (bool, int, list, tuple, dict)) or hasattr(value, "tolist")


def json_cell(value: str) -> bool:
    """A text cell (CSV) that is JSON for a number, true/false, an array or an object."""
    s = value.strip()
    if _JSON_LITERAL.fullmatch(s):
        return s in ("true", "false") or math.isfinite(float(s))
    if s[:1] in "[{":
        try:
            return isinstance(jsontext.loads(s), (list, dict))
        except ValueError:
            return False
    return False


def frame_of(records: list[dict], columns: list[str] | None = None) -> pl.DataFrame:
    """Records -> a frame of Utf8 columns (the union of keys, first-seen order), with `_typed`
    (unless the records bring their own)."""
    if columns is None:
        seen: dict[str, None] = {}
        for r in records:
            seen.update(dict.fromkeys(r))
        columns = list(seen)
    data = {c: [canonical(r.get(c)) for r in records] for c in columns}
    if TYPED not in columns:
        data[TYPED] = [json.dumps([k for k, v in r.items() if is_typed(v)]) for r in records]
    return pl.DataFrame(data, schema={c: pl.Utf8 for c in data})


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
        data = jsontext.parse(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise SourceError(f"{path}: cannot be read as JSON: {exc}") from None
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
        info["envelope"] = {
            k: v
            for k, v in data.items()
            if k != records_key and not isinstance(v, (list, dict)) and jsontext.problem(v) is None
        }
        data = data[records_key]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    bad = [i + 1 for i, r in enumerate(data) if not isinstance(r, dict)]
    records = [_record(r, f"record {i + 1}") for i, r in enumerate(data)]
    info["rows"] = len(records)
    if bad:
        info["non_object_records"] = len(bad)
    if detected is not None:
        detected.update(info)
    yield from _batches(records, batch_rows)


def _record(value, where: str) -> dict:
    """A parsed JSON record, or a record that quarantines it with the reason (not an object,
    a number too long or infinite, a lone surrogate, nesting too deep)."""
    why = jsontext.problem(value)
    if why:
        return {"_error": f"{where}: {why}", "_raw": jsontext.ascii_dump(value)}
    if not isinstance(value, dict):
        return {"_error": f"{where}: a {type(value).__name__}, not an object", "_raw": canonical(value)}
    return value


def read_jsonl(path: Path, batch_rows: int, detected: dict | None = None) -> Iterator[pl.DataFrame]:
    """One record per line, read as a stream: memory holds one batch, whatever the file's size."""
    info: dict = {"bom": False, "encoding": "utf-8"}
    records: list[dict] = []
    count = 0
    for n, line in _lines(path, info):
        if not line.strip():
            continue
        try:
            records.append(_record(jsontext.parse(line), f"line {n}"))
        except json.JSONDecodeError as exc:
            records.append({"_error": f"line {n}: not valid JSON: {exc.msg}", "_raw": line[:500]})
        except ValueError as exc:  # nested too deeply
            records.append({"_error": f"line {n}: {exc}", "_raw": line[:500]})
        if len(records) == batch_rows:
            yield _numbered(records, count + 1)
            count, records = count + len(records), []
    if records:
        yield _numbered(records, count + 1)
        count += len(records)
    info["rows"] = count
    if detected is not None:
        detected.update(info)


def _numbered(records: list[dict], start: int) -> pl.DataFrame:
    return frame_of(records).with_columns(pl.Series("_row", range(start, start + len(records)), dtype=pl.Int64))


def _lines(path: Path, info: dict) -> Iterator[tuple[int, str]]:
    """A UTF-8 file's lines (split at \\n only, the BOM and a trailing \\r dropped) one at a time;
    SourceError for an empty file or a byte that is not UTF-8 (with its offset)."""
    offset, content = 0, False
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                info["bom"], raw, offset = True, raw[3:], 3
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                raise SourceError(
                    f"{path}: not UTF-8 (byte {at}: {raw[exc.start : exc.start + 1]!r}); re-export as UTF-8"
                ) from None
            offset += len(raw)
            content = content or bool(raw.strip())
            yield n, line.rstrip("\r\n")
    if not content:
        raise SourceError(f"{path}: file is empty")


def junk_title(first: str, rest: str, delimiter: str, sample: int = 20) -> str | None:
    """Why `first` is a title line and not the header of `rest`, or None when it may be the
    header: it is one cell (no delimiter), while every one of the next `sample` records has
    several cells (read as CSV, so a quoted delimiter inside a cell does not count)."""
    if delimiter in first or not first.strip():
        return None
    try:
        records = csv.reader(io.StringIO(rest, newline=""), delimiter=delimiter, strict=True)
        counts = [len(cells) for cells in itertools.islice((c for c in records if any(x.strip() for x in c)), sample)]
    except csv.Error:
        return None
    if not counts or min(counts) < 2:
        return None
    return f"one cell, while the {len(counts)} record(s) after it have {min(counts)} or more: not a header"


def read_csv(path: Path, batch_rows: int, delimiter: str = ",", detected: dict | None = None) -> Iterator[pl.DataFrame]:
    """RFC-4180 CSV, all cells as text. A junk first line (a title) is skipped and reported
    only when it cannot be the header of the rest (see `junk_title`); rows with the wrong number
    of cells are quarantined with that reason."""
    text, info = _text(path)
    first, _, rest = text.partition("\n")
    why = junk_title(first, rest, delimiter)
    if why:
        info["skipped_first_line"] = first.strip()[:80]
        info["skipped_first_line_reason"] = why
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
            record = dict(zip(header, cells))
            record[TYPED] = json.dumps([k for k, v in record.items() if json_cell(v)])
            records.append(record)
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
    """One row per .md file: path (relative to the folder) and content, as the file has them
    (the normalizer takes the title from the content)."""
    records = []
    for path in sorted(folder.rglob("*.md")):
        try:
            content = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            records.append({"path": str(path.relative_to(folder)), "_error": "not UTF-8"})
            continue
        records.append({"path": str(path.relative_to(folder)), "content": content})
    if detected is not None:
        detected.update({"rows": len(records), "format": "markdown"})
    yield from _batches(records, batch_rows)
