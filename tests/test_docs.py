"""The README is held to the code: every flow parameter, setting and rule key appears in it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import yaml

from core.settings import RULES_DIR, SCHEMA_DIR
from flows.bootstrap import bootstrap_schema

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_shows_the_two_commands():
    assert "make demo" in README and "make test" in README


def test_every_bootstrap_parameter_is_documented():
    for name in inspect.signature(bootstrap_schema.fn).parameters:
        assert f"`{name}`" in README, name


def test_the_configuration_table_is_the_settings_object():
    from core.settings import Settings, env_name

    table = set(re.findall(r"^\| `(VITAL_\w+)`", README, re.M))
    table |= set(re.findall(r"^\| `VITAL_\w+`, `(VITAL_\w+)`", README, re.M))
    fields = {env_name(f) for f in Settings.model_fields}
    assert fields == table


def test_no_module_reads_a_vital_variable_but_the_settings():
    readers = []
    for folder in ("core", "sources", "tasks", "flows", "local"):
        for path in (ROOT / folder).rglob("*.py"):
            if re.search(r"""environ(?:\.get)?\(?\[?["']VITAL_""", path.read_text()) and path.name != "settings.py":
                readers.append(str(path.relative_to(ROOT)))
    assert readers == []


def test_every_schema_file_is_documented():
    for path in SCHEMA_DIR.glob("*.sql"):
        assert f"`{path.name}`" in README, path.name


def test_every_tenants_rule_key_is_documented():
    data = yaml.safe_load((RULES_DIR / "tenants.yaml").read_text())
    keys = {f"tenants[].{k}" for t in data["tenants"] for k in t} | {f"platform.{k}" for k in data["platform"]}
    for key in keys:
        assert f"`{key}`" in README, key


def test_every_make_target_in_the_readme_exists():
    targets = set(re.findall(r"^([a-z][\w-]*)(?:\s+[a-z][\w-]*)*:", (ROOT / "Makefile").read_text(), re.M))
    targets |= {
        t for line in re.findall(r"^([a-z][\w -]*):", (ROOT / "Makefile").read_text(), re.M) for t in line.split()
    }
    for target in re.findall(r"`make ([a-z][\w-]*)", README):
        assert target in targets, target


def test_every_migrate_parameter_is_documented():
    from flows.migrate import migrate_tenant

    for name in inspect.signature(migrate_tenant.fn).parameters:
        assert f"`{name}`" in README, name


def test_every_rule_file_key_is_documented():
    files = {
        "functional_areas.yaml": ["explicit", "fields", "areas", "descriptions", "model", "confidence", "default"],
        "decisions.yaml": ["review_below", "keep_recorded_within", "confidence"],
        "embedding.yaml": ["gate"],
        "prune.yaml": ["max_delete_ratio"],
    }
    for name, keys in files.items():
        data = yaml.safe_load((RULES_DIR / name).read_text())
        assert set(data) == set(keys)
        for key in keys:
            assert f"`{key}`" in README
    for _entity, spec in yaml.safe_load((RULES_DIR / "tenancy.yaml").read_text())["entities"].items():
        for key in spec:
            assert f"`entities.<entity>.{key}`" in README, key
    for _enum, spec in yaml.safe_load((RULES_DIR / "enums.yaml").read_text()).items():
        for key in spec:
            assert f"`<enum>.{key}`" in README, key


def test_every_entity_and_source_kind_is_documented():
    from core.catalogue import ENTITY_NAMES
    from sources.manifest import KINDS, SOURCE_KEYS

    for name in list(ENTITY_NAMES) + sorted(KINDS):
        assert f"`{name}`" in README, name
    for key in SOURCE_KEYS - {"kind", "path", "table", "query"}:
        assert f"`{key}:" in README or f"`{key}`" in README, key


def test_every_flow_parameter_is_documented():
    from flows.backfill import backfill_embeddings
    from flows.undo import undo_tenant
    from flows.verify import verify_tenant

    for fl in (backfill_embeddings, undo_tenant, verify_tenant):
        for name in inspect.signature(fl.fn).parameters:
            assert f"`{name}`" in README, (fl.name, name)
        assert f"`{fl.name}`" in README


def test_link_rules_are_documented():
    data = yaml.safe_load((RULES_DIR / "links.yaml").read_text())
    for junction, spec in data.items():
        assert f"`{junction}`" in README
        for key in spec:
            assert f"`{key}`" in README, key


def test_every_searchable_entity_has_a_documented_template():
    from tasks.embed import TEMPLATES

    for entity in TEMPLATES:
        assert f"| {entity} |" in README, entity


def test_migrate_all_parameters_and_deployments_are_documented():
    from flows.migrate import migrate_all

    for name in inspect.signature(migrate_all.fn).parameters:
        assert f"`{name}`" in README, name
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    names = {f"{d['entrypoint'].split(':')[1].replace('_', '-')}/{d['name']}" for d in deployments}
    assert len(names) == 7
    for name in names:
        assert f"`{name}`" in README, name


def test_reference_rules_are_documented():
    data = yaml.safe_load((RULES_DIR / "references.yaml").read_text())
    for junction, spec in data.items():
        assert f"`{junction}`" in README or junction in README
        for key in spec:
            assert f"`<junction>.{key}`" in README, key


def test_decision_rule_keys_are_documented():
    areas = yaml.safe_load((RULES_DIR / "functional_areas.yaml").read_text())
    for key in [*areas["model"], *areas["confidence"]]:
        assert f"`{key}`" in README, key
    for key in yaml.safe_load((RULES_DIR / "decisions.yaml").read_text())["confidence"]:
        assert f"`{key}`" in README, key
    for command in ("vital-etl review export", "vital-etl review import", "rules/overrides/"):
        assert command in README, command
