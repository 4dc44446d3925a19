"""Agents: the legacy `agents` table / agents.json export (every value a string, PostgreSQL
array literals, literal \\n in prompts, free-text business functions and statuses)."""

from __future__ import annotations

from tasks.normalize.areas import area_of
from tasks.normalize.base import Rec, RowError, link
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
    description = r.text("description")
    department = r.get("department")
    if department is None and r.label and isinstance(r.label.get("department"), str) and r.label["department"].strip():
        # the tenant-label file is the only source of a department for many agents
        department = r.label["department"].strip()
        r.decisions["department"] = "label file"
    business_function = r.get("business_function")
    if business_function and rules.enum("functional_area").map(business_function) is None:
        raise RowError(rules.enum("functional_area").unknown_message(business_function))
    area = area_of(
        "agents",
        {
            "business_function": business_function,
            "name": name,
            "display_name": display_name,
            "description": description,
        },
        rules,
    )
    capabilities = r.parse("capabilities", parse_list)
    domains = r.parse("knowledge_domains", parse_list)
    links = {
        "agent_capabilities": [link(key, c, "capabilities", "capabilities") for c in capabilities],
        "agent_knowledge_domains": [link(key, d, None, "knowledge_domains") for d in domains],
        "agent_tools": [link(key, t, None, "tools") for t in r.parse("tools", parse_list)],
        "agent_relations": [
            link(key, other, kind, column)
            for column, kind in RELATIONS.items()
            for other in r.parse(column, parse_uuid_list)
        ],
    }
    status_raw = r.get("status")
    return {
        "legacy_key": key,
        "name": name,
        "display_name": display_name,
        "description": description,
        "system_prompt": unescape_newlines(r.text("system_prompt")),
        "model": r.get("model"),
        "temperature": r.parse("temperature", lambda v: parse_decimal(v, 4, 2)),  # numeric(4,2)
        "max_tokens": r.parse("max_tokens", parse_int),
        "tier": r.parse("tier", lambda v: parse_int(v, bits=16)),  # smallint
        "role": r.get("role"),
        "department": department,
        **area,
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
            "legacy_business_function": business_function,
            "legacy_capabilities": capabilities,
            "legacy_knowledge_domains": domains,
        },
        "_codes": [r.peek("id"), name],
        "_aliases": [name, display_name],
        "_links": links,
    }
