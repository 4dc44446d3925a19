"""Prompts: the Supabase dashboard CSV (JSON text in cells, 16 all-empty columns) or the
legacy table; `allowed_tenants` decides the tenants (rules/tenancy.yaml)."""

from __future__ import annotations

from tasks.normalize.areas import area_of
from tasks.normalize.base import Rec
from tasks.normalize.common import parse_bool, parse_list, parse_timestamp, unescape_newlines
from tasks.normalize.rules import Rules


def shape_prompt(r: Rec, rules: Rules) -> dict:
    key = r.require("id", "prompt_code", "slug")
    name = r.require("name", "title")
    category = r.get("category")
    description = r.text("description")
    starter, body = r.text("prompt_starter"), unescape_newlines(r.text("detailed_prompt", "content", "body"))
    area = area_of(
        "prompts",
        {
            "category": category,
            "function": r.peek("function_name", "function"),
            "description": description,
            "prompt_starter": starter,
            "body": body,
        },
        rules,
    )
    return {
        "legacy_key": key,
        "code": r.get("prompt_code"),
        "name": name,
        "slug": r.get("slug"),
        "description": description,
        "prompt_starter": starter,
        "body": body,
        "system_prompt": unescape_newlines(r.text("system_prompt")),
        "user_template": r.text("user_template"),
        "role_type": r.get("role_type"),
        "category": category,
        **area,
        "complexity": r.enum("complexity", rules.enum("complexity")),
        "tags": r.parse("tags", parse_list),
        "variables": r.parse("variables", parse_list),
        "version": r.get("version"),
        "is_active": r.parse("is_active", parse_bool) is not False,
        "expert_validated": r.parse("expert_validated", parse_bool),
        "legacy_created_at": r.parse("created_at", parse_timestamp),
        "legacy_updated_at": r.parse("updated_at", parse_timestamp),
        "metadata": {},
        "_codes": [r.peek("prompt_code"), r.peek("slug")],
        "_aliases": [name],
    }
