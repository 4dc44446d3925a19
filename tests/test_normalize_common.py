"""The small parsers every normalizer leans on: tiny inputs, exact outputs, exact errors."""

from __future__ import annotations

from datetime import datetime

import pytest

from tasks.normalize import common as c


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{}", []),
        ("{a,b}", ["a", "b"]),
        ("{medication_information,dosing_calculation}", ["medication_information", "dosing_calculation"]),
        ('{"Protocol development","Endpoint selection"}', ["Protocol development", "Endpoint selection"]),
        ('{"say \\"hi\\"",plain, spaced }', ['say "hi"', "plain", "spaced"]),
        ("{a,NULL,b}", ["a", None, "b"]),
        ('{"a,b",c}', ["a,b", "c"]),
    ],
)
def test_parse_pg_array(text, expected):
    assert c.parse_pg_array(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("{a,b", "must start with '{' and end with '}'"),
        ("a,b", "must start with '{' and end with '}'"),
        ('{"a,b}', "unterminated quoted element"),
        ("{a,,b}", "empty element"),
        ('{"a"x,b}', "expected ',' after an element"),
    ],
)
def test_parse_pg_array_rejects_malformed_literals(text, message):
    with pytest.raises(ValueError, match="malformed array literal") as err:
        c.parse_pg_array(text)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, []),
        ("", []),
        ("[]", []),
        ('["a", " b ", ""]', ["a", "b"]),
        ("{x,y}", ["x", "y"]),
        ('["\\u00a0padded\\u00a0"]', ["padded"]),
        ("[1, 2]", ["1", "2"]),
    ],
)
def test_parse_list(text, expected):
    assert c.parse_list(text) == expected


def test_parse_list_rejects_non_arrays():
    with pytest.raises(ValueError, match="not an array"):
        c.parse_list("a, b")
    with pytest.raises(ValueError, match="malformed JSON array"):
        c.parse_list('["a",')


def test_parse_uuid_list():
    assert c.parse_uuid_list('["C6D221F8-1E8D-4DD9-86C5-D640AD6BF30B"]') == ["c6d221f8-1e8d-4dd9-86c5-d640ad6bf30b"]
    with pytest.raises(ValueError, match=r"^invalid UUID 'not-a-uuid' in array$"):
        c.parse_uuid_list("{not-a-uuid}")


@pytest.mark.parametrize(
    "text, expected", [("t", True), ("f", False), ("TRUE", True), ("no", False), ("", None), (None, None)]
)
def test_parse_bool(text, expected):
    assert c.parse_bool(text) is expected


def test_numbers_and_wrong_types():
    assert c.parse_decimal("0.70") == 0.7 and c.parse_int("4000") == 4000 and c.parse_int(" 2 ") == 2
    with pytest.raises(ValueError, match=r"^not a number: 'hot'$"):
        c.parse_decimal("hot")
    with pytest.raises(ValueError, match=r"^not a whole number: '2.5'$"):
        c.parse_int("2.5")
    with pytest.raises(ValueError, match=r"^not a boolean: 'maybe'"):
        c.parse_bool("maybe")


def test_timestamps():
    assert c.parse_timestamp("2025-10-04 08:38:37.317") == datetime(2025, 10, 4, 8, 38, 37, 317000)
    assert c.parse_timestamp("September 21, 2025 4:44 PM") == datetime(2025, 9, 21, 16, 44)
    with pytest.raises(ValueError, match="not a timestamp"):
        c.parse_timestamp("yesterday")


def test_text_cleaning():
    assert c.clean_text("\u00a0 Medical\u00a0Affairs \ufeff") == "Medical Affairs"
    assert c.clean_text("   ") is None
    assert c.unescape_newlines("YOU ARE: x.\\n\\nYOU DO: y") == "YOU ARE: x.\n\nYOU DO: y"


def test_notion_links_keep_commas_inside_titles():
    cell = (
        "Set R&D Strategy (https://www.notion.so/Set-R-D-1?pvs=21), Research, Development & Ops "
        "(https://www.notion.so/R-2?pvs=21),Third (https://www.notion.so/3)"
    )
    assert c.split_notion_links(cell) == ["Set R&D Strategy", "Research, Development & Ops", "Third"]
    assert c.split_notion_links("") == []
    with pytest.raises(ValueError, match="malformed Notion link list"):
        c.split_notion_links("A (https://www.notion.so/1), trailing junk")


@pytest.mark.parametrize(
    "text, expected", [("10-15", (10, 15)), ("15+", (15, None)), ("7", (7, 7)), ("", (None, None))]
)
def test_parse_range(text, expected):
    assert c.parse_range(text) == expected


def test_codes_and_refs():
    assert c.split_codes("RESP-001, RESP-002,") == ["RESP-001", "RESP-002"]
    assert c.ref_key("Medication_Information") == c.ref_key("medication-information") == "medication information"
