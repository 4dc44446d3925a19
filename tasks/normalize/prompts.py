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
    description = r.get("description")
    area, area_rule = area_of(
        {"category": category, "function": r.raw.get("function"), "name": name, "description": description},
        "prompts",
        rules,
        explicit=r.raw.get("function_name") or r.raw.get("function"),
    )
    return {
        "legacy_key": key,
        "code": r.get("prompt_code"),
        "name": name,
        "slug": r.get("slug"),
        "description": description,
        "prompt_starter": r.get("prompt_starter"),
        "body": unescape_newlines(r.get("detailed_prompt", "content", "body")),
        "system_prompt": unescape_newlines(r.get("system_prompt")),
        "user_template": r.get("user_template"),
        "role_type": r.get("role_type"),
        "category": category,
        "functional_area": area,
        "complexity": r.enum("complexity", rules.enum("complexity")),
        "tags": r.parse("tags", parse_list),
        "variables": r.parse("variables", parse_list),
        "version": r.get("version"),
        "is_active": r.parse("is_active", parse_bool) is not False,
        "expert_validated": r.parse("expert_validated", parse_bool),
        "legacy_created_at": r.parse("created_at", parse_timestamp),
        "legacy_updated_at": r.parse("updated_at", parse_timestamp),
        "metadata": {"functional_area_rule": area_rule},
        "_aliases": [name, r.get("prompt_code"), r.get("slug")],
    }
