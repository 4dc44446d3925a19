"""The shared shape of every normalizer: raw frame in, `Normalized` out.

A normalizer is `shape(rec: Rec, rules: Rules) -> dict` per source row, wrapped by
`normalize_frame`, which adds what every entity needs: tenant assignment (and, in a hierarchy,
the parent's tenants), required fields, duplicate natural keys (first kept, the rest
quarantined), metadata for every raw value the shape did not use, with its source type (nothing
is dropped), and the rejects with their reasons. What vital-etl itself records about a row goes
under metadata's reserved key `_etl`, never among the legacy values.

Rows are shaped one by one in Python because each bad row needs its own reason; everything
around that (dedupe, tenant split, link explosion and resolution) is Polars.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import polars as pl

from core import jsontext
from core.catalogue import REF_COLUMNS, REFERENCED
from sources.files import TYPED
from tasks.normalize.common import clean_text, ref_key
from tasks.normalize.refs import Index
from tasks.normalize.rules import EnumMap, Rules
from tasks.normalize.spill import Spill, Spiller, restore
from tasks.normalize.tenancy import LabelFile, assign_tenants

META_COLUMNS = ("_source", "_row", "_tenants", TYPED)
# metadata key of what vital-etl itself records about a row (provenance, the rules that
# decided, unresolved references): legacy values never go there, so none is ever overwritten
RESERVED = "_etl"
# keys a shape may put in its `metadata` that are decisions of vital-etl, not legacy values
DECISIONS = ("functional_area_rule",)
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
    """One raw source row. Reading a field marks it used; unused non-empty fields go to metadata
    with the type they have in the source (the reader lists them in `_typed`).

    Of several names (`get("slug", "code")`) only the one whose value is returned is used: the
    others, when they hold a value, are kept in metadata too. A mapped value (an enum) keeps the
    raw spelling beside it, as metadata `legacy_<field>`."""

    def __init__(self, raw: dict, label: dict | None = None):
        self.raw = raw
        self.used: set[str] = set()
        self.label = label  # the row of a tenant-label file that names this row (typed), if any
        self.kept: dict = {}  # legacy_<field> -> the raw value beside a mapped one
        self.decisions: dict = {}  # what vital-etl decided for this row, for metadata._etl
        typed = raw.get(TYPED)  # None: a frame made without a reader (JSON-looking text is JSON)
        self.typed = set(json.loads(typed)) if typed else None

    def _first(self, names: tuple[str, ...]) -> tuple[str | None, str | None]:
        for name in names:
            value = clean_text(self.raw.get(name))
            if value is not None:
                return name, value
        return None, None

    def _use(self, names: tuple[str, ...], chosen: str | None) -> None:
        self.used.update(n for n in names if n == chosen or clean_text(self.raw.get(n)) is None)

    def get(self, *names: str) -> str | None:
        """The first non-empty of the named fields, cleaned (trimmed, odd spaces to plain ones)."""
        name, value = self._first(names)
        self._use(names, name)
        return value

    def peek(self, *names: str) -> str | None:
        """Like get, without marking anything used (aliases: the value still goes to metadata)."""
        return self._first(names)[1]

    def text(self, *names: str) -> str | None:
        """The first non-blank of the named fields exactly as the source has it (free text:
        descriptions, bodies, prompts keep their spaces and line breaks)."""
        name, _ = self._first(names)
        self._use(names, name)
        return None if name is None else self.raw[name]

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

    def keep(self, name: str) -> None:
        """Keep the source's value of `name` as metadata `legacy_<name>` (beside a mapped value)."""
        if name in self.raw and self.raw[name] not in (None, ""):
            self.kept[f"legacy_{name}"] = self.value(name)

    def enum(
        self, name: str | tuple[str, ...], enum: EnumMap, *, default: str | None = None, value: str | None = None
    ) -> str | None:
        """Map free text to an enum label through rules/enums.yaml; unknown values are rejected.
        The raw spelling is kept as metadata `legacy_<field>`."""
        names = (name,) if isinstance(name, str) else tuple(name)
        field, raw = (names[0], value) if value is not None else self._first(names)
        self._use(names, field)
        if raw is None:
            return default
        mapped = enum.map(raw)
        if mapped is None:
            raise RowError(enum.unknown_message(raw))
        self.keep(field)
        return mapped

    def nested(self, name: str) -> dict:
        """A JSON-object field (e.g. legacy `metadata`), read without marking it used: it still
        goes to metadata whole."""
        value = _jsonish(self.raw.get(name))
        return value if isinstance(value, dict) else {}

    def value(self, name: str):
        """A field's value with its source type: JSON text the reader marked as typed (numbers,
        booleans, arrays, objects) decoded, text as text."""
        value = self.raw.get(name)
        if self.typed is None:  # a frame made without a reader: JSON-looking text is JSON
            return _jsonish(value)
        if name in self.typed and isinstance(value, str):
            try:
                return jsontext.loads(value)
            except ValueError:
                return value
        return value

    def leftovers(self) -> dict:
        """Unused raw values, typed. A legacy `metadata` object is merged in at the top level,
        unless one of its keys would replace another value: then it is kept whole as `metadata`."""
        out: dict = {}
        legacy: dict | None = None
        for key, value in self.raw.items():
            if key in self.used or key in META_COLUMNS or key.startswith("_") or value is None or value == "":
                continue
            value = self.value(key)
            if key == "metadata" and isinstance(value, dict):
                legacy = value
            else:
                out[key] = value
        if legacy:
            clash = any(k in out and out[k] != v for k, v in legacy.items()) or RESERVED in legacy
            out = {**out, "metadata": legacy} if clash else {**legacy, **out}
        return out


def _jsonish(value):
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return jsontext.loads(value)
        except ValueError:  # not JSON, or JSON nothing can hold (core/jsontext.py): kept as text
            return value
    return value


@dataclass
class Normalized:
    """One entity, all tenants: valid rows (with their tenants), raw link refs (a_ref, b_ref,
    kind, owner_key: the row that declared the link), rejects."""

    entity: str
    frame: pl.DataFrame  # the rows, their long texts in `spill`'s files (spill.py) if any
    links: dict[str, pl.DataFrame]
    rejects: pl.DataFrame
    findings: list[str] = field(default_factory=list)
    read: int = 0
    spill: Spill | None = None

    @property
    def rows(self) -> pl.DataFrame:
        """The whole rows (long texts read back): for tools and tests; a run reads `frame`."""
        return restore(self.frame, self.spill)


REJECT_SCHEMA = {
    "_source": pl.Utf8,
    "_row": pl.Int64,
    "legacy_key": pl.Utf8,
    "reason": pl.Utf8,
    "payload": pl.Utf8,
    "tenants": pl.List(pl.Utf8),
}
# a reference of one row to another. owner_side: which end (a or b) is the row that declared it;
# column: the source column it came from; match: code, name or any (tasks/normalize/refs.py)
LINK_SCHEMA = {
    "a_ref": pl.Utf8,
    "b_ref": pl.Utf8,
    "kind": pl.Utf8,
    "owner_key": pl.Utf8,
    "owner_side": pl.Utf8,
    "column": pl.Utf8,
    "match": pl.Utf8,
}
EMPTY_ROWS = {
    "legacy_key": pl.Utf8,
    "tenants": pl.List(pl.Utf8),
    "tenant_rule": pl.Utf8,
    "metadata": pl.Utf8,
    "_codes": pl.List(pl.Utf8),
    "_aliases": pl.List(pl.Utf8),
}


def link(a: str, b: str, kind: str | None = None, column: str | None = None, match: str = "any") -> tuple:
    """One entry of a shape's `_links`: (a_ref, b_ref, kind, source column, match)."""
    return (a, b, kind, column, match)


ROWS_PER_FRAME = 5000


def normalize_frame(
    entity: str,
    raw: pl.DataFrame | Iterable[pl.DataFrame],
    rules: Rules,
    shape: Callable[[Rec, Rules], dict],
    *,
    labels: LabelFile | dict[str, list[str]] | None = None,
    spill_to: str | None = None,
) -> Normalized:
    """Shape every row. A row's dict may carry `_links` ({junction: [link(...) or (a_ref, b_ref,
    kind)]}), `_codes` (exact identifiers by which links name it: slug, code, legacy ids),
    `_aliases` (its names) and `_etl` (decisions for metadata._etl).

    raw: one frame, or the entity's batches one after the other (read lazily: only one raw
    batch and at most ROWS_PER_FRAME shaped dicts are in memory at a time). spill_to: a folder
    where the long text columns go as each frame is made (spill.py), not kept in memory."""
    labels = labels if isinstance(labels, LabelFile) else LabelFile(dict(labels or {}))
    label_key = getattr(rules.tenancy.get(entity), "label_key", None)
    rows, rejects, links, labelled, frames, read = [], [], {}, set(), [], 0
    spiller = Spiller(spill_to, entity)
    referenced = entity in REFERENCED
    for raw_row, (tenants, rule, problem) in _tenanted_rows(entity, raw, rules, labels):
        read += 1
        if len(rows) >= ROWS_PER_FRAME:  # bounded: at most this many row dicts at a time
            frames.append(spiller.add(pl.DataFrame(rows, infer_schema_length=None)))
            rows = []
        label_row = None
        if label_key and labels.rows:
            found = clean_text(raw_row.get(label_key))
            if found in labels.rows:
                label_row = labels.rows[found]
                labelled.add(found)
        rec = Rec(raw_row, label_row)
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
        shaped = row.pop("metadata", None) or {}
        etl = {k: shaped.pop(k) for k in DECISIONS if k in shaped} | rec.decisions | (row.pop("_etl", None) or {})
        metadata = {**rec.leftovers(), **rec.kept, **shaped}
        if label_row is not None:
            metadata["label_file"] = label_row
        if etl:
            metadata[RESERVED] = etl
        row["metadata"] = json.dumps(metadata, ensure_ascii=False, sort_keys=True, default=str)
        row["tenants"], row["tenant_rule"] = tenants, rule
        row["_source"], row["_row"] = raw_row.get("_source"), raw_row.get("_row")
        key = row["legacy_key"]
        codes = {c for c in (clean_text(x) for x in [key, *row.pop("_codes", [])] if isinstance(x, str)) if c}
        names = [a for a in [*row.pop("_aliases", []), *codes] if isinstance(a, str) and a.strip()]
        if referenced:  # what references find the row by; nothing names the others (prompts)
            row["_codes"], row["_aliases"] = sorted(codes), sorted({ref_key(a) for a in names})
        for junction, refs in (row.pop("_links", None) or {}).items():
            for ref in refs:
                a, b, kind, column, match = (*ref, None, None)[:5]
                side = "a" if a == key else "b"
                links.setdefault(junction, []).append((a, b, kind, key, side, column or junction, match or "any"))
        rows.append(row)

    frames += [spiller.add(pl.DataFrame(rows, infer_schema_length=None))] if rows else []
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(schema=EMPTY_ROWS)
    spill = spiller.done()
    frame, dupes = _split_duplicates(frame, spill)
    rejects.extend(dupes)
    findings: list[str] = []
    for ref_col, (target, _) in REF_COLUMNS.get(entity, {}).items():
        if target == entity and ref_col in frame.columns:
            frame = inherit_parent_tenants(entity, frame, ref_col, findings)
    if labels.rows:
        findings += _unmatched_labels(entity, labels, labelled)
    kept = set(frame["legacy_key"].to_list()) if links else set()
    link_frames = {
        j: pl.DataFrame([x for x in v if x[3] in kept], schema=LINK_SCHEMA, orient="row").unique(maintain_order=True)
        for j, v in links.items()
    }
    return Normalized(
        entity,
        frame,
        link_frames,
        pl.DataFrame(rejects, schema=REJECT_SCHEMA),
        findings=findings,
        read=read,
        spill=spill,
    )


def _tenanted_rows(entity: str, raw, rules: Rules, labels: LabelFile):
    """(row, its tenant assignment) over every batch of raw."""
    for piece in [raw] if isinstance(raw, pl.DataFrame) else raw:
        yield from zip(piece.iter_rows(named=True), assign_tenants(entity, piece, rules, labels.tenants))


def inherit_parent_tenants(entity: str, frame: pl.DataFrame, ref_col: str, findings: list[str]) -> pl.DataFrame:
    """A row of a hierarchy that no source gave tenants (rule `default`) follows its parent's
    tenants; a row a source put in a tenant its parent is not in is reported (it would have no
    parent there). Parents first; a cycle stops the walk."""
    index = Index(frame)
    keys = frame["legacy_key"].to_list()
    at = {k: i for i, k in enumerate(keys)}
    tenants = [list(t) for t in frame["tenants"].to_list()]
    rules = frame["tenant_rule"].to_list()
    parent = {}
    for key, ref in zip(keys, frame[ref_col].to_list()):
        found = index.lookup(ref) if ref else []
        if len(found) == 1 and found[0] != key:
            parent[key] = found[0]
    done: set[str] = set()

    def settle(key: str, path: tuple[str, ...]) -> list[str]:
        i = at[key]
        p = parent.get(key)
        if key not in done and p is not None and p not in path:
            above = settle(p, (*path, key))
            if rules[i] == "default":
                tenants[i], rules[i] = list(above), f"inherited: parent {p!r}"
            elif extra := sorted(set(tenants[i]) - set(above)):
                findings.append(
                    f"{entity} {key!r} is in {', '.join(extra)} ({rules[i]}) but its parent {p!r} is only in "
                    f"{', '.join(above) or 'no tenant'}: there it has no parent; give both the same tenants "
                    "in the sources or rules/tenancy.yaml"
                )
        done.add(key)
        return tenants[i]

    for key in keys:
        settle(key, ())
    return frame.with_columns(
        pl.Series("tenants", tenants, dtype=pl.List(pl.Utf8)), pl.Series("tenant_rule", rules, dtype=pl.Utf8)
    )


def _unmatched_labels(entity: str, labels: LabelFile, labelled: set[str]) -> list[str]:
    unmatched = sorted(set(labels.rows) - labelled)
    if not unmatched:
        return []
    return [
        f"tenant labels: {len(unmatched)} of {len(labels.rows)} rows of {labels.source or 'the label file'} "
        f"name no {entity} row; they decided nothing (add the {entity} or remove the rows): " + ", ".join(unmatched)
    ]


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


def _split_duplicates(frame: pl.DataFrame, spill: Spill | None = None) -> tuple[pl.DataFrame, list[dict]]:
    """Keep the first row of each natural key (manifest order = precedence); report the rest."""
    if frame.height == 0 or frame["legacy_key"].is_first_distinct().all():
        return frame, []  # the usual case, without copying the frame
    numbered = frame.with_row_index("_i")
    first = numbered.group_by("legacy_key", maintain_order=True).agg(
        pl.col("_i").first().alias("_first"),
        pl.col("_source").first().alias("_first_source"),
        pl.col("_row").first().alias("_first_row"),
    )
    joined = numbered.join(first, on="legacy_key", how="left", maintain_order="left")
    dupes = restore(joined.filter(pl.col("_i") != pl.col("_first")), spill)
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
