"""Jobs-to-be-done: the legacy JTBD library, which has no functional area: it is inferred by
the whole-word rules of rules/functional_areas.yaml and the deciding rule kept per row."""

from __future__ import annotations

from tasks.normalize.areas import infer_area
from tasks.normalize.base import Rec, RowError
from tasks.normalize.common import parse_decimal, parse_list
from tasks.normalize.rules import Rules


def shape_jtbd(r: Rec, rules: Rules) -> dict:
    meta = r.nested("metadata")
    key = r.require("code", "id")
    name = r.require("name", "title")
    statement = r.get("description", "statement", "job_statement")
    explicit = r.get("functional_area")
    values = {
        "persona_title": _s(meta.get("persona_title")),
        "persona_code": _s(meta.get("persona_code")),
        "name": name,
        "statement": statement,
        "sector": _s(meta.get("sector")),
    }
    if explicit:
        area = rules.enum("functional_area").map(explicit)
        if area is None:
            raise RowError(rules.enum("functional_area").unknown_message(explicit))
        rule = f"functional_area: {explicit!r}"
    else:
        area, rule = infer_area(values, rules.areas.fields["jobs_to_be_done"], rules.areas)
    score = r.parse("validation_score", parse_decimal)
    if score is not None and not 0 <= score <= 1:
        raise RowError(f"validation_score: {score} is outside 0..1")
    persona = _s(meta.get("persona_code")) or r.get("persona_code")
    targets = r.parse("target_personas", parse_list)  # the legacy jtbd_core table
    return {
        "legacy_key": key,
        "code": r.get("code"),
        "name": name,
        "statement": statement,
        "functional_area": area,
        "functional_area_rule": rule,
        "job_category": r.enum("job_category", rules.enum("job_category")),
        "complexity": r.enum("complexity", rules.enum("complexity")),
        "frequency": r.enum("frequency", rules.enum("frequency")),
        "status": r.enum("status", rules.enum("jtbd_status"), default="active"),
        "validation_score": score,
        "desired_outcomes": r.parse("desired_outcomes", parse_list),
        "success_criteria": r.parse("success_criteria", parse_list),
        "metadata": {"legacy_target_personas": targets} if targets else {},
        "_aliases": [name],
        "_links": {
            "jtbd_personas": ([(key, persona, "persona_code")] if persona else [])
            + [(key, t, "target_personas") for t in targets]
        },
    }


def _s(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
