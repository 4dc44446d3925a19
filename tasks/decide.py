"""What vital-etl decides rather than reads, for one tenant's slice, with evidence:

- functional areas (tasks/normalize/areas.py): overrides, explicit values, inheritance through
  the links the sources state, the model over the embedding model's vectors, keyword rules,
  the default;
- links people can check (tasks/links.py, rules/links.yaml): persona -> org role, persona ->
  JTBD, agent -> JTBD, by titles first, then by similarity with a margin and a cap per target;
- reviewers' decisions (rules/overrides/, tasks/review.py), which win over inference;
- one record per decision (kind, value, source, confidence, evidence) for etl.decisions, the
  review export and the run report.

`decide_slice` is the whole step without I/O: vectors come from a function (texts -> vectors),
so the quality bench runs exactly what the flow runs. The task `decide_tenant` gives it the
embedding cache (or, for a dry run, the model directly), the override files, and the area
columns the target already holds: a decision that did not change keeps its recorded confidence
and evidence while only the model's numbers moved (rules/decisions.yaml `keep_recorded_within`),
so a re-run writes only the rows that changed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.catalogue import junction as junction_of
from core.errors import ConfigError, ConnectionFailed
from core.settings import RULES_DIR
from core.yamlfile import read_yaml
from tasks.embed import TEMPLATES, content_sha256, persona_text
from tasks.embed import row_metadata as _meta
from tasks.links import LinkRule, load_link_rules, name_overlap, rank_links, title_key, title_parts
from tasks.normalize.areas import COLUMNS as AREA_COLUMNS
from tasks.normalize.areas import AreaClassifier, ModelView, decide_area, summary_text
from tasks.normalize.resolve import TenantSlice
from tasks.normalize.rules import Rules
from tasks.review import Overrides, load_overrides

Vectors = Callable[[list[str]], np.ndarray]

# areas are decided parents first: a department inherits from its function, a role from its
# functions (else its departments), a JTBD from the personas the sources link it to
AREA_ORDER = (
    "org_functions",
    "org_departments",
    "org_roles",
    "capabilities",
    "personas",
    "agents",
    "prompts",
    "jobs_to_be_done",
)
INHERIT: dict[str, tuple[tuple[str, str], ...]] = {
    "org_departments": (("function_departments", "org_functions"),),
    "org_roles": (("function_roles", "org_functions"), ("department_roles", "org_departments")),
    "jobs_to_be_done": (("jtbd_personas", "personas"),),
}
CONFIDENCE_KEYS = (
    "tenant_keywords",
    "tenant_default_all",
    "tenant_default",
    "created",
    "match_ambiguous",
    "match_by_code",
    "link_title",
    "link_title_other_area",
)


@dataclass(frozen=True)
class DecisionRules:
    """rules/decisions.yaml: the review threshold, the confidence of non-area decisions, and how
    far a re-run's numbers may move before a recorded area decision is rewritten."""

    review_below: float
    confidence: dict[str, float]
    keep_recorded_within: float = 0.0


def load_decision_rules(path=None) -> DecisionRules:
    path = Path(path) if path else RULES_DIR / "decisions.yaml"
    data = read_yaml(path, "decision rules") or {}
    below, within = data.get("review_below"), data.get("keep_recorded_within")
    conf = {k: v for k, v in (data.get("confidence") or {}).items()}

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1

    bad = [k for k, v in (("review_below", below), ("keep_recorded_within", within)) if not number(v)]
    bad += [f"confidence.{k}" for k in CONFIDENCE_KEYS if not number(conf.get(k))]
    unknown = sorted(set(conf) - set(CONFIDENCE_KEYS))
    if bad or unknown:
        raise ConfigError(
            f"{path}: needs review_below, keep_recorded_within and confidence.{{{', '.join(CONFIDENCE_KEYS)}}}, "
            "each a number in 0..1"
            + (f"; wrong or missing: {', '.join(bad)}" if bad else "")
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return DecisionRules(float(below), {k: float(v) for k, v in conf.items()}, float(within))


def _items(value) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [value]
    return [str(v) for v in value if v] if isinstance(value, (list, tuple)) else []


def _join(*parts) -> str:
    return "\n".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())


def _plain_name(r: dict) -> str:
    return r.get("title") or r.get("name") or ""


def _display_name(r: dict) -> str:
    return r.get("display_name") or r.get("name") or ""


def _name_text(r: dict) -> str:
    return _join(r.get("display_name") or r.get("name"), r.get("description"))[:2000]


# what the model reads per entity: (weight, text) views, their similarities averaged
VIEWS: dict[str, tuple[tuple[float, Callable[[dict], str]], ...]] = {
    "org_functions": ((1.0, _name_text),),
    "org_departments": ((1.0, _name_text),),
    "org_roles": ((1.0, _name_text),),
    "capabilities": ((1.0, _name_text),),
    "agents": ((1.0, _name_text),),
    "personas": ((1.0, persona_text),),
    # a job's name is its activity, the statement its situation and outcome: two views
    "jobs_to_be_done": ((1.0, lambda r: r.get("name") or ""), (1.0, lambda r: r.get("statement") or "")),
    # a prompt's name is often its agent's; its content says what it asks
    "prompts": (
        (0.5, lambda r: r.get("name") or ""),
        (
            1.0,
            lambda r: _join(r.get("description"), (r.get("prompt_starter") or "")[:600], (r.get("body") or "")[:600]),
        ),
    ),
}
# free-text fields whose template lines (a line found in many rows: headings, standard
# instructions) are removed before the model or the keyword rules read them
BOILERPLATE_FIELDS: dict[str, tuple[str, ...]] = {"prompts": ("description", "prompt_starter", "body")}
BOILERPLATE_SHARE, BOILERPLATE_MIN = 0.01, 5
# the junctions decided here, with the entities at their ends (whose rows links read whole)
LINK_ENDS = {"persona_roles": ("personas", "org_roles"), "jtbd_personas": ("jobs_to_be_done", "personas"),
             "agent_jtbds": ("agents", "jobs_to_be_done")}  # fmt: skip
# rows of an entity that no other step reads are turned into dicts this many at a time
DECIDE_CHUNK_ROWS = 5000


def boilerplate_lines(chunks, fields: tuple[str, ...]) -> set[int]:
    """The hashes of the lines that many rows share in `fields` (a line counts once a row), over
    chunks of row dicts: counting hashes, not lines, keeps this small for a large table."""
    counts: dict[int, int] = {}
    n = 0
    for rows in chunks:
        n += len(rows)
        for r in rows:
            for h in {hash(x.strip()) for f in fields for x in (r.get(f) or "").splitlines() if x.strip()}:
                counts[h] = counts.get(h, 0) + 1
    limit = max(BOILERPLATE_MIN, BOILERPLATE_SHARE * n)
    return {h for h, c in counts.items() if c >= limit}


def strip_boilerplate(rows: list[dict], fields: tuple[str, ...], common: set[int]) -> None:
    """Remove from each row's fields the lines that many rows share (in place); common: their
    hashes (`boilerplate_lines`, counted over the whole table)."""
    for r in rows:
        for f in fields:
            if r.get(f):
                r[f] = "\n".join(x for x in r[f].splitlines() if x.strip() and hash(x.strip()) not in common)


# the texts similarity links compare (persona and JTBD: their embedding templates)
LINK_TEXTS: dict[str, Callable[[dict], str]] = {
    "personas": TEMPLATES["personas"],
    "jobs_to_be_done": TEMPLATES["jobs_to_be_done"],
    "agents": _name_text,
    "org_roles": _name_text,
}


class _Reads(dict):
    """A row without values that notes the columns a function reads."""

    def __init__(self):
        super().__init__()
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return default

    def __getitem__(self, key):
        self.read.add(key)
        return None

    def __contains__(self, key):
        self.read.add(key)
        return False


def decide_columns(entity: str, columns: list[str], rules: Rules) -> list[str]:
    """The columns of `entity` that deciding reads, in frame order: only they become Python
    dicts (~2 kB a row for all of a prompt's columns). Derived from what reads them: ids and
    names, the area columns, the keyword rules' fields (rules/functional_areas.yaml), the
    boilerplate fields, and the columns the model's views and the links' texts and titles read
    (each function run once on an empty row that notes them; one that fails: every column)."""
    want = {"id", "legacy_key", "name", *AREA_COLUMNS, *rules.areas.fields.get(entity, ())}
    want |= set(BOILERPLATE_FIELDS.get(entity, ()))
    readers = [fn for _, fn in VIEWS.get(entity, ())]
    if entity in LINK_TEXTS:
        readers += [LINK_TEXTS[entity], _plain_name, _display_name, _persona_titles, _meta]
    for fn in readers:
        probe = _Reads()
        try:
            fn(probe)
        except Exception:
            return list(columns)
        want |= probe.read
    return [c for c in columns if c in want]


@dataclass(slots=True)
class Decision:
    """One thing vital-etl decided rather than read, as the review lists it (slots: a large
    table makes one per row)."""

    kind: str  # area, tenant, link, created, match
    entity: str  # table, or junction for links
    key: str  # legacy key (of the link's `a` end)
    target_key: str  # the link's `b` end; '' otherwise
    name: str
    value: str
    source: str
    confidence: float
    evidence: dict
    margin: float | None = None
    reviewed: bool = False

    def __post_init__(self) -> None:
        # the same few words in every decision of a large table: one copy each, not one per row
        if isinstance(self.value, str):
            self.value = sys.intern(self.value)
        self.source = sys.intern(self.source)

    def row(self, tenant: str) -> dict:
        return {
            "tenant": tenant,
            "kind": self.kind,
            "entity": self.entity,
            "key": self.key,
            "target_key": self.target_key,
            "name": self.name,
            "value": self.value,
            "source": self.source,
            "confidence": round(float(self.confidence), 3),
            "margin": None if self.margin is None else round(float(self.margin), 3),
            "evidence": json.dumps(self.evidence, ensure_ascii=False, sort_keys=True, default=str),
            "reviewed": self.reviewed,
        }


@dataclass
class Decided:
    tenant: str
    decisions: list[Decision] = field(default_factory=list)
    stale_overrides: list[str] = field(default_factory=list)
    review_below: float = 0.7
    links: dict[str, dict[str, int]] = field(default_factory=dict)  # junction -> mapping_source -> rows
    complete_links: tuple[str, ...] = ()  # junctions whose both ends this run decided
    kept_recorded: int = 0  # area rows that kept the confidence and evidence the target holds

    def summary(self) -> dict:
        by_kind: dict[str, int] = {}
        by_source: dict[str, int] = {}
        for d in self.decisions:
            by_kind[d.kind] = by_kind.get(d.kind, 0) + 1
            by_source[d.source] = by_source.get(d.source, 0) + 1
        below = [d for d in self.decisions if d.confidence < self.review_below]
        return {
            "decisions": len(self.decisions),
            "by_kind": dict(sorted(by_kind.items())),
            "by_source": dict(sorted(by_source.items())),
            "review_below": self.review_below,
            "below_threshold": len(below),
            "below_threshold_unreviewed": sum(1 for d in below if not d.reviewed),
            "reviewed": sum(1 for d in self.decisions if d.reviewed),
            "stale_overrides": list(self.stale_overrides),
            "links": self.links,
        }


# ---------------------------------------------------------------------------------------------


def decide_slice(
    part: TenantSlice,
    rules: Rules,
    vectors: Vectors,
    *,
    link_rules: dict[str, LinkRule] | None = None,
    decision_rules: DecisionRules | None = None,
    overrides: Overrides | None = None,
    recorded: dict[str, dict[str, dict]] | None = None,
) -> Decided:
    """Decide areas and links of the slice in place (its rows' area columns, its junction
    frames), apply the overrides, and return every decision with its evidence. recorded: the
    area columns the target already holds (entity -> id -> columns, `read_recorded_areas`): an
    unchanged decision keeps them (`keep_recorded`)."""
    link_rules = link_rules if link_rules is not None else load_link_rules()
    dr = decision_rules or load_decision_rules()
    overrides = overrides or Overrides(part.tenant.slug)
    out = Decided(part.tenant.slug, review_below=dr.review_below)
    rows = _Rows(part, rules)
    model, views = _train(rows, rules, vectors, part, overrides) if vectors else (None, {})
    for entity in rows.entities:
        pieces: list[pl.DataFrame] = []  # the decided area columns, a chunk each
        done = 0
        for chunk in rows.chunks(entity):
            if model and chunk:
                scores = model.scores(views[entity][0][:, done : done + len(chunk)], views[entity][1])
            else:
                scores = [None] * len(chunk)
            done += len(chunk)
            for r, s in zip(chunk, scores):
                view = ModelView(s, model.labels) if s is not None else None
                r["_model_area"], _, r["_model_margin"] = view.top() if view else (None, 0.0, 0.0)
                _decide_row(entity, r, part, rows.by_id, rules, overrides, view)
            out.kept_recorded += keep_recorded(chunk, (recorded or {}).get(entity, {}), dr.keep_recorded_within)
            pieces.append(_area_frame(entity, chunk))
            out.decisions += _area_decisions(entity, chunk, overrides)
        _write_areas(part, entity, pieces)
    out.decisions += _tenant_decisions(part, overrides, dr, len(rules.tenants.tenants))
    out.decisions += _reference_decisions(part, overrides, dr)
    _decide_links(part, rows.held, rules, link_rules, vectors, overrides, out, dr)
    out.stale_overrides = overrides.unused(part)
    out.decisions.sort(key=lambda d: (d.confidence, d.kind, d.entity, d.key, d.target_key))
    return out


class _Rows:
    """The columns deciding reads (`decide_columns`) of the slice's entities, as dicts with their
    boilerplate lines removed. The rows other steps read (parents whose areas children inherit,
    the ends of the links decided here) are held whole, and changed in place as they are decided;
    the others are made a chunk at a time each time they are read, so that a large table (prompts)
    is never all dicts at once (~2 kB a row)."""

    def __init__(self, part: TenantSlice, rules: Rules):
        self.part, self.rules = part, rules
        self.entities = [e for e in AREA_ORDER if e in part.entities]
        read = {p for e in self.entities for _, p in INHERIT.get(e, ())}
        read |= {e for ends in LINK_ENDS.values() if all(x in part.entities for x in ends) for e in ends}
        self.common = {
            e: boilerplate_lines(self._dicts(e), fields)
            for e, fields in BOILERPLATE_FIELDS.items()
            if e in self.entities
        }
        self.held = {e: [r for chunk in self._chunks(e) for r in chunk] for e in self.entities if e in read}
        self.by_id = {e: {r["id"]: r for r in rs} for e, rs in self.held.items()}

    def _dicts(self, entity: str) -> Iterator[list[dict]]:
        for frame in self.part.entities[entity].batches(DECIDE_CHUNK_ROWS):
            yield frame.select(decide_columns(entity, frame.columns, self.rules)).to_dicts()

    def chunks(self, entity: str) -> Iterator[list[dict]]:
        """The entity's rows: those held, as one chunk, else made anew a chunk at a time."""
        if entity in self.held:
            yield self.held[entity]
        else:
            yield from self._chunks(entity)

    def _chunks(self, entity: str) -> Iterator[list[dict]]:
        for chunk in self._dicts(entity):
            if entity in self.common:  # copies: only the area columns go back
                strip_boilerplate(chunk, BOILERPLATE_FIELDS[entity], self.common[entity])
            yield chunk


def _train(rows: _Rows, rules: Rules, vectors: Vectors, part, overrides) -> tuple[AreaClassifier, dict]:
    """The model for this tenant: descriptions from rules/, and rows whose area the sources (or
    a reviewer) state, decided here first without the model. Returns it with the vectors of
    each entity's views (views x rows x dim, and the views' weights)."""
    ar = rules.areas
    desc = [(a, t) for a, ts in sorted(ar.descriptions.items()) for t in ts]
    dvec = vectors([t for _, t in desc]) if desc else np.zeros((0, 384), np.float32)
    views, examples = {}, []
    for entity in rows.entities:
        fns = VIEWS[entity]
        stack = np.zeros((len(fns), part.entities[entity].frame.height, dvec.shape[1]), np.float32)
        done = 0
        for chunk in rows.chunks(entity):
            for v, (_, fn) in enumerate(fns):
                stack[v, done : done + len(chunk)] = vectors([fn(r) or r.get("name") or r["legacy_key"] for r in chunk])
            for i, r in enumerate(chunk):
                first = _decide_row(entity, dict(r), part, rows.by_id, rules, overrides, None, keep=False)
                stated = first["functional_area_source"] in ("explicit", "inherited", "override")
                single = "candidates" not in json.loads(first["functional_area_evidence"])
                if entity in ar.model.train_from and stated and single:
                    examples.append((entity, first["functional_area"], stack[-1, done + i]))
                # parents' first decisions are what children inherit before the model exists
                r["_parent_area"] = first["functional_area"]
            done += len(chunk)
        views[entity] = (stack, [w for w, _ in fns])
    corpus = np.concatenate([v.reshape(-1, v.shape[-1]) for v, _ in views.values() if v.size] + [dvec])
    model = AreaClassifier.train(
        corpus,
        [(a, t, v) for (a, t), v in zip(desc, dvec)],
        examples,
        min_rows=ar.model.min_rows,
        remove_components=ar.model.remove_components,
    )
    return model, views


def _inherited(entity: str, r: dict, part: TenantSlice, by_id: dict) -> list[dict]:
    """Areas of the rows the sources link this row to (parents), nearest kind first."""
    for junction, parent in INHERIT.get(entity, ()):
        frame = part.junctions.get(junction)
        if frame is None or frame.height == 0 or parent not in by_id:
            continue
        j = junction_of(junction)
        mine, theirs = (j.a_col, j.b_col) if j.a == entity else (j.b_col, j.a_col)
        if "mapping_source" in frame.columns:  # only what the sources state
            frame = frame.filter(pl.col("mapping_source").is_null() | (pl.col("mapping_source") == "automated"))
            if "metadata" in frame.columns:
                frame = frame.filter(pl.col("metadata").is_null())
        ids = frame.filter(pl.col(mine) == r["id"])[theirs].to_list()
        found = []
        for pid in sorted(set(ids)):
            p = by_id[parent].get(pid)
            if p is None:
                continue
            area = p.get("functional_area") if p.get("_final") else p.get("_parent_area", p.get("functional_area"))
            found.append({"link": junction, "from": f"{p['legacy_key']} {p.get('name') or ''}".strip(), "area": area})
        if found:
            return found
    return []


def _decide_row(entity, r, part, by_id, rules, overrides, view, keep=True) -> dict:
    current = {k: r.get(k) for k in ("functional_area", "functional_area_source", "functional_area_confidence")}
    current["functional_area_evidence"] = r.get("functional_area_evidence")
    cols = decide_area(
        current,
        rules,
        values=r,
        entity=entity,
        inherited=_inherited(entity, r, part, by_id),
        model=view,
        override=overrides.area(entity, r["legacy_key"]),
    )
    if keep:
        r.update(cols)
        r["_final"] = True
    return cols


_AREA_TYPES = {
    "functional_area": pl.Utf8,
    "functional_area_source": pl.Utf8,
    "functional_area_confidence": pl.Float64,
    "functional_area_evidence": pl.Utf8,
    "functional_area_rule": pl.Utf8,
}


def _area_frame(entity: str, rows: list[dict]) -> pl.DataFrame:
    cols = {c: [r[c] for r in rows] for c in AREA_COLUMNS}
    if entity == "jobs_to_be_done":
        cols["functional_area_rule"] = [summary_text(r) for r in rows]
    return pl.DataFrame(cols, schema={c: _AREA_TYPES[c] for c in cols})


def _write_areas(part: TenantSlice, entity: str, pieces: list[pl.DataFrame]) -> None:
    s = part.entities[entity]
    if s.frame.height:
        s.frame = s.frame.with_columns(pl.concat(pieces).get_columns())


def _area_decisions(entity: str, rows: list[dict], overrides: Overrides) -> list[Decision]:
    out = []
    parsed: dict[str, dict] = {}  # rows with the same evidence (a default) share one dict
    for r in rows:
        text = r["functional_area_evidence"]
        ev = parsed[text] if text in parsed else parsed.setdefault(text, json.loads(text))
        src = r["functional_area_source"]
        plain_explicit = src == "explicit" and not ev.get("candidates") and "contradicted_by_model" not in ev
        if plain_explicit:
            continue
        out.append(
            Decision(
                "area",
                entity,
                r["legacy_key"],
                "",
                r.get("name") or "",
                r["functional_area"],
                src,
                r["functional_area_confidence"],
                ev,
                margin=(ev.get("model") or {}).get("margin"),
                reviewed=overrides.reviewed("area", entity, r["legacy_key"]),
            )
        )
    return out


def numbers_within(new, recorded, tolerance: float) -> bool:
    """Whether two JSON values differ at most in their numbers, each by at most `tolerance`:
    the same keys, list lengths, strings, booleans and nulls."""
    if isinstance(new, bool) or isinstance(recorded, bool):
        return type(new) is type(recorded) and new == recorded
    if isinstance(new, (int, float)) and isinstance(recorded, (int, float)):
        return abs(new - recorded) <= tolerance + 1e-9  # numbers are rounded: 0.816 - 0.796 is 0.02
    if isinstance(new, dict) and isinstance(recorded, dict):
        return new.keys() == recorded.keys() and all(numbers_within(new[k], recorded[k], tolerance) for k in new)
    if isinstance(new, list) and isinstance(recorded, list):
        return len(new) == len(recorded) and all(numbers_within(a, b, tolerance) for a, b in zip(new, recorded))
    return type(new) is type(recorded) and new == recorded


def keep_recorded(rows: list[dict], recorded: dict[str, dict], tolerance: float) -> int:
    """Decided rows (in place) whose area and source are those the target holds for their id,
    and whose confidence and evidence differ from the recorded ones only in numbers, by at most
    `tolerance`, take the recorded confidence and evidence back. The area model is fit on the
    tenant's whole corpus, so one changed text moves every row's scores a little; without this
    a re-run rewrites rows whose decision did not change. An override is never replaced: it is
    what the reviewer says now. Returns how many rows kept theirs."""
    kept = 0
    for r in rows:
        was = recorded.get(r["id"])
        if was is None or r["functional_area_source"] == "override":
            continue
        if any(r[c] != was[c] for c in ("functional_area", "functional_area_source")):
            continue
        old = was["functional_area_evidence"]
        if numbers_within(
            [r["functional_area_confidence"], json.loads(r["functional_area_evidence"])],
            [was["functional_area_confidence"], json.loads(old) if old else None],
            tolerance,
        ):
            r["functional_area_confidence"] = was["functional_area_confidence"]
            r["functional_area_evidence"] = old
            kept += 1
    return kept


def _tenant_decisions(part: TenantSlice, overrides: Overrides, dr: DecisionRules, n_tenants: int) -> list[Decision]:
    """Rows whose tenant no source names: a keyword rule or the default of rules/tenancy.yaml decided."""
    out = []
    for entity, s in part.entities.items():
        if s.frame.height == 0 or "tenant_rule" not in s.frame.columns:
            continue
        cols = [c for c in ("legacy_key", "name", "tenant_rule", "tenants") if c in s.frame.columns]
        given = pl.col("tenant_rule").cast(pl.Utf8)
        decided = given.eq("default") | given.str.starts_with("keywords")
        for r in s.frame.filter(decided).select(cols).iter_rows(named=True):
            rule = r["tenant_rule"] or ""
            if rule == "default":
                source = "default"
                conf = dr.confidence["tenant_default_all" if len(r["tenants"] or []) == n_tenants else "tenant_default"]
            elif rule.startswith("keywords"):
                source, conf = "rule", dr.confidence["tenant_keywords"]
            else:
                continue
            out.append(
                Decision(
                    "tenant",
                    entity,
                    r["legacy_key"],
                    "",
                    r.get("name") or "",
                    ", ".join(r["tenants"] or []),
                    source,
                    conf,
                    {"tenant_rule": rule, "rules": "rules/tenancy.yaml"},
                    reviewed=overrides.reviewed("tenant", entity, r["legacy_key"]),
                )
            )
    return out


def _reference_decisions(part: TenantSlice, overrides: Overrides, dr: DecisionRules) -> list[Decision]:
    """Rows created for references that named no row, and names that matched several rows."""
    out = []
    for entity, s in part.entities.items():
        if s.frame.height == 0 or "metadata" not in s.frame.columns:
            continue
        # only rows whose metadata can hold one of these notes are parsed
        rows = s.frame.filter(pl.col("metadata").cast(pl.Utf8).str.contains("created_from|ambiguous|decided_by_code"))
        names = rows["name"].to_list() if "name" in rows.columns else [None] * rows.height
        for key, name, text in zip(rows["legacy_key"].to_list(), names, rows["metadata"].to_list()):
            m = _meta({"metadata": text})
            etl = m.get("_etl") if isinstance(m.get("_etl"), dict) else {}
            created = etl.get("created_from") or m.get("created_from")
            if created:
                out.append(
                    Decision(
                        "created",
                        entity,
                        key,
                        "",
                        name or "",
                        "created",
                        "rule",
                        dr.confidence["created"],
                        {"created_from": created, "reference": etl.get("reference") or m.get("reference")},
                        reviewed=overrides.reviewed("created", entity, key),
                    )
                )
            for what, conf in (
                ("ambiguous", dr.confidence["match_ambiguous"]),
                ("decided_by_code", dr.confidence["match_by_code"]),
            ):
                for column, refs in (etl.get(what) or {}).items():
                    for ref, found in refs.items():
                        out.append(
                            Decision(
                                "match",
                                entity,
                                key,
                                f"{column}:{ref}",
                                name or "",
                                "" if what == "ambiguous" else str(found.get("linked", "")),
                                "rule",
                                conf,
                                {what: {"column": column, "reference": ref, "candidates": found}},
                                reviewed=overrides.reviewed("match", entity, key, f"{column}:{ref}"),
                            )
                        )
    return out


# ---------------------------------------------------------------------------------------------
# links


@dataclass
class _Link:
    a: str
    b: str
    source: str  # rule, model, override
    mapping: str  # automated, ml_model, expert_review
    score: float
    confidence: float
    evidence: dict
    margin: float | None = None


def _decide_links(part, rows, rules, link_rules, vectors, overrides, out: Decided, dr: DecisionRules) -> None:
    present = {j for j, (a, b) in LINK_ENDS.items() if a in rows and b in rows}
    if not present:
        return
    entities = {e for j in present for e in LINK_ENDS[j]}
    text_vec = {}
    for e in sorted(entities):
        texts = [LINK_TEXTS[e](r) or r["legacy_key"] for r in rows[e]]
        text_vec[e] = vectors(texts) if texts and vectors else np.zeros((len(texts), 1), np.float32)
    made: dict[str, list[_Link]] = {j: [] for j in present}
    if "persona_roles" in present:
        made["persona_roles"] = _persona_roles(
            rows, text_vec, link_rules.get("persona_roles"), out, overrides, rules, dr, vectors is not None
        )
    if "jtbd_personas" in present:
        made["jtbd_personas"] = _jtbd_personas(
            part,
            rows,
            text_vec,
            made.get("persona_roles", []),
            link_rules,
            out,
            overrides,
            rules,
            dr,
            vectors is not None,
        )
    if "agent_jtbds" in present and "agent_jtbds" in link_rules and vectors:
        made["agent_jtbds"] = _similar(
            "agent_jtbds", rows["agents"], text_vec["agents"], rows["jobs_to_be_done"], text_vec["jobs_to_be_done"],
            link_rules["agent_jtbds"], set(), rules, names=(_display_name, _plain_name),
        )  # fmt: skip
    for junction in sorted(present):
        j = junction_of(junction)
        links, rejected = _apply_link_overrides(junction, made[junction], rows[j.a], rows[j.b], overrides)
        _write_links(part, junction, links, rejected)
        names = {e: {r["legacy_key"]: r.get("name") or "" for r in rows[e]} for e in (j.a, j.b)}
        for link in links:
            out.decisions.append(
                Decision(
                    "link",
                    junction,
                    link.a,
                    link.b,
                    f"{names[j.a].get(link.a, '')} -> {names[j.b].get(link.b, '')}",
                    link.mapping,
                    link.source,
                    link.confidence,
                    link.evidence,
                    margin=link.margin,
                    reviewed=overrides.reviewed("link", junction, link.a, link.b),
                )
            )
        counts: dict[str, int] = {}
        frame = part.junctions.get(junction)
        if frame is not None and frame.height:
            ms = frame["mapping_source"].fill_null("automated").to_list() if "mapping_source" in frame.columns else []
            for m in ms or ["automated"] * frame.height:
                counts[m] = counts.get(m, 0) + 1
        out.links[junction] = dict(sorted(counts.items()))
    # without vectors (migrate --no-embed) the similarity links of earlier runs are kept
    out.complete_links = tuple(sorted(present)) if vectors else ()


def _source_areas(r: dict, rules: Rules) -> set[str]:
    """The areas a row works in, for similarity links: the one its own text reads as (the model),
    and its decided area too when that reading is unsure."""
    model, margin = r.get("_model_area"), r.get("_model_margin") or 0.0
    if model and margin >= rules.areas.model.min_margin:
        return {model}
    return {a for a in (model, r.get("functional_area")) if a}


def _similar(
    junction, src_rows, src_vec, dst_rows, dst_vec, rule: LinkRule, exclude, rules, flip=False, names=None
) -> list[_Link]:
    """Similarity links from src to dst rows; flip: the junction's `a` end is dst (jtbd_personas).
    names: (source name, target name) functions when the rule asks for a name overlap."""
    overlap = None
    if names and rule.min_name_overlap > 0:
        overlap = name_overlap([names[0](r) for r in src_rows], [names[1](r) for r in dst_rows])
    cands = rank_links(
        [r["legacy_key"] for r in src_rows],
        src_vec,
        [_source_areas(r, rules) for r in src_rows],
        [r["legacy_key"] for r in dst_rows],
        dst_vec,
        [r.get("functional_area") for r in dst_rows],
        rule,
        exclude,
        overlap,
    )
    out = []
    for c in cands:
        conf = min(0.9, 0.5 + 5 * max(c.margin, 0.0))
        ev = {
            "similarity": round(c.similarity, 3),
            "score": round(c.score, 3),
            "rank": c.rank,
            "margin": round(c.margin, 3),
            "next": c.next_target,
            "area": c.area,
            "rules": f"rules/links.yaml {junction}",
        }
        if overlap is not None:
            ev["name_overlap"] = round(c.name_overlap, 3)
        a, b = (c.target, c.source) if flip else (c.source, c.target)
        out.append(_Link(a, b, "model", "ml_model", max(0.0, min(1.0, c.similarity)), conf, ev, c.margin))
    return out


def _title_index(rows: list[dict], *getters) -> dict[str, set[str]]:
    index: dict[str, set[str]] = {}
    for r in rows:
        for t in title_parts(*(g(r) for g in getters)):
            index.setdefault(t, set()).add(r["legacy_key"])
    return index


def _persona_titles(r: dict):
    m = _meta(r)
    return [r.get("title"), r.get("name"), _items(m.get("typical_titles"))]


def _persona_roles(rows, vec, rule: LinkRule | None, out: Decided, overrides, rules, dr, similarity) -> list[_Link]:
    """Personas to org roles: a title of the persona that is a role's name; else the most
    similar role of the persona's area, with a margin over the next."""
    roles = rows["org_roles"]
    by_title: dict[str, set[str]] = {}
    for r in roles:
        by_title.setdefault(title_key(r.get("name") or ""), set()).add(r["legacy_key"])
    role_area = {r["legacy_key"]: r.get("functional_area") for r in roles}
    links, titled = [], set()
    for p in rows["personas"]:
        found: dict[str, str] = {}
        for t in sorted(title_parts(*_persona_titles(p))):
            for k in sorted(by_title.get(t, ())):
                found.setdefault(k, t)
        if len(found) > 1:  # a shared name: the roles of the persona's own areas
            same = {k: t for k, t in found.items() if role_area[k] in _source_areas(p, rules)}
            if len(same) >= 1:
                found = same
        if len(found) > 1:
            out.decisions.append(
                Decision(
                    "match",
                    "persona_roles",
                    p["legacy_key"],
                    "title",
                    p.get("title") or p.get("name") or "",
                    "",
                    "rule",
                    dr.confidence["match_ambiguous"],
                    {"ambiguous": {"titles": sorted(set(found.values())), "candidates": sorted(found)}},
                    reviewed=overrides.reviewed("match", "persona_roles", p["legacy_key"], "title"),
                )
            )
            continue
        for k, t in found.items():
            same_area = role_area[k] in _source_areas(p, rules)
            links.append(
                _Link(
                    p["legacy_key"],
                    k,
                    "rule",
                    "automated",
                    1.0,
                    dr.confidence["link_title" if same_area else "link_title_other_area"],
                    {"title": t, "role_area": role_area[k], "persona_areas": sorted(_source_areas(p, rules))},
                )
            )
            titled.add(p["legacy_key"])
    if rule and similarity:
        untitled = [i for i, p in enumerate(rows["personas"]) if p["legacy_key"] not in titled]
        sims = _similar(
            "persona_roles",
            [rows["personas"][i] for i in untitled],
            vec["personas"][untitled] if untitled else vec["personas"][:0],
            roles,
            vec["org_roles"],
            rule,
            set(),
            rules,
            names=(_plain_name, _plain_name),
        )
        links += sims
    return links


def _jtbd_personas(
    part, rows, vec, persona_roles: list[_Link], link_rules, out: Decided, overrides, rules, dr, similarity
) -> list[_Link]:
    """JTBDs to personas: a JTBD's own persona title names the persona (or a role the persona is
    linked to); then similarity, persona by persona."""
    personas, jtbds = rows["personas"], rows["jobs_to_be_done"]
    stated = set()
    frame = part.junctions.get("jtbd_personas")
    if frame is not None and frame.height:
        ids = {r["id"]: r["legacy_key"] for r in jtbds}
        pids = {r["id"]: r["legacy_key"] for r in personas}
        for a, b in frame.select("jtbd_id", "persona_id").iter_rows():
            if a in ids and b in pids:
                stated.add((ids[a], pids[b]))
    by_title = _title_index(personas, lambda r: _persona_titles(r))
    roles = {r["legacy_key"]: r for r in rows.get("org_roles", [])}
    via_role: dict[str, set[str]] = {}
    for link in persona_roles:
        name = title_key(roles.get(link.b, {}).get("name") or "")
        if name:
            via_role.setdefault(name, set()).add(link.a)
    links = []
    for j in jtbds:
        m = _meta(j)
        title = m.get("persona_title") if isinstance(m.get("persona_title"), str) else None
        if not title or not title.strip():
            continue
        t = title_key(title)
        direct = sorted(by_title.get(t, ()))
        how = "persona title"
        if not direct:
            direct, how = sorted(via_role.get(t, ())), "role title"
        if len(direct) > 1 and how == "persona title":
            out.decisions.append(
                Decision(
                    "match",
                    "jtbd_personas",
                    j["legacy_key"],
                    "persona_title",
                    j.get("name") or "",
                    "",
                    "rule",
                    dr.confidence["match_ambiguous"],
                    {"ambiguous": {"persona_title": title, "candidates": direct}},
                    reviewed=overrides.reviewed("match", "jtbd_personas", j["legacy_key"], "persona_title"),
                )
            )
            continue
        for p in direct:
            if (j["legacy_key"], p) in stated:
                continue
            links.append(
                _Link(
                    j["legacy_key"],
                    p,
                    "rule",
                    "automated",
                    1.0,
                    dr.confidence["link_title"],
                    {"persona_title": title, "matched": how},
                )
            )
    rule = link_rules.get("jtbd_personas")
    if rule and similarity:
        taken = stated | {(x.a, x.b) for x in links}
        links += _similar(
            "jtbd_personas", personas, vec["personas"], jtbds, vec["jobs_to_be_done"], rule,
            {(b, a) for a, b in taken}, rules, flip=True, names=(_plain_name, _plain_name),
        )  # fmt: skip
    return links


def _apply_link_overrides(junction, links: list[_Link], a_rows, b_rows, overrides: Overrides):
    """Reviewers' link decisions win: accept makes (or keeps) the link as expert_review, reject
    removes it, whoever made it. Returns (links, rejected pairs)."""
    keys_a = {r["legacy_key"] for r in a_rows}
    keys_b = {r["legacy_key"] for r in b_rows}
    by_pair = {(x.a, x.b): x for x in links}
    rejected = set()
    for (a, b), o in sorted(overrides.links(junction).items()):
        if a not in keys_a or b not in keys_b:
            continue  # reported as unused
        was = by_pair.pop((a, b), None)
        if o["decision"] == "reject":
            rejected.add((a, b))
            continue
        by_pair[(a, b)] = _Link(
            a,
            b,
            "override",
            "expert_review",
            1.0,
            1.0,
            {
                "override": o["evidence"],
                "was": None if was is None else {"source": was.source, "score": round(was.score, 3)},
            },
        )
    return sorted(by_pair.values(), key=lambda x: (x.a, x.b)), rejected


def _write_links(part: TenantSlice, junction: str, links: list[_Link], rejected: set[tuple[str, str]]) -> None:
    """The inferred links join the stated ones in the slice's junction frame, which the loader
    writes (a pair decided here replaces the stated row; a rejected pair is dropped)."""
    j = junction_of(junction)
    ids = {}
    for e in (j.a, j.b):
        rows = part.entities[e].frame
        ids[e] = dict(zip(rows["legacy_key"].to_list(), rows["id"].to_list())) if rows.height else {}
    schema = {
        "tenant_id": pl.Utf8,
        j.a_col: pl.Utf8,
        j.b_col: pl.Utf8,
        "mapping_source": pl.Utf8,
        "relevance_score": pl.Float64,
        "metadata": pl.Utf8,
    }
    rows = [
        (
            str(part.tenant.id),
            ids[j.a][x.a],
            ids[j.b][x.b],
            x.mapping,
            round(float(x.score), 4),
            json.dumps(
                {"source": x.source, "confidence": round(float(x.confidence), 3), "evidence": x.evidence},
                ensure_ascii=False,
                sort_keys=True,
            ),
        )
        for x in links
    ]
    new = pl.DataFrame(rows, schema=schema, orient="row")
    old = part.junctions.get(junction)
    if old is not None and old.height:
        old = old.with_columns(*(pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in old.columns))
        drop = {(ids[j.a].get(a), ids[j.b].get(b)) for a, b in rejected}
        drop |= set(zip(new[j.a_col].to_list(), new[j.b_col].to_list()))
        keep = [(a, b) not in drop for a, b in zip(old[j.a_col].to_list(), old[j.b_col].to_list())]
        old = old.filter(pl.Series(keep, dtype=pl.Boolean))
        new = pl.concat(
            [old, new.select(old.columns) if set(old.columns) == set(new.columns) else new], how="diagonal_relaxed"
        )
    part.junctions[junction] = new
    report = part.link_report.setdefault(junction, {"references": 0, "rows": 0, "unresolved": 0, "examples": []})
    report["rows"] = new.height


# ---------------------------------------------------------------------------------------------
# the task


def _array(value) -> np.ndarray:
    """A vector read from pgvector (a numpy array, or pgvector's Vector) as float32."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def cached_vectors(dry_run: bool) -> Vectors:
    """texts -> vectors: through etl.embedding_cache (a text is encoded once, ever, per model);
    for a dry run, which writes nothing, the model encodes them directly."""
    from core.settings import model_spec
    from tasks.model import encode

    spec = model_spec()

    def vectors(texts: list[str]) -> np.ndarray:
        uniq = sorted(set(texts))
        if dry_run:
            found = dict(zip(uniq, encode(spec, uniq))) if uniq else {}
        else:
            from pgvector.psycopg import register_vector

            from core.connections import connect, target_dsn
            from tasks.embed import ensure_cached

            hashes = [content_sha256(spec.model_id, t) for t in uniq]
            with connect(target_dsn(), autocommit=True) as conn:
                ensure_cached(conn, spec, uniq, hashes, encode)
                register_vector(conn)
                got = dict(
                    conn.execute(
                        "SELECT content_sha256, embedding FROM etl.embedding_cache WHERE model = %s "
                        "AND content_sha256 = ANY(%s)",
                        (spec.model_id, hashes),
                    ).fetchall()
                )
            found = {t: _array(got[h]) for t, h in zip(uniq, hashes)}
        return np.array([found[t] for t in texts], dtype=np.float32) if texts else np.zeros((0, spec.dim), np.float32)

    return vectors


def read_recorded_areas(conn, tenant_id: str, entities: list[str]) -> dict[str, dict[str, dict]]:
    """The area columns the target holds for the tenant's rows: entity -> id -> columns, as
    the slice holds them (confidence rounded as decided, evidence as sorted JSON text). A table
    or column the target lacks gives nothing (a target not bootstrapped yet). Reads only."""
    from psycopg import sql

    have: dict[str, set[str]] = {}
    for table, column in conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
        (list(entities),),
    ):
        have.setdefault(table, set()).add(column)
    out: dict[str, dict[str, dict]] = {}
    for entity in entities:
        if not {"id", "tenant_id", *AREA_COLUMNS} <= have.get(entity, set()):
            continue
        query = sql.SQL(
            "SELECT id::text, functional_area::text, functional_area_source::text, functional_area_confidence, "
            "functional_area_evidence FROM {} WHERE tenant_id = %s"
        ).format(sql.Identifier(entity))
        out[entity] = {
            i: {
                "functional_area": area,
                "functional_area_source": source,
                "functional_area_confidence": None if conf is None else round(float(conf), 3),
                "functional_area_evidence": None
                if ev is None
                else json.dumps(json.loads(ev) if isinstance(ev, str) else ev, ensure_ascii=False, sort_keys=True),
            }
            for i, area, source, conf, ev in conn.execute(query, (tenant_id,))
        }
    return out


def recorded_areas(part: TenantSlice, dry_run: bool) -> dict[str, dict[str, dict]]:
    """`read_recorded_areas` for the slice's tenant from the target. A dry run writes nothing,
    so it never creates the embedded target database, and a target it cannot reach has
    recorded nothing."""
    import psycopg

    from core.connections import TARGET_DB, connect, embedded_uri, target_dsn, uses_embedded

    entities = [e for e in AREA_ORDER if e in part.entities]
    if not entities:
        return {}
    try:
        dsn = embedded_uri(TARGET_DB) if dry_run and uses_embedded() else target_dsn()
        if dsn is None:
            return {}
        with connect(dsn, attempts=1 if dry_run else None, autocommit=True) as conn:
            return read_recorded_areas(conn, str(part.tenant.id), entities)
    except (ConfigError, ConnectionFailed, psycopg.Error):
        if dry_run:
            return {}
        raise


@task(name="decide", task_run_name="decide-{part.tenant.slug}", cache_policy=NO_CACHE)
def decide_tenant(
    part: TenantSlice, rules: Rules, dry_run: bool = False, model: bool = True, plan: bool = False
) -> Decided:
    """Areas and links of one tenant decided from evidence, with reviewers' overrides applied
    (the slice is changed in place); returns every decision with its evidence. plan: the vectors
    a real run would use (the cache first; missing texts encoded in memory, stored nowhere)."""
    if not model:
        vectors = None
    elif plan:
        from tasks.plan import plan_vectors

        vectors = plan_vectors()
    else:
        vectors = cached_vectors(dry_run)
    decided = decide_slice(
        part, rules, vectors, overrides=load_overrides(part.tenant.slug), recorded=recorded_areas(part, dry_run)
    )
    s = decided.summary()
    part.findings.append(
        f"decisions: {s['decisions']} made by vital-etl ({', '.join(f'{k} {n}' for k, n in s['by_kind'].items())}); "
        f"{s['below_threshold_unreviewed']} below confidence {s['review_below']} not yet reviewed "
        f"(vital-etl review export --tenant {part.tenant.slug})"
    )
    part.findings += [f"rules/overrides/: {x}" for x in decided.stale_overrides]
    get_run_logger().info(
        "decide %s: %s; %d area rows kept the confidence and evidence the target holds",
        part.tenant.slug,
        s,
        decided.kept_recorded,
    )
    return decided
