"""Tools and capabilities: the shared catalogue (both tenants unless a rule says otherwise)."""

from __future__ import annotations

from tasks.normalize.areas import area_of
from tasks.normalize.base import Rec
from tasks.normalize.common import parse_bool, parse_list, parse_uuid_list
from tasks.normalize.rules import Rules


def shape_tool(r: Rec, rules: Rules) -> dict:
    name = r.require("name")
    key = r.get("slug") or r.require("id", "name")
    return {
        "legacy_key": key,
        "name": name,
        "slug": r.get("slug"),
        "description": r.get("description"),
        "tool_type": r.get("tool_type", "type"),
        "integration_name": r.get("integration_name"),
        "endpoint_url": r.get("endpoint_url"),
        "tags": r.parse("tags", parse_list),
        "is_active": r.parse("is_active", parse_bool) is not False,
        "metadata": {},
        "_aliases": [name, r.get("integration_name"), r.get("id")],
    }


def shape_capability(r: Rec, rules: Rules) -> dict:
    name = r.require("capability_name", "name")
    key = r.get("capability_slug", "slug") or r.require("id", "capability_name", "name")
    category = r.get("category")
    description = r.get("description")
    display = r.get("display_name")
    area, area_rule = area_of(
        {"category": category, "name": display or name, "description": description},
        "capabilities",
        rules,
        explicit=category,
    )
    links = [(key, ref, "depends_on") for ref in r.parse("depends_on", parse_uuid_list)]
    links += [(key, ref, "enables") for ref in r.parse("enables", parse_uuid_list)]
    return {
        "legacy_key": key,
        "name": name,
        "slug": r.get("capability_slug", "slug"),
        "display_name": display,
        "description": description,
        "category": category,
        "functional_area": area,
        "complexity": r.enum(
            "complexity_level", rules.enum("complexity"), value=r.get("complexity_level", "complexity")
        ),
        "is_active": r.parse("is_active", parse_bool) is not False,
        "metadata": {"functional_area_rule": area_rule},
        "_aliases": [name, display, r.get("id")],
        "_links": {"capability_dependencies": links},
    }
