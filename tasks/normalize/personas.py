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
    function = meta.get("function") if isinstance(meta.get("function"), str) else None
    area, area_rule = area_of(
        {"function": function, "department": department, "title": title, "name": name}, "personas", rules
    )
    years = r.parse("years_experience", parse_range)
    responsibilities = r.parse("key_responsibilities", parse_list) or r.parse("responsibilities", parse_list)
    aliases = [name, title, r.get("code"), r.get("unique_id"), meta.get("persona_id")]
    return {
        "legacy_key": key,
        "name": name,
        "slug": r.get("slug"),
        "title": title,
        "description": r.get("description"),
        "department": department,
        "functional_area": area,
        "seniority_level": r.get("seniority_level"),
        "expertise_level": (r.get("expertise_level") or "").lower() or None,
        "years_experience_min": years[0],
        "years_experience_max": years[1],
        "goals": r.parse("goals", parse_list),
        "pain_points": r.parse("pain_points", parse_list),
        "responsibilities": responsibilities,
        "is_active": r.parse("is_active", parse_bool) is not False,
        "validation_status": r.enum("validation_status", rules.enum("validation_status")),
        "metadata": {"functional_area_rule": area_rule},
        "_aliases": [a for a in aliases if isinstance(a, str)],
    }
