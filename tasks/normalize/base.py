"""The shared shape of every normalizer: raw frame in, `Normalized` out.

A normalizer is `shape(rec: Rec, rules: Rules) -> dict` per source row, wrapped by
`normalize_frame`, which adds what every entity needs: tenant assignment, required fields,
duplicate natural keys (first kept, the rest quarantined), metadata for every raw value the
shape did not use (nothing is dropped), and the rejects with their reasons.

Rows are shaped one by one in Python because each bad row needs its own reason; everything
around that (dedupe, tenant split, link explosion and resolution) is Polars.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from tasks.normalize.common import clean_text, ref_key
from tasks.normalize.rules import EnumMap, Rules
from tasks.normalize.tenancy import assign_tenants

META_COLUMNS = ("_source", "_row", "_tenants")
# columns that usually hold a row's natural key: named on a quarantined row that has no shape
KEY_HINTS = (
    "id",
    "code",
    "slug",
    "capability_slug",
    "prompt_code",
    "Unique_ID",
    "Department_ID",
    "domain_id",
    "path",
    "name",
)


class RowError(ValueError):
    """This row cannot be loaded; the message is the quarantine reason."""


class Rec:
    """One raw source row. Reading a field marks it used; unused non-empty fields go to metadata."""

    def __init__(self, raw: dict):
        self.raw = raw
        self.used: set[str] = set()

    def get(self, *names: str) -> str | None:
        """The first non-empty of the named fields, cleaned."""
        for name in names:
            self.used.add(name)
            value = clean_text(self.raw.get(name))
            if value is not None:
                return value
        return None

    def require(self, *names: str) -> str:
        value = self.get(*names)
        if value is None:
            raise RowError(f"missing required field {' / '.join(names)}")
        return value

    def parse(self, name: str, parser: Callable, *, label: str | None = None):
        """parser(value) with its ValueError turned into a quarantine reason naming the field."""
        self.used.add(name)
        try:
            return parser(self.raw.get(name))
        except ValueError as exc:
            raise RowError(f"{label or name}: {exc}") from None

    def enum(self, name: str, enum: EnumMap, *, default: str | None = None, value: str | None = None) -> str | None:
        """Map free text to an enum label through rules/enums.yaml; unknown values are rejected."""
        raw = value if value is not None else self.get(name)
        if raw is None:
            return default
        mapped = enum.map(raw)
        if mapped is None:
            raise RowError(enum.unknown_message(raw))
        return mapped

    def nested(self, name: str) -> dict:
        """A JSON-object field (e.g. legacy `metadata`), read without marking it used: it still
        goes to metadata whole."""
        value = _jsonish(self.raw.get(name))
        return value if isinstance(value, dict) else {}

    def leftovers(self) -> dict:
        """Unused raw values; a legacy `metadata` object is merged in at the top level."""
        out = {}
        for key, value in self.raw.items():
            if key in self.used or key in META_COLUMNS or key.startswith("_") or value is None or value == "":
                continue
            value = _jsonish(value)
            if key == "metadata" and isinstance(value, dict):
                out = {**value, **out}
            else:
                out[key] = value
        return out


def _jsonish(value):
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


@dataclass
class Normalized:
    """One entity, all tenants: valid rows (with their tenants), raw link refs (a_ref, b_ref,
    kind, owner_key: the row that declared the link), rejects."""

    entity: str
    rows: pl.DataFrame
    links: dict[str, pl.DataFrame]
    rejects: pl.DataFrame
    findings: list[str] = field(default_factory=list)
    read: int = 0


REJECT_SCHEMA = {
    "_source": pl.Utf8,
    "_row": pl.Int64,
    "legacy_key": pl.Utf8,
    "reason": pl.Utf8,
    "payload": pl.Utf8,
    "tenants": pl.List(pl.Utf8),
}
LINK_SCHEMA = {"a_ref": pl.Utf8, "b_ref": pl.Utf8, "kind": pl.Utf8, "owner_key": pl.Utf8}


def normalize_frame(
    entity: str,
    raw: pl.DataFrame,
    rules: Rules,
    shape: Callable[[Rec, Rules], dict],
    *,
    labels: dict[str, list[str]] | None = None,
) -> Normalized:
    """Shape every row; a row's dict may carry `_links` ({junction: [(a_ref, b_ref, kind)]})
    and `_aliases` (other names by which links refer to it)."""
    tenancy = assign_tenants(entity, raw, rules, labels or {})
    rows, rejects, links = [], [], {}
    for raw_row, (tenants, rule, problem) in zip(raw.iter_rows(named=True), tenancy):
        rec = Rec(raw_row)
        key_hint = next((clean_text(raw_row.get(k)) for k in KEY_HINTS if clean_text(raw_row.get(k))), None)
        try:
            if raw_row.get("_error"):
                raise RowError(raw_row["_error"])
            if problem:
                raise RowError(problem)
            row = shape(rec, rules)
            if not row.get("legacy_key"):
                raise RowError("missing required field for the natural key")
        except RowError as exc:
            rejects.append(_reject(raw_row, key_hint, str(exc), tenants))
            continue
        metadata = {**rec.leftovers(), **(row.pop("metadata", None) or {})}
        row["metadata"] = json.dumps(metadata, ensure_ascii=False, sort_keys=True, default=str)
        row["tenants"], row["tenant_rule"] = tenants, rule
        row["_source"], row["_row"] = raw_row.get("_source"), raw_row.get("_row")
        row["_aliases"] = sorted({ref_key(a) for a in row.pop("_aliases", []) if a} | {ref_key(row["legacy_key"])})
        for junction, refs in (row.pop("_links", None) or {}).items():
            links.setdefault(junction, []).extend((a, b, k, row["legacy_key"]) for a, b, k in refs)
        rows.append(row)

    frame = (
        pl.DataFrame(rows, infer_schema_length=None)
        if rows
        else pl.DataFrame(
            {"legacy_key": [], "tenants": [], "_aliases": []},
            schema={"legacy_key": pl.Utf8, "tenants": pl.List(pl.Utf8), "_aliases": pl.List(pl.Utf8)},
        )
    )
    frame, dupes = _split_duplicates(frame)
    rejects.extend(dupes)
    kept = set(frame["legacy_key"].to_list())
    link_frames = {
        j: pl.DataFrame([x for x in v if x[3] in kept], schema=LINK_SCHEMA, orient="row").unique(maintain_order=True)
        for j, v in links.items()
    }
    return Normalized(entity, frame, link_frames, pl.DataFrame(rejects, schema=REJECT_SCHEMA), read=raw.height)


def _reject(raw_row: dict, key: str | None, reason: str, tenants: list[str]) -> dict:
    payload = {k: v for k, v in raw_row.items() if not k.startswith("_") and v not in (None, "")}
    return {
        "_source": raw_row.get("_source"),
        "_row": raw_row.get("_row"),
        "legacy_key": key,
        "reason": reason,
        "payload": json.dumps(payload, ensure_ascii=False, default=str),
        "tenants": tenants,
    }


def _split_duplicates(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[dict]]:
    """Keep the first row of each natural key (manifest order = precedence); report the rest."""
    if frame.height == 0:
        return frame, []
    numbered = frame.with_row_index("_i")
    first = numbered.group_by("legacy_key", maintain_order=True).agg(
        pl.col("_i").first().alias("_first"),
        pl.col("_source").first().alias("_first_source"),
        pl.col("_row").first().alias("_first_row"),
    )
    joined = numbered.join(first, on="legacy_key", how="left", maintain_order="left")
    dupes = joined.filter(pl.col("_i") != pl.col("_first"))
    rejects = [
        {
            "_source": d["_source"],
            "_row": d["_row"],
            "legacy_key": d["legacy_key"],
            "reason": f"duplicate natural key {d['legacy_key']!r}: kept the row from {d['_first_source']} "
            f"row {d['_first_row']}",
            "payload": json.dumps(
                {k: v for k, v in d.items() if not k.startswith("_") and k != "tenants"},
                ensure_ascii=False,
                default=str,
            ),
            "tenants": d["tenants"],
        }
        for d in dupes.iter_rows(named=True)
    ]
    kept = joined.filter(pl.col("_i") == pl.col("_first")).drop("_i", "_first", "_first_source", "_first_row")
    return kept, rejects
