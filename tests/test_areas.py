"""Functional-area inference: whole words only, strongest field first, always a valid area."""

from __future__ import annotations

import pytest

from tasks.normalize.areas import infer_area
from tasks.normalize.rules import AreaRules, Keyword, load_rules

RULES = load_rules()
LABELS = RULES.enum("functional_area").labels


def test_keywords_never_match_inside_a_word():
    rules = AreaRules(
        fields={},
        default="Operations",
        areas=(
            ("IT/Digital", (Keyword.compile("it"),)),
            ("Legal", (Keyword.compile("word"),)),
            ("HR", (Keyword.compile("rough"),)),
        ),
    )
    area, rule = infer_area({"statement": "working with words through the night"}, ("statement",), rules)
    assert (area, rule) == ("Operations", "default")
    assert infer_area({"statement": "fix it"}, ("statement",), rules) == ("IT/Digital", "statement: 'it'")


@pytest.mark.parametrize(
    "statement",
    [
        "When I work with partners through the year, I need words that fit, so I can edit with wit",
        "When writing with it in mind",  # the pronoun "it" is not IT
    ],
)
def test_bundled_rules_do_not_read_it_or_with_as_it_digital(statement):
    area, rule = infer_area({"statement": statement}, ("statement",), RULES.areas)
    assert area != "IT/Digital", rule


def test_strongest_field_decides_and_the_rule_is_recorded():
    # the job's name (its activity) is searched before its statement; the persona it came with is not evidence
    values = {"name": "preparing regulatory submissions", "statement": "When building an app with AI ..."}
    fields = RULES.areas.fields["jobs_to_be_done"]
    assert infer_area(values, fields, RULES.areas) == ("Regulatory", "name: 'regulat*', 'submission*'")


def test_acronyms_match_only_as_written():
    fields = ("statement",)
    assert infer_area({"statement": "migrate the IT systems"}, fields, RULES.areas)[0] == "IT/Digital"
    assert infer_area({"statement": "an FDA 510(k) pathway"}, fields, RULES.areas)[0] == "Regulatory"


def test_nothing_matches_gives_the_default():
    assert infer_area({"statement": "zzz"}, ("statement",), RULES.areas) == (RULES.areas.default, "default")
    assert RULES.areas.default in LABELS


def test_every_rule_area_is_a_schema_label():
    assert {a for a, _ in RULES.areas.areas} <= set(LABELS)


def test_the_keyword_pre_check_never_changes_a_match():
    """Keyword.search skips the regex when the keyword's first word is absent from an ASCII text:
    it must agree with the regex alone on every keyword of rules/, whatever the case."""
    from tasks.normalize.rules import Keyword

    rules = load_rules()
    keywords = [k for _, ks in rules.areas.areas for k in ks] + [
        Keyword.compile(t) for t in ("HEOR", "market access", "pharmacovigilan*", "Real World   Evidence")
    ]
    texts = [t for ts in rules.areas.descriptions.values() for t in ts] + [
        "HEOR lead; heor",
        "MARKET   ACCESS and pricing",
        "Pharmacovigilance-signal review",
        "real world evidence",
        "stra\u017fse: non-ASCII text",
        "",
    ]
    for k in keywords:
        for text in texts:
            lowered = text.lower() if text.isascii() else None
            assert k.search(text, lowered) == bool(k.pattern.search(text)), (k.text, text)
    assert sum(k.search(t, t.lower()) for k in keywords for t in texts if t.isascii()) > 10  # matches exist
