"""Personas in both legacy shapes: the medical-affairs seed (content inside `metadata`) and
the digital-health `dh_persona` (upper-case codes, free-text year ranges, JSON arrays)."""

from __future__ import annotations

from tasks.normalize.areas import area_of
from tasks.normalize.base import Rec
from tasks.normalize.common import parse_bool, parse_list, parse_range
from tasks.normalize.rules import Rules


def shape_persona(r: Rec, rules: Rules) -> dict:
    meta = r.nested("metadata")
    key = r.require("slug", "code", "unique_id")
    name = r.require("name")
    title = r.get("title")
    department = r.get("department", "tagline")
    description = r.text("description")
    function = meta.get("function") if isinstance(meta.get("function"), str) else None
    area = area_of(
        "personas", {"function": function, "department": department, "title": title, "description": description}, rules
    )
    years = r.parse("years_experience", parse_range)
    responsibilities = r.parse("key_responsibilities", parse_list)
    if not responsibilities:
        responsibilities = r.parse("responsibilities", parse_list)
    expertise = r.get("expertise_level")
    if expertise:
        r.keep("expertise_level")  # the column holds it lower-cased; the raw spelling stays beside it
    return {
        "legacy_key": key,
        "name": name,
        "slug": r.get("slug"),
        "title": title,
        "description": description,
        "department": department,
        **area,
        "seniority_level": r.get("seniority_level"),
        "expertise_level": expertise.lower() if expertise else None,
        "years_experience_min": years[0],
        "years_experience_max": years[1],
        "goals": r.parse("goals", parse_list),
        "pain_points": r.parse("pain_points", parse_list),
        "responsibilities": responsibilities,
        "is_active": r.parse("is_active", parse_bool) is not False,
        "validation_status": r.enum("validation_status", rules.enum("validation_status")),
        "metadata": {},
        "_codes": [r.peek("slug"), r.peek("code"), r.peek("unique_id"), _s(meta.get("persona_id"))],
        "_aliases": [name, title],
    }


def _s(value) -> str | None:
    return value if isinstance(value, str) else None
