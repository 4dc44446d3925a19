"""Tools and capabilities: the shared catalogue (both tenants unless a rule says otherwise)."""

from __future__ import annotations

from tasks.normalize.areas import area_of
from tasks.normalize.base import Rec, link
from tasks.normalize.common import parse_bool, parse_list, parse_uuid_list
from tasks.normalize.rules import Rules


def shape_tool(r: Rec, rules: Rules) -> dict:
    name = r.require("name")
    key = r.get("slug") or r.require("id", "name")
    return {
        "legacy_key": key,
        "name": name,
        "slug": r.get("slug"),
        "description": r.text("description"),
        "tool_type": r.get("tool_type", "type"),
        "integration_name": r.get("integration_name"),
        "endpoint_url": r.get("endpoint_url"),
        "tags": r.parse("tags", parse_list),
        "is_active": r.parse("is_active", parse_bool) is not False,
        "metadata": {},
        "_codes": [r.peek("slug"), r.peek("id"), r.peek("integration_name")],
        "_aliases": [name],
    }


def shape_capability(r: Rec, rules: Rules) -> dict:
    name = r.require("capability_name", "name")
    key = r.get("capability_slug", "slug") or r.require("id", "capability_name", "name")
    category = r.get("category")
    description = r.text("description")
    display = r.get("display_name")
    area = area_of(
        "capabilities", {"category": category, "display_name": display or name, "description": description}, rules
    )
    links = [link(key, ref, kind, kind) for kind in ("depends_on", "enables") for ref in r.parse(kind, parse_uuid_list)]
    return {
        "legacy_key": key,
        "name": name,
        "slug": r.get("capability_slug", "slug"),
        "display_name": display,
        "description": description,
        "category": category,
        **area,
        "complexity": r.enum(("complexity_level", "complexity"), rules.enum("complexity")),
        "is_active": r.parse("is_active", parse_bool) is not False,
        "metadata": {},
        "_codes": [r.peek("capability_slug", "slug"), r.peek("capability_name", "name"), r.peek("id")],
        "_aliases": [name, display],
        "_links": {"capability_dependencies": links},
    }
