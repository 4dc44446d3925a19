"""The rules and the catalogue registry held to the database: every enum label of rules/ exists
in its pg_enum type, and every table of the schema is declared once in core/catalogue.py."""

from __future__ import annotations

import psycopg
import pytest
import yaml

from core import catalogue
from core.settings import RULES_DIR
from core.tenants import STATUSES, TIERS

RULE_ENUMS = yaml.safe_load((RULES_DIR / "enums.yaml").read_text())


def _pg_enums(conn) -> dict[str, list[str]]:
    rows = conn.execute("""SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
                           FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname""").fetchall()
    return {name: list(labels) for name, labels in rows}


def _pg_type(enums: dict, rule_name: str) -> str:
    """rules/enums.yaml names an enum by its column; the type is `<name>` or `<name>_type`."""
    for candidate in (rule_name, f"{rule_name}_type"):
        if candidate in enums:
            return candidate
    raise AssertionError(f"rules/enums.yaml: {rule_name} has no enum type {rule_name} or {rule_name}_type")


@pytest.fixture(scope="module")
def schema_facts(pg_server):
    """Enums, tables and columns of a freshly bootstrapped database."""
    import uuid

    from conftest import bootstrap

    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = pg_server.dsn(name)
    bootstrap(dsn)
    with psycopg.connect(dsn) as conn:
        enums = _pg_enums(conn)
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        columns = {}
        for table, column, typ in conn.execute(
            """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                   JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = 'public'::regnamespace
                   AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"""
        ):
            columns.setdefault(table, {})[column] = typ
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    return {"enums": enums, "tables": tables, "columns": columns}


@pytest.mark.parametrize("rule_name", sorted(RULE_ENUMS))
def test_every_enum_label_of_the_rules_is_a_label_of_its_database_type(schema_facts, rule_name):
    enums = schema_facts["enums"]
    pg_labels = enums[_pg_type(enums, rule_name)]
    labels = RULE_ENUMS[rule_name]["labels"]
    missing = [label for label in pg_labels if label not in labels]
    unknown = [label for label in labels if label not in pg_labels]
    assert (missing, unknown) == ([], []), f"rules/enums.yaml {rule_name}: missing {missing}, not in the type {unknown}"
    for label in RULE_ENUMS[rule_name].get("synonyms") or {}:
        assert label in pg_labels, f"rules/enums.yaml {rule_name}.synonyms: {label!r} is not a label"


def test_tenant_tiers_and_statuses_are_the_database_enums(schema_facts):
    assert list(TIERS) == schema_facts["enums"]["tenant_tier"]
    assert list(STATUSES) == schema_facts["enums"]["tenant_status"]


def test_every_public_table_is_in_the_registry_and_back(schema_facts):
    declared = {*catalogue.CATALOGUE_TABLES, *(j.name for j in catalogue.JUNCTIONS), "tenants"}
    assert schema_facts["tables"] == declared


def test_registry_facts_match_the_columns(schema_facts):
    cols = schema_facts["columns"]
    for table in catalogue.CATALOGUE_TABLES:
        assert ("embedding" in cols[table]) == (table in catalogue.SEARCHABLE), table
        assert cols[table].get("functional_area", "").endswith("functional_area_type") == (
            table in catalogue.WITH_AREA
        ), table
    for table, column in catalogue.SELF_REFERENCES.items():
        assert cols[table][column] == "uuid"
    for entity, refs in catalogue.REF_COLUMNS.items():
        for _, (target, id_column) in refs.items():
            assert target in catalogue.ENTITY_NAMES and cols[entity][id_column] == "uuid"
    for j in catalogue.JUNCTIONS:
        assert {j.a, j.b} <= set(catalogue.ENTITY_NAMES), j.name
        assert cols[j.name][j.a_col] == cols[j.name][j.b_col] == "uuid", j.name
        if j.kind:
            assert j.kind in cols[j.name], j.name
        if j.similarity:  # inferred links (tasks/decide.py) keep how and how well
            assert {"relevance_score", "mapping_source", "metadata"} <= set(cols[j.name]), j.name


def test_code_keyed_by_table_covers_the_registry_exactly():
    from tasks.embed import TEMPLATES
    from tasks.links import load_link_rules
    from tasks.normalize import SHAPES

    assert set(SHAPES) == set(catalogue.ENTITY_NAMES)
    assert set(TEMPLATES) == set(catalogue.SEARCHABLE)
    assert set(load_link_rules()) <= set(catalogue.SIMILARITY_LINKS)
