"""The sources manifest: every mistake is one clear error before any work starts."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from sources.manifest import ManifestError, check_sources, load_manifest


def write(tmp_path, text: str):
    (tmp_path / "agents.json").write_text("[]")
    (tmp_path / "docs").mkdir(exist_ok=True)
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    return path


def test_a_valid_manifest_resolves_paths_against_its_folder(tmp_path):
    m = load_manifest(
        write(
            tmp_path,
            """
entities:
  agents: [{kind: json, path: agents.json, rename: {agent_name: name}, tenants: [pharma]}]
  knowledge_documents: [{kind: markdown, path: docs}]
""",
        )
    )
    spec = m.entities["agents"][0]
    assert spec.path == tmp_path / "agents.json" and spec.rename == {"agent_name": "name"}
    assert spec.tenants == ("pharma",) and not m.needs_legacy_db


@pytest.mark.parametrize(
    "text, message",
    [
        ("entities: {}", "needs an `entities:` mapping"),
        ("entities: {gadgets: [{kind: json, path: agents.json}]}", "unknown entity 'gadgets' (known: org_functions,"),
        ("entities: {agents: [{kind: xml, path: agents.json}]}", "entities.agents[0]: unknown kind 'xml'"),
        ("entities: {agents: [{kind: json, path: missing.json}]}", "entities.agents[0]: file "),
        ("entities: {agents: [{kind: json}]}", "entities.agents[0]: a json source needs `path`"),
        ("entities: {agents: [{kind: postgres}]}", "needs exactly one of `table` or `query`"),
        ("entities: {agents: [{kind: json, path: agents.json, colour: red}]}", "unknown key(s) colour"),
        ("entities: {knowledge_documents: [{kind: markdown, path: nowhere}]}", "nowhere does not exist"),
        ("entities: [", "not valid YAML"),
    ],
)
def test_manifest_mistakes_are_named(tmp_path, text, message):
    with pytest.raises(ManifestError) as err:
        load_manifest(write(tmp_path, text))
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "manifest.yaml"))


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "nope.yaml")


def test_unknown_tenant_in_a_source(tmp_path):
    m = load_manifest(write(tmp_path, "entities: {agents: [{kind: json, path: agents.json, tenants: [acme]}]}"))
    with pytest.raises(ManifestError, match=r"names unknown tenant 'acme' \(known: digital-health, pharma\)"):
        check_sources(m, {"digital-health", "pharma"})


def test_bad_query_is_named_before_any_row_is_read(tmp_path, fresh_dsn, monkeypatch):
    monkeypatch.setenv("VITAL_SOURCE_DSN", fresh_dsn)
    m = load_manifest(write(tmp_path, "entities: {agents: [{kind: postgres, query: 'SELEKT * FROM agents'}]}"))
    with pytest.raises(ManifestError) as err:
        check_sources(m, set())
    assert "entities.agents source postgres:query fails on postgresql://postgres:***@/" in str(err.value)
    assert 'syntax error at or near "SELEKT"' in str(err.value)
    m = load_manifest(write(tmp_path, "entities: {agents: [{kind: postgres, table: public.agents}]}"))
    with pytest.raises(ManifestError, match='relation "public.agents" does not exist'):
        check_sources(m, set())


def test_unreachable_database_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VITAL_SOURCE_DSN", "postgresql://etl:hunter2@127.0.0.1:1/legacy")
    m = load_manifest(write(tmp_path, "entities: {agents: [{kind: postgres, table: agents}]}"))
    with pytest.raises(ConfigError) as err:
        check_sources(m, set())
    assert str(err.value).startswith("cannot connect to postgresql://etl:***@127.0.0.1:1/legacy")
    assert "hunter2" not in str(err.value)
