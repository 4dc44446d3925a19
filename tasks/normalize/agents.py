"""Agents: the legacy `agents` table / agents.json export (every value a string, PostgreSQL
array literals, literal \\n in prompts, free-text business functions and statuses)."""

from __future__ import annotations

from tasks.normalize.areas import area_of
from tasks.normalize.base import Rec, RowError
from tasks.normalize.common import (
    parse_bool,
    parse_decimal,
    parse_int,
    parse_list,
    parse_timestamp,
    parse_uuid_list,
    unescape_newlines,
)
from tasks.normalize.rules import Rules

RELATIONS = {
    "compatible_agents": "compatible",
    "incompatible_agents": "incompatible",
    "prerequisite_agents": "prerequisite",
}


def shape_agent(r: Rec, rules: Rules) -> dict:
    key = r.require("id", "name")
    name = r.require("name")
    display_name = r.get("display_name")
    description = r.get("description")
    department = r.get("department")
    business_function = r.get("business_function")
    if business_function:
        area = rules.enum("functional_area").map(business_function)
        if area is None:
            raise RowError(rules.enum("functional_area").unknown_message(business_function))
        area_rule = f"business_function: {business_function!r}"
    else:
        area, area_rule = area_of(
            {"department": department, "name": name, "display_name": display_name, "description": description},
            "agents",
            rules,
        )
    capabilities = r.parse("capabilities", parse_list)
    domains = r.parse("knowledge_domains", parse_list)
    links = {
        "agent_capabilities": [(key, c, "capabilities") for c in capabilities],
        "agent_knowledge_domains": [(key, d, None) for d in domains],
        "agent_tools": [(key, t, None) for t in r.parse("tools", parse_list)],
        "agent_relations": [
            (key, other, kind) for column, kind in RELATIONS.items() for other in r.parse(column, parse_uuid_list)
        ],
    }
    status_raw = r.get("status")
    return {
        "legacy_key": key,
        "name": name,
        "display_name": display_name,
        "description": description,
        "system_prompt": unescape_newlines(r.get("system_prompt")),
        "model": r.get("model"),
        "temperature": r.parse("temperature", parse_decimal),
        "max_tokens": r.parse("max_tokens", parse_int),
        "tier": r.parse("tier", parse_int),
        "role": r.get("role"),
        "department": department,
        "functional_area": area,
        "status": r.enum("status", rules.enum("agent_status"), default="development", value=status_raw),
        "validation_status": r.enum("validation_status", rules.enum("validation_status")),
        "data_classification": r.enum("data_classification", rules.enum("data_classification")),
        "is_custom": r.parse("is_custom", parse_bool),
        "is_public": r.parse("is_public", parse_bool),
        "avatar_url": r.get("avatar", "avatar_url"),
        "color": r.get("color"),
        "legacy_created_at": r.parse("created_at", parse_timestamp),
        "legacy_updated_at": r.parse("updated_at", parse_timestamp),
        # the arrays stay on the row too: elements that resolve to no row are not lost
        "metadata": {
            "functional_area_rule": area_rule,
            "legacy_status": status_raw,
            "legacy_business_function": business_function,
            "legacy_capabilities": capabilities,
            "legacy_knowledge_domains": domains,
        },
        "_aliases": [name, display_name],
        "_links": links,
    }
