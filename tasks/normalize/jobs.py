"""Jobs-to-be-done: the legacy JTBD library, which has no functional area: it is decided from
evidence (rules/functional_areas.yaml; the decide step adds the model over the job statement),
and what decided is kept per row."""

from __future__ import annotations

from tasks.normalize.areas import area_of, summary_text
from tasks.normalize.base import Rec, RowError, link
from tasks.normalize.common import parse_decimal, parse_list
from tasks.normalize.rules import Rules


def shape_jtbd(r: Rec, rules: Rules) -> dict:
    meta = r.nested("metadata")
    key = r.require("code", "id")
    name = r.require("name", "title")
    statement = r.text("description", "statement", "job_statement")
    explicit = r.get("functional_area")
    if explicit and rules.enum("functional_area").map(explicit) is None:
        raise RowError(rules.enum("functional_area").unknown_message(explicit))
    # the job statement is the evidence, not words in the name of the persona it came with
    area = area_of("jobs_to_be_done", {"functional_area": explicit, "name": name, "statement": statement}, rules)
    score = r.parse("validation_score", lambda v: parse_decimal(v, 4, 3))  # numeric(4,3)
    if score is not None and not 0 <= score <= 1:
        raise RowError(f"validation_score: {score} is outside 0..1")
    persona = _s(meta.get("persona_code")) or r.get("persona_code")
    persona_column = "metadata.persona_code" if _s(meta.get("persona_code")) else "persona_code"
    targets = r.parse("target_personas", parse_list)  # the legacy jtbd_core table
    return {
        "legacy_key": key,
        "code": r.get("code"),
        "name": name,
        "statement": statement,
        **area,
        "functional_area_rule": summary_text(area),
        "job_category": r.enum("job_category", rules.enum("job_category")),
        "complexity": r.enum("complexity", rules.enum("complexity")),
        "frequency": r.enum("frequency", rules.enum("frequency")),
        "status": r.enum("status", rules.enum("jtbd_status"), default="active"),
        "validation_score": score,
        "desired_outcomes": r.parse("desired_outcomes", parse_list),
        "success_criteria": r.parse("success_criteria", parse_list),
        "metadata": {"legacy_target_personas": targets} if targets else {},
        "_codes": [r.peek("code"), r.peek("id"), _s(meta.get("unique_id")), _s(meta.get("original_id"))],
        "_aliases": [name],
        "_links": {
            "jtbd_personas": ([link(key, persona, "persona_code", persona_column)] if persona else [])
            + [link(key, t, "target_personas", "target_personas") for t in targets]
        },
    }


def _s(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
