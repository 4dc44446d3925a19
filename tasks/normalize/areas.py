"""Functional-area inference (rules/functional_areas.yaml): whole-word keyword rules over a
row's fields, strongest field first. Every row gets a valid area and the rule that decided."""

from __future__ import annotations

from tasks.normalize.rules import AreaRules


def infer_area(values: dict[str, str | None], fields: tuple[str, ...], rules: AreaRules) -> tuple[str, str]:
    """(area, rule) from the first field in which any keyword matches; the area with most
    matching keywords in that field wins, ties to the area listed first; else the default."""
    for name in fields:
        text = values.get(name)
        if not text:
            continue
        best, best_hits = None, []
        for area, keywords in rules.areas:
            hits = [k.text for k in keywords if k.pattern.search(text)]
            if len(hits) > len(best_hits):
                best, best_hits = area, hits
        if best:
            return best, f"{name}: {', '.join(repr(h) for h in best_hits)}"
    return rules.default, "default"


def area_of(values: dict[str, str | None], entity: str, rules, explicit: str | None = None) -> tuple[str, str]:
    """An explicit legacy value mapped through enum synonyms if it maps, else inference."""
    if explicit:
        mapped = rules.enum("functional_area").map(explicit)
        if mapped:
            return mapped, f"synonym: {explicit!r}"
    return infer_area(values, rules.areas.fields.get(entity, tuple(values)), rules.areas)
