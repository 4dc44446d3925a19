"""Org structure from the Notion exports: functions > departments > roles > responsibilities.

Multi-valued relation cells (comma-joined 'Title (https://www.notion.so/..)' links and
'RESP-001, RESP-002' code lists) become junction rows; a code that names no row (the roles
export refers to RESP-201..630, which do not exist) is reported as unresolved, not dropped."""

from __future__ import annotations

from tasks.normalize.areas import area_of
from tasks.normalize.base import Rec, link
from tasks.normalize.common import split_codes, split_notion_links


def _refs(r: Rec, codes: str | None, names: str | None) -> list[tuple[str, str, str]]:
    """A relation stated as a code list column and/or a Notion link column (titles): each
    reference with its column and how it matches (codes exactly, titles by name)."""
    out = [(x, codes, "code") for x in r.parse(codes, split_codes)] if codes else []
    return out + ([(x, names, "name") for x in r.parse(names, split_notion_links)] if names else [])


def shape_function(r: Rec, rules) -> dict:
    key = r.require("Unique_ID", "Function_ID", "id")
    name = r.require("Function_Name", "Department_Name", "name")  # Notion keeps the name in Department_Name
    description = r.text("Description", "description")
    area = area_of("org_functions", {"name": name, "description": description}, rules)
    return {
        "legacy_key": key,
        "name": name,
        "description": description,
        **area,
        "metadata": {},
        "_codes": [r.peek("Function_ID"), r.peek("Unique_ID")],
        "_aliases": [name],
        "_links": {
            "function_departments": [
                link(key, d, None, c, m) for d, c, m in _refs(r, "Mapped_to_Departments", "🏫 Departments")
            ],
            "function_roles": [link(key, x, None, c, m) for x, c, m in _refs(r, "Mapped_to_Roles", "Roles")],
        },
    }


def shape_department(r: Rec, rules) -> dict:
    key = r.require("Unique_ID", "Department_ID", "id")
    name = r.require("Department_Name", "name")
    description = r.text("Description", "description")
    dept_type = r.get("Department_Type")
    functions = r.parse("🏫 Functions", split_notion_links) if "🏫 Functions" in r.raw else []
    area = area_of(
        "org_departments",
        {"department_type": dept_type, "function_titles": functions, "name": name, "description": description},
        rules,
    )
    return {
        "legacy_key": key,
        "name": name,
        "description": description,
        "department_type": dept_type,
        **area,
        "data_classification": r.enum("Data_Classification", rules.enum("data_classification")),
        "compliance_requirements": r.parse("Compliance_Requirements", split_codes),
        "critical_systems": r.parse("Critical_Systems", split_codes),
        "metadata": {},
        "_codes": [r.peek("Department_ID"), r.peek("Unique_ID")],
        "_aliases": [name],
        "_links": {
            "function_departments": [
                link(f, key, None, c, m) for f, c, m in _refs(r, "Mapped_to_Functions", "🏫 Functions")
            ],
            "department_roles": [link(key, x, None, c, m) for x, c, m in _refs(r, "Mapped_to_Roles", "Roles")],
        },
    }


def shape_role(r: Rec, rules) -> dict:
    key = r.require("Unique_ID", "Role_ID", "id")
    name = r.require("Name", "name")
    description = r.text("Description", "description")
    functions = r.parse("🏫 Functions", split_notion_links) if "🏫 Functions" in r.raw else []
    area = area_of("org_roles", {"function_titles": functions, "name": name, "description": description}, rules)
    return {
        "legacy_key": key,
        "name": name,
        "description": description,
        **area,
        "metadata": {},
        "_codes": [r.peek("Role_ID"), r.peek("Unique_ID")],
        "_aliases": [name],
        "_links": {
            "department_roles": [
                link(d, key, None, c, m) for d, c, m in _refs(r, "Mapped_to_Departments", "🏫 Departments")
            ],
            "function_roles": [link(f, key, None, c, m) for f, c, m in _refs(r, "Mapped_to_Functions", "🏫 Functions")],
            "role_responsibilities": [
                link(key, x, None, c, m) for x, c, m in _refs(r, "Mapped_to_Responsibilities", "Responsibilities")
            ],
        },
    }


def shape_responsibility(r: Rec, rules) -> dict:
    key = r.require("Unique_ID", "Responsibility_ID", "id")
    name = r.require("Name", "name")
    return {
        "legacy_key": key,
        "name": name,
        "description": r.text("Description", "description"),
        "metadata": {},
        "_codes": [r.peek("Responsibility_ID"), r.peek("Unique_ID")],
        "_aliases": [name],
        "_links": {
            "role_responsibilities": [link(x, key, None, c, m) for x, c, m in _refs(r, "Mapped_to_Roles", "Roles")]
        },
    }
