"""Functional areas from evidence, strongest first (rules/functional_areas.yaml). Pure.

Normalize sees one row: `area_of` gives its explicit area (legacy values through synonyms), or a
keyword rule, or the default, with source, confidence and evidence. The decide step
(tasks/decide.py) sees the whole tenant and calls `decide_area` per row with what needs it:
inheritance through stated links, the model (AreaClassifier over the embedding model's
vectors) and reviewers' overrides. No decision depends on the order of a list: ties between
areas are never broken by position.

A decision is four columns: functional_area, functional_area_source (override, explicit,
inherited, model, rule, default), functional_area_confidence (0..1) and
functional_area_evidence (JSON: what decided, and what else was seen)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from tasks.normalize.rules import AreaRules, Rules, enum_key

SOURCES = ("override", "explicit", "inherited", "model", "rule", "default")
COLUMNS = ("functional_area", "functional_area_source", "functional_area_confidence", "functional_area_evidence")
_HEAD = re.compile(r"\s+(?:-|–|:|/|\|)\s+|\s*\(")


def columns(value: str, source: str, confidence: float, evidence: dict) -> dict:
    return {
        "functional_area": value,
        "functional_area_source": source,
        "functional_area_confidence": round(float(confidence), 3),
        "functional_area_evidence": json.dumps(evidence, ensure_ascii=False, sort_keys=True),
    }


def map_value(raw: str, entity: str, rules: Rules) -> tuple[str | None, str]:
    """An area for one legacy value: the entity's own `values` map, then the functional_area
    synonyms of rules/enums.yaml, then the same for the value's head ("Medical Affairs -
    Leadership" -> "Medical Affairs"). Returns (area or None, how)."""
    _, own = rules.areas.explicit.get(entity, ((), {}))
    enum = rules.enum("functional_area")
    head = _HEAD.split(raw, maxsplit=1)[0].strip()
    for candidate, how in ((raw, "value"), (head, "head")):
        if not candidate:
            continue
        key = enum_key(candidate)
        if key in own:
            return own[key], f"rules/functional_areas.yaml explicit.{entity}.values ({how})"
        mapped = enum.map(candidate)
        if mapped:
            return mapped, f"rules/enums.yaml functional_area synonyms ({how})"
    return None, ""


def explicit_areas(entity: str, values: dict, rules: Rules) -> list[dict]:
    """Every area the row's explicit columns name: [{column, value, area, via}]."""
    cols, _ = rules.areas.explicit.get(entity, ((), {}))
    found = []
    for col in cols:
        raw = values.get(col)
        for item in raw if isinstance(raw, (list, tuple)) else [raw]:
            if not isinstance(item, str) or not item.strip():
                continue
            area, via = map_value(item.strip(), entity, rules)
            if area:
                found.append({"column": col, "value": item.strip(), "area": area, "via": via})
    return found


def keyword_hits(text: str, rules: AreaRules, allowed=None) -> dict[str, list[str]]:
    """area -> the keywords that match `text` as whole words (only areas in `allowed`)."""
    out = {}
    lowered = text.lower() if text.isascii() else None
    for area, keywords in rules.areas:
        if allowed is not None and area not in allowed:
            continue
        hits = [k.text for k in keywords if k.search(text, lowered)]
        if hits:
            out[area] = hits
    return out


def rule_area(values: dict, fields: tuple[str, ...], rules: AreaRules, allowed=None) -> tuple[str | None, dict]:
    """The first field (strongest first) in which keywords match decides: the area with most
    distinct keyword hits there. A tie decides nothing (evidence says so)."""
    for name in fields:
        text = values.get(name)
        if not isinstance(text, str) or not text:
            continue
        hits = keyword_hits(text, rules, allowed)
        if not hits:
            continue
        best = max(len(v) for v in hits.values())
        top = sorted(a for a, v in hits.items() if len(v) == best)
        if len(top) == 1:
            return top[0], {"column": name, "keywords": hits[top[0]], "area": top[0]}
        return None, {"column": name, "tie": {a: hits[a] for a in top}}
    return None, {}


def infer_area(values: dict, fields: tuple[str, ...], rules: AreaRules) -> tuple[str, str]:
    """(area, rule) by keyword rules alone, else the default (kept for callers that want the rule text)."""
    area, ev = rule_area(values, fields, rules)
    if area:
        return area, f"{ev['column']}: {', '.join(repr(k) for k in ev['keywords'])}"
    return rules.default, "default"


def area_of(entity: str, values: dict, rules: Rules) -> dict:
    """A row's area from what the row itself says: explicit columns through synonyms, else
    keyword rules over `fields`, else the default (the decide step may replace a rule or default
    with stronger evidence: inheritance, the model). Returns the four decision columns."""
    conf = rules.areas.confidence
    found = explicit_areas(entity, values, rules)
    areas = sorted({f["area"] for f in found})
    fields = rules.areas.fields.get(entity, ())
    if len(areas) == 1:
        return columns(areas[0], "explicit", conf["explicit"], {"explicit": found})
    if len(areas) > 1:
        # several explicit areas: keyword rules choose among them here; the decide step asks the model
        area, ev = rule_area(values, fields, rules.areas, set(areas))
        return columns(
            area or areas[0],
            "explicit",
            conf["explicit_choice"] if area else conf["default"],
            {"explicit": found, "candidates": areas, **({"rule": ev} if area else {"undecided": True})},
        )
    area, ev = rule_area(values, fields, rules.areas)
    if area:
        return columns(area, "rule", conf["rule"], {"rule": ev})
    return columns(rules.areas.default, "default", conf["default"], {"default": "no explicit value and no keyword"})


# ---------------------------------------------------------------------------------------------
# the model: nearest prototype over the embedding model's vectors


@dataclass
class AreaClassifier:
    """Prototypes (one vector each, with its area and what it stands for) compared by cosine
    after removing the catalogue's mean and its main directions (they carry what every text of
    this domain shares, e.g. "healthcare", not what tells areas apart)."""

    mean: np.ndarray
    components: np.ndarray
    prototypes: np.ndarray
    areas: list[str]
    labels: list[str]

    @classmethod
    def train(
        cls,
        corpus: np.ndarray,
        descriptions: list[tuple[str, str, np.ndarray]],
        examples: list[tuple[str, str, np.ndarray]],
        *,
        min_rows: int = 3,
        remove_components: int = 1,
    ) -> AreaClassifier:
        """corpus: vectors of every text of the tenant (for the mean and main directions);
        descriptions: (area, text, vector); examples: (entity, area, vector) of rows whose area
        is explicit or inherited: one prototype per (entity, area) with at least min_rows rows."""
        mean = corpus.mean(axis=0) if len(corpus) else np.zeros(descriptions[0][2].shape, np.float32)
        centered = corpus - mean
        if remove_components and len(corpus) > remove_components:
            # main directions = top eigenvectors of the d x d scatter matrix: the same subspace as
            # the SVD of the n x d corpus, at a cost that does not grow with n squared
            _, eigenvectors = np.linalg.eigh(centered.T @ centered)
            components = eigenvectors[:, ::-1][:, :remove_components].T.astype(centered.dtype)
        else:
            components = np.zeros((0, mean.shape[0]), dtype=np.float32)
        self = cls(mean, components, np.zeros((0, mean.shape[0])), [], [])
        vecs, areas, labels = [], [], []
        for area, text, v in descriptions:
            vecs.append(v)
            areas.append(area)
            labels.append(f"description: {text}")
        groups: dict[tuple[str, str], list[np.ndarray]] = {}
        for entity, area, v in examples:
            groups.setdefault((entity, area), []).append(v)
        for (entity, area), vs in sorted(groups.items()):
            if len(vs) >= min_rows:
                vecs.append(np.mean(vs, axis=0))
                areas.append(area)
                labels.append(f"{entity} whose area is {area} ({len(vs)} rows)")
        self.prototypes = self.project(np.array(vecs)) if vecs else np.zeros((0, mean.shape[0]))
        self.areas, self.labels = areas, labels
        return self

    def project(self, vectors: np.ndarray) -> np.ndarray:
        v = vectors - self.mean
        if len(self.components):
            v = v - (v @ self.components.T) @ self.components
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(norms == 0, 1, norms)

    def scores(self, vectors: np.ndarray, weights: list[float] | None = None) -> list[dict[str, tuple[float, int]]]:
        """Per row: area -> (best cosine to one of its prototypes, that prototype's index).
        `vectors` may stack several views of each row (n_views x n_rows): their similarities
        are summed with `weights`, then divided by the weights' sum."""
        stack = vectors if vectors.ndim == 3 else vectors[None]
        weights = weights or [1.0] * len(stack)
        sims = sum(w * (self.project(v) @ self.prototypes.T) for w, v in zip(weights, stack)) / sum(weights)
        out = []
        for row in np.atleast_2d(sims):
            best: dict[str, tuple[float, int]] = {}
            for i, area in enumerate(self.areas):
                if area not in best or row[i] > best[area][0]:
                    best[area] = (float(row[i]), i)
            out.append(best)
        return out


@dataclass(frozen=True)
class ModelView:
    """What the model says about one row: area scores (best prototype each) and their labels."""

    scores: dict[str, tuple[float, int]]
    labels: list[str]

    def ranked(self, allowed=None) -> list[tuple[str, float]]:
        items = [(a, s) for a, (s, _) in self.scores.items() if allowed is None or a in allowed]
        return sorted(items, key=lambda x: (-x[1], x[0]))

    def top(self, allowed=None) -> tuple[str | None, float, float]:
        """(best area, its score, margin over the next)."""
        r = self.ranked(allowed)
        if not r:
            return None, 0.0, 0.0
        return r[0][0], r[0][1], r[0][1] - (r[1][1] if len(r) > 1 else 0.0)

    def evidence(self, allowed=None, n: int = 3) -> dict:
        r = self.ranked(allowed)[:n]
        area, _, margin = self.top(allowed)
        return {
            "area": area,
            "margin": round(margin, 3),
            "scores": {a: round(s, 3) for a, s in r},
            "nearest": self.labels[self.scores[area][1]] if area else None,
        }


def model_confidence(margin: float, rules: AreaRules) -> float:
    return min(rules.confidence["model_max"], 0.5 + 4 * max(margin, 0.0))


def decide_area(
    current: dict,
    rules: Rules,
    *,
    values: dict | None = None,
    entity: str = "",
    inherited: list[dict] | None = None,
    model: ModelView | None = None,
    override: dict | None = None,
) -> dict:
    """The final decision for a row, strongest evidence first: override, explicit (the model
    chooses among several explicit areas), inherited (likewise), the model when its best area
    leads by at least model.min_margin, keyword rules among the areas within that margin, the
    model's best guess, the default. `current` holds the row's columns from area_of."""
    ar = rules.areas
    conf = ar.confidence
    before = json.loads(current.get("functional_area_evidence") or "{}")
    seen = {"model": model.evidence()} if model else {}
    if override:
        was = {k: current.get(k) for k in ("functional_area", "functional_area_source", "functional_area_confidence")}
        return columns(override["value"], "override", conf["override"], {"override": override["evidence"], "was": was})

    def checked(area: str, source: str, base: float, low: float, evidence: dict) -> dict:
        """A decision the model may contradict: lower confidence when it clearly reads another area."""
        m_area, _, m_margin = model.top() if model else (None, 0, 0)
        if model and m_area != area and m_margin >= ar.model.min_margin:
            evidence = {**evidence, "contradicted_by_model": seen["model"]}
            return columns(area, source, min(base, low), evidence)
        return columns(area, source, base, {**evidence, **seen})

    if current.get("functional_area_source") == "explicit":
        found = before.get("explicit", [])
        areas = sorted({f["area"] for f in found})
        if len(areas) > 1 and model:
            area, _, margin = model.top(set(areas))
            return columns(
                area,
                "explicit",
                min(conf["explicit_choice"], model_confidence(margin, ar)),
                {"explicit": found, "candidates": areas, "model_choice": model.evidence(set(areas))},
            )
        if len(areas) == 1:
            return checked(areas[0], "explicit", conf["explicit"], conf["explicit_contradicted"], {"explicit": found})
        return columns(current["functional_area"], "explicit", current["functional_area_confidence"], before)
    if inherited:
        areas = sorted({i["area"] for i in inherited})
        if len(areas) == 1:
            return checked(
                areas[0], "inherited", conf["inherited"], conf["inherited_contradicted"], {"inherited": inherited}
            )
        if model:
            area, _, margin = model.top(set(areas))
            return columns(
                area,
                "inherited",
                min(conf["explicit_choice"], model_confidence(margin, ar)),
                {"inherited": inherited, "candidates": areas, "model_choice": model.evidence(set(areas))},
            )
    if model is None:
        if current.get("functional_area_source") is None:  # a row created for a reference: nothing read yet
            return columns(ar.default, "default", conf["default"], {"default": "no explicit value and no model"})
        return columns(
            current["functional_area"], current["functional_area_source"], current["functional_area_confidence"], before
        )
    area, score, margin = model.top()
    if margin >= ar.model.min_margin:
        return columns(area, "model", model_confidence(margin, ar), seen)
    near = {a for a, s in model.ranked() if s >= score - ar.model.min_margin}
    r_area, r_ev = rule_area(values or {}, ar.fields.get(entity, ()), ar, near)
    if r_area:
        c = max(conf["rule"], model_confidence(margin, ar)) if r_area == area else conf["rule"]
        return columns(r_area, "rule", c, {"rule": {**r_ev, "among": sorted(near)}, **seen})
    return columns(
        area, "model", model_confidence(margin, ar), {**seen, "low_margin": True, **({"rule": r_ev} if r_ev else {})}
    )


def summary_text(cols: dict) -> str:
    """One line for people (jobs_to_be_done.functional_area_rule): source and what decided."""
    ev = json.loads(cols["functional_area_evidence"])
    src = cols["functional_area_source"]
    if src == "explicit" and ev.get("explicit"):
        f = ev["explicit"][0]
        return f"explicit: {f['column']} {f['value']!r}"
    if src == "inherited" and ev.get("inherited"):
        return f"inherited: {ev['inherited'][0].get('from')}"
    if src == "rule" and ev.get("rule"):
        return f"rule: {ev['rule']['column']}: {', '.join(repr(k) for k in ev['rule']['keywords'])}"
    if src == "model" and ev.get("model"):
        return f"model: nearest {ev['model']['nearest']!r} (margin {ev['model']['margin']})"
    return src
