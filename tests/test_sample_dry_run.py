"""migrate-tenant --dry-run over the bundled sample: every planted problem is quarantined
with its reason, everything else is loaded or skipped, and nothing is written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sources import sample
from sources.manifest import DEFAULT_MANIFEST


@pytest.fixture
def built_sample(fresh_dsn, monkeypatch, vital_home):
    monkeypatch.setenv("VITAL_SOURCE_DSN", fresh_dsn)
    s = sample.generate()
    sample.write_files(s, sample.sample_dir())
    sample.build_legacy_db(s, fresh_dsn)
    return fresh_dsn


def test_dry_run_quarantines_every_planted_problem(built_sample, prefect_harness, vital_home):
    from flows.migrate import migrate_tenant

    def files() -> list:
        return sorted(p for p in (vital_home / "stages").rglob("*") if p.is_file())

    before = files()
    reasons = set()
    for tenant in ("pharma", "digital-health"):
        summary = migrate_tenant(tenant=tenant, dry_run=True)
        assert summary["reconciled"]
        reasons |= {(q["entity"], q["reason"].split(":")[0]) for q in summary["quarantine"]}
    assert reasons == {
        ("agents", "capabilities"),  # malformed array literal
        ("agents", "duplicate natural key '" + sample.generate().tables["agents"][5]["id"] + "'"),
        ("agents", "missing required field name"),
        ("agents", "rules/enums.yaml"),  # unknown business function
        ("agents", "temperature"),  # wrong type
        ("jobs_to_be_done", "line 2"),  # malformed JSONL line
        ("jobs_to_be_done", "validation_score"),  # out of range
        ("knowledge_documents", "empty document"),
        ("prompts", "allowed_tenants"),  # unknown legacy tenant id
        ("prompts", "record 21 (line 42) has 3 cells, the header has 11"),
        ("personas", "years_experience"),  # 'ten' is not a range
    }
    assert files() == before  # no normalize stage stored for reuse: a dry run writes nothing


def test_missing_sample_names_the_fix(vital_home, monkeypatch, tmp_path):
    monkeypatch.setenv("VITAL_HOME", str(tmp_path))
    from sources.manifest import ManifestError, load_manifest

    with pytest.raises(
        ManifestError, match=r"does not exist; build the bundled sample first: `.venv/bin/vital-etl sample`"
    ):
        load_manifest(DEFAULT_MANIFEST)


def test_cli_bad_source_is_one_line_no_traceback(tmp_path, prefect_env):
    (tmp_path / "tools.json").write_text("")
    (tmp_path / "m.yaml").write_text("entities: {tools: [{kind: json, path: tools.json}]}")
    cli = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "vital-etl"
    done = subprocess.run(
        [str(cli), "migrate", "--tenant", "pharma", "--manifest", str(tmp_path / "m.yaml"), "--dry-run"],
        env=prefect_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert f"vital-etl: {tmp_path / 'tools.json'}: file is empty" in done.stderr
    assert "Traceback" not in done.stderr
