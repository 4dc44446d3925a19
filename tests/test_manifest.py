"""The sources manifest: every mistake is one clear error before any work starts."""

from __future__ import annotations

import pytest

from core.errors import ConnectionFailed
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
        ("entities: {agents: [{kind: xml, path: agents.json}]}", "entities.agents[0].kind: unknown kind 'xml'"),
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


AGENTS = "entities: {agents: [{kind: json, path: agents.json}]}"
BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'x'] * 10)}]\n" for i in range(7))


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "entities: {agents: [{kind: [json], path: agents.json}]}",
            "entities.agents[0].kind: unknown kind ['json'] (known: csv, json, jsonl, markdown, parquet, postgres, "
            "supabase_dump)",
        ),
        (
            "entities: {agents: [{kind: json, path: agents.json, tenants: 5}]}",
            "entities.agents[0].tenants: must be a list; write a tenant slug or a list of them, e.g. tenants: [pharma]",
        ),
        (
            "entities: {agents: [{kind: json, path: agents.json, tenants: [[pharma]]}]}",
            "entities.agents[0].tenants[0]: must be text; write a tenant slug or a list of them, e.g. tenants: [pharma]",
        ),
        (
            "entities: {agents: [{kind: csv, path: agents.json, delimiter: ';;'}]}",
            "entities.agents[0].delimiter: must be one character other than a quote or a line break, "
            "e.g. delimiter: ';' (got ';;')",
        ),
        (
            "entities: {agents: [{kind: json, path: agents.json, rename: {agent_name: 5}}]}",
            "entities.agents[0].rename.agent_name: must be text; write a mapping of old column name -> new column "
            "name, e.g. rename: {agent_name: name}",
        ),
        (
            "entities: {agents: [{kind: json, path: agents.json, rename: {a: name, b: name}}]}",
            "entities.agents[0].rename: renames several columns onto 'name'; each new name may be given once",
        ),
        (
            "legacy_db: 'postgresql://etl:hunter2@db/legacy'\n" + AGENTS,
            "legacy_db: must be a mapping like {dsn_env: VITAL_SOURCE_DSN} (the name of the variable that holds "
            "the DSN, never the DSN itself)",
        ),
        (
            "legacy_db: {dsn: 'postgresql://etl:hunter2@db/legacy'}\n" + AGENTS,
            "legacy_db: unknown key(s) dsn (known: dsn_env)",
        ),
        (
            "tenants: 5\n" + AGENTS,
            "tenants: must be text; write the path of a tenants file, e.g. tenants: ../rules/tenants.yaml",
        ),
        ("timezone: [UTC]\n" + AGENTS, "timezone: must be text; write a time zone name, e.g. timezone: UTC"),
        ("entities: {agents: {kind: json, path: agents.json}}", "entities: agents must be a non-empty list of sources"),
        (
            "entities: {agents: [json]}",
            "entities.agents[0]: must be a mapping like {kind: json, path: exports/agents.json}",
        ),
        (AGENTS + "\ntenant_labels: {agents: 5}", "tenant_labels.agents: must be a mapping like {kind: json, "),
        ("- just\n- a list", "the manifest: must be a mapping like {entities: "),
        (AGENTS + "\nentities: {}", "line 2: duplicate key 'entities' (first on line 1); a key may appear once"),
        (
            "entities:\n  agents: [{kind: json, path: agents.json}]\n  agents: [{kind: json, path: agents.json}]",
            "line 3: duplicate key 'agents' (first on line 2); a key may appear once in a mapping: merge the two entries",
        ),
        (BOMB + "entities: {agents: [{kind: json, path: agents.json, tenants: *l6}]}", "its aliases (*name) expand to"),
        (
            BOMB + "entities: {agents: [{kind: json, path: agents.json, rename: {a: *l6}}]}",
            "its aliases (*name) expand",
        ),
    ],
    ids=[
        "kind list",
        "tenants 5",
        "tenants nested",
        "2-char delimiter",
        "rename to a number",
        "rename twice onto one",
        "legacy_db a string",
        "legacy_db dsn",
        "tenants file 5",
        "timezone list",
        "sources not a list",
        "source not a mapping",
        "labels not a mapping",
        "not a mapping",
        "duplicate top key",
        "duplicate entity",
        "alias bomb tenants",
        "alias bomb rename",
    ],
)
def test_malformed_manifests_are_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(ManifestError) as err:
        load_manifest(write(tmp_path, text))
    assert str(err.value).startswith(f"{tmp_path / 'manifest.yaml'}: {message}")
    assert "\n" not in str(err.value) and "hunter2" not in str(err.value)


def test_a_manifest_that_is_not_utf8_or_a_folder_is_one_line(tmp_path):
    (tmp_path / "m.yaml").write_bytes(b"entities: {agents: [{kind: json, path: caf\xe9.json}]}")
    with pytest.raises(ManifestError, match=r"m.yaml: not UTF-8 \(byte 42: b'\\xe9'\); save it as UTF-8$"):
        load_manifest(tmp_path / "m.yaml")
    with pytest.raises(ManifestError, match=r": is a folder; give the manifest file itself$"):
        load_manifest(tmp_path)


def test_rename_onto_an_existing_column_is_one_line(tmp_path):
    from tasks.extract import extract_entity

    (tmp_path / "tools.json").write_text('[{"tool_name": "R", "name": "old", "slug": "r"}]')
    path = tmp_path / "m.yaml"
    path.write_text("entities: {tools: [{kind: json, path: tools.json, rename: {tool_name: name}}]}")
    with pytest.raises(ManifestError) as err:
        extract_entity(load_manifest(path), "tools", 100)
    assert str(err.value) == (
        f"{path}: entities.tools[0].rename: 'tool_name' -> 'name', but the source already has a column 'name'; "
        "rename that one too, or choose another new name"
    )
    path.write_text("entities: {tools: [{kind: json, path: tools.json, rename: {tool_name: name, name: old_name}}]}")
    assert extract_entity(load_manifest(path), "tools", 100).frame.select("name", "old_name").row(0) == ("R", "old")


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
    monkeypatch.setattr("core.connections.CONNECT_ATTEMPTS", 2)  # refused: retried, then transient
    m = load_manifest(write(tmp_path, "entities: {agents: [{kind: postgres, table: agents}]}"))
    with pytest.raises(ConnectionFailed) as err:
        check_sources(m, set())
    assert str(err.value).startswith("cannot connect to postgresql://etl:***@127.0.0.1:1/legacy")
    assert "hunter2" not in str(err.value)
