"""Org structure from the Notion exports: functions > departments > roles > responsibilities.

Multi-valued relation cells (comma-joined 'Title (https://www.notion.so/..)' links and
'RESP-001, RESP-002' code lists) become junction rows; a code that names no row (the roles
export refers to RESP-201..630, which do not exist) is reported as unresolved, not dropped."""

from __future__ import annotations

from tasks.normalize.areas import area_of
from tasks.normalize.base import Rec
from tasks.normalize.common import split_codes, split_notion_links


def _refs(r: Rec, codes: str, links: str) -> list[str]:
    return r.parse(codes, split_codes) + r.parse(links, split_notion_links)


def shape_function(r: Rec, rules) -> dict:
    key = r.require("Unique_ID", "Function_ID", "id")
    name = r.require("Function_Name", "Department_Name", "name")  # Notion keeps the name in Department_Name
    description = r.get("Description", "description")
    area, rule = area_of({"name": name, "description": description}, "org_functions", rules, explicit=name)
    return {
        "legacy_key": key,
        "name": name,
        "description": description,
        "functional_area": area,
        "metadata": {"functional_area_rule": rule},
        "_aliases": [name],
        "_links": {
            "function_departments": [(key, d, None) for d in _refs(r, "Mapped_to_Departments", "🏫 Departments")],
            "function_roles": [(key, role, None) for role in r.parse("Roles", split_notion_links)],
        },
    }


def shape_department(r: Rec, rules) -> dict:
    key = r.require("Unique_ID", "Department_ID", "id")
    name = r.require("Department_Name", "name")
    description = r.get("Description", "description")
    dept_type = r.get("Department_Type")
    area, rule = area_of(
        {"function_area_label": dept_type, "name": name, "description": description},
        "org_departments",
        rules,
        explicit=dept_type,
    )
    return {
        "legacy_key": key,
        "name": name,
        "description": description,
        "department_type": dept_type,
        "functional_area": area,
        "data_classification": r.enum("Data_Classification", rules.enum("data_classification")),
        "compliance_requirements": r.parse("Compliance_Requirements", split_codes),
        "critical_systems": r.parse("Critical_Systems", split_codes),
        "metadata": {"functional_area_rule": rule},
        "_aliases": [name, r.get("Department_ID"), r.get("Unique_ID")],
        "_links": {
            "function_departments": [(f, key, None) for f in _refs(r, "Mapped_to_Functions", "🏫 Functions")],
            "department_roles": [(key, role, None) for role in _refs(r, "Mapped_to_Roles", "Roles")],
        },
    }


def shape_role(r: Rec, rules) -> dict:
    key = r.require("Unique_ID", "Role_ID", "id")
    name = r.require("Name", "name")
    description = r.get("Description", "description")
    area, rule = area_of({"name": name, "description": description}, "org_roles", rules)
    return {
        "legacy_key": key,
        "name": name,
        "description": description,
        "functional_area": area,
        "metadata": {"functional_area_rule": rule},
        "_aliases": [name],
        "_links": {
            "department_roles": [(d, key, None) for d in _refs(r, "Mapped_to_Departments", "🏫 Departments")],
            "function_roles": [(f, key, None) for f in _refs(r, "Mapped_to_Functions", "🏫 Functions")],
            "role_responsibilities": [
                (key, x, None) for x in _refs(r, "Mapped_to_Responsibilities", "Responsibilities")
            ],
        },
    }


def shape_responsibility(r: Rec, rules) -> dict:
    key = r.require("Unique_ID", "Responsibility_ID", "id")
    name = r.require("Name", "name")
    return {
        "legacy_key": key,
        "name": name,
        "description": r.get("Description", "description"),
        "metadata": {},
        "_aliases": [name],
        "_links": {"role_responsibilities": [(role, key, None) for role in r.parse("Roles", split_notion_links)]},
    }
