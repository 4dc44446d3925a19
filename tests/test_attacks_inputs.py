"""Issue 13, tried as an attacker would: what a manifest, a DSN, a data file or a flow parameter
can do to vital-etl. Each class of input ends in one clear line or a quarantine row, and never
changes anything it should not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil
import psycopg
import pytest

from core.errors import ConfigError
from sources.files import SourceError, read_csv, read_json, read_jsonl
from sources.legacy_pg import read_postgres
from sources.manifest import ManifestError, check_sources, load_manifest
from tasks.extract import extract_entity
from tasks.normalize import SHAPES
from tasks.normalize.base import normalize_frame
from tasks.normalize.rules import load_rules

ROOT = Path(__file__).resolve().parents[1]
RULES = load_rules()

# ---------------------------------------------------------------------------------------------
# 1. A manifest's SQL never runs: `table:` is an identifier, `query:` one read-only statement.

LEGACY = """
CREATE TABLE public.x (id int);
INSERT INTO public.x VALUES (1), (2);
CREATE TABLE public.y (id int);
INSERT INTO public.y VALUES (1), (2), (3);
CREATE TABLE public.capabilities (capability_name text, capability_slug text);
INSERT INTO public.capabilities VALUES ('Dosing', 'dosing');
CREATE FUNCTION public.wipe_y() RETURNS int LANGUAGE sql AS 'DELETE FROM public.y RETURNING 1';
"""

INJECTIONS = [
    "{kind: postgres, query: \"SELECT 'a' AS capability_name; DROP TABLE public.x\"}",
    '{kind: postgres, table: "public.capabilities; DELETE FROM public.y"}',
    '{kind: postgres, table: "capabilities; DELETE FROM public.y"}',
    '{kind: postgres, query: "DELETE FROM public.y RETURNING *"}',
    '{kind: postgres, query: "WITH d AS (DELETE FROM public.y RETURNING *) SELECT * FROM d"}',
    '{kind: postgres, query: "SELECT 1) AS a; DELETE FROM public.y; SELECT * FROM (SELECT 1"}',
    '{kind: postgres, query: "SELECT 1 --\\n) AS a; DROP TABLE public.x; --"}',
    '{kind: postgres, query: "SELECT public.wipe_y() AS capability_name"}',
    '{kind: postgres, query: "SELECT * FROM public.capabilities FOR UPDATE"}',
    '{kind: postgres, query: "COPY public.y TO STDOUT"}',
]


@pytest.fixture
def legacy(fresh_dsn, monkeypatch):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(LEGACY)
    monkeypatch.setenv("VITAL_SOURCE_DSN", fresh_dsn)
    return fresh_dsn


def legacy_state(dsn: str) -> tuple:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return (
            conn.execute("SELECT count(*) FROM public.x").fetchone()[0],
            conn.execute("SELECT count(*) FROM public.y").fetchone()[0],
            conn.execute("SELECT count(*) FROM public.capabilities").fetchone()[0],
        )


def manifest_of(tmp_path, text: str):
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("source", INJECTIONS)
def test_manifest_sql_changes_nothing_in_the_legacy_database(legacy, tmp_path, source):
    before = legacy_state(legacy)
    path = manifest_of(tmp_path, f"entities:\n  capabilities:\n    - {source}\n")
    try:
        m = load_manifest(path)  # a `table:` that is no name stops here
        check_sources(m, set())  # what a dry run does
        list(extract_entity(m, "capabilities", 100).frame.iter_rows())  # and a real read
    except (ManifestError, SourceError) as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))
    assert legacy_state(legacy) == before


def test_one_read_only_query_and_a_quoted_table_are_read(legacy, tmp_path):
    path = manifest_of(
        tmp_path,
        "entities:\n  capabilities:\n"
        "    - {kind: postgres, table: public.capabilities}\n"
        "    - {kind: postgres, query: \"SELECT 'x' AS capability_name, 'x' AS capability_slug;\"}\n",
    )
    m = load_manifest(path)
    check_sources(m, set())
    frame = extract_entity(m, "capabilities", 100).frame
    assert frame["capability_slug"].to_list() == ["dosing", "x"]


@pytest.mark.parametrize(
    "source, message",
    [
        (
            "{kind: postgres, query: \"SELECT 'a' AS name; DROP TABLE public.x\"}",
            "cannot insert multiple commands into a prepared statement; `query:` must be exactly one read-only "
            "SELECT (or WITH ... SELECT, VALUES, TABLE) statement",
        ),
        (
            '{kind: postgres, query: "SELECT 1) AS a; DELETE FROM public.y; SELECT * FROM (SELECT 1"}',
            'syntax error at or near ")"; `query:` must be exactly one read-only',
        ),
        (
            '{kind: postgres, query: "DELETE FROM public.y"}',
            "it is one statement, but not a query that only reads; `query:` must be exactly one read-only",
        ),
        (
            "{kind: postgres, table: public.Capabilities}",
            'relation "public.Capabilities" does not exist; write `table:` as schema.table',
        ),
        (
            '{kind: postgres, table: "public.capabilities; DELETE FROM public.y"}',
            "entities.capabilities[0].table: 'public.capabilities; DELETE FROM public.y' is not a table name; "
            "write schema.table (e.g. table: public.agents), or use `query:` for a SELECT",
        ),
    ],
)
def test_manifest_sql_is_refused_with_one_line(legacy, tmp_path, source, message):
    path = manifest_of(tmp_path, f"entities:\n  capabilities:\n    - {source}\n")
    with pytest.raises(ManifestError) as err:
        check_sources(load_manifest(path), set())
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_query_that_writes_is_refused_when_read(legacy, tmp_path):
    m = load_manifest(
        manifest_of(
            tmp_path, "entities:\n  capabilities:\n    - {kind: postgres, query: 'SELECT public.wipe_y() AS n'}\n"
        )
    )
    with pytest.raises(SourceError) as err:
        extract_entity(m, "capabilities", 100)
    assert str(err.value).endswith(
        "the legacy database refused the read: cannot execute DELETE in a read-only transaction; "
        "a manifest source only reads: its statement may not write"
    )
    assert legacy_state(legacy) == (2, 3, 1)


# ---------------------------------------------------------------------------------------------
# issue 12: the manifest's `timezone` (default UTC) is the legacy session's TimeZone.


def test_timestamps_read_the_same_whatever_the_server_time_zone(fresh_dsn, tmp_path, monkeypatch):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (at timestamptz)")
        conn.execute("INSERT INTO t VALUES ('2025-01-02 03:04:05+00')")
        conn.execute(f"ALTER DATABASE {conn.info.dbname} SET TimeZone = 'America/New_York'")
    query = "SELECT at, at::timestamp AS naive FROM t"
    (row,) = next(read_postgres(fresh_dsn, query, 10)).select("at", "naive").rows()
    assert row == ("2025-01-02 03:04:05+00:00", "2025-01-02 03:04:05")
    (row,) = next(read_postgres(fresh_dsn, query, 10, timezone="Asia/Tokyo")).select("at", "naive").rows()
    assert row == ("2025-01-02 12:04:05+09:00", "2025-01-02 12:04:05")
    monkeypatch.setenv("VITAL_SOURCE_DSN", fresh_dsn)
    m = load_manifest(manifest_of(tmp_path, "timezone: Mars/Base\nentities: {agents: [{kind: postgres, table: t}]}"))
    assert m.timezone == "Mars/Base"
    with pytest.raises(ManifestError, match=r"timezone: 'Mars/Base' is not a time zone the legacy database knows"):
        check_sources(m, set())
    assert load_manifest(manifest_of(tmp_path, "entities: {agents: [{kind: postgres, table: t}]}")).timezone == "UTC"


# ---------------------------------------------------------------------------------------------
# 3. Passwords appear nowhere: not in stdout or stderr, VITAL_HOME, Prefect's database, or etl.*

CLI = ROOT / ".venv" / "bin" / "vital-etl"
SECRET = "Q9zxSecret"
DSN_FORMS = {  # {base}: database nodb on the test server, as role etl (which does not exist)
    "question mark": "postgresql://etl:pw?" + SECRET + "@/nodb?{query}",
    "hash": "postgresql://etl:pw#" + SECRET + "@/nodb?{query}",
    "bad percent": "postgresql://etl:pw%zz" + SECRET + "@/nodb?{query}",
    "bad ipv6 host": "postgresql://etl:" + SECRET + "@[::1:5432/nodb",
    "space in a uri": "postgresql://etl:pw " + SECRET + "@/nodb?{query}",
    "space in key=value": "user=etl password=pw " + SECRET + " dbname=nodb {kv}",
}


def dsn_form(pg_server, form: str) -> str:
    query = pg_server.dsn("postgres").split("?", 1)[1]
    kv = " ".join(f"{k}={v}" for k, v in (p.split("=", 1) for p in query.split("&")))
    return DSN_FORMS[form].format(query=query, kv=kv)


def places_holding(secret: str, home: Path, target: str, outputs: list[str]) -> list[str]:
    """Everything a user or another role could read afterwards, that holds `secret`."""
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    found = [f"output {i}" for i, text in enumerate(outputs) if secret in text]
    prefect_db = Path(PREFECT_API_DATABASE_CONNECTION_URL.value().split(":///", 1)[1])
    files = [p for p in home.rglob("*") if p.is_file() and (p.relative_to(home).parts[0] != "pg" or ".log" in p.name)]
    files += [p for p in prefect_db.parent.glob(prefect_db.name + "*")]
    found += [str(p) for p in files if secret.encode() in p.read_bytes()]
    with psycopg.connect(target, autocommit=True) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'etl'").fetchall()
        for (table,) in tables:
            rows = conn.execute(f"SELECT t::text FROM etl.{table} t").fetchall()
            found += [f"etl.{table}" for (row,) in rows if secret in row]
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    "variable, form",
    [("VITAL_SOURCE_DSN", form) for form in DSN_FORMS]
    + [("VITAL_TARGET_DSN", "question mark"), ("VITAL_TARGET_DSN", "bad percent")],
)
def test_a_password_is_nowhere_after_a_failed_run(
    pg_server, target_dsn, prefect_env, vital_home, tmp_path, variable, form
):
    (tmp_path / "tools.json").write_text('[{"name": "R", "slug": "r"}]')
    sources = (
        "{kind: postgres, table: public.tools}" if variable == "VITAL_SOURCE_DSN" else "{kind: json, path: tools.json}"
    )
    (tmp_path / "m.yaml").write_text(f"entities: {{tools: [{sources}]}}")
    env = {**prefect_env, "VITAL_TARGET_DSN": target_dsn, variable: dsn_form(pg_server, form)}
    args = ["migrate", "--tenant", "pharma", "--manifest", str(tmp_path / "m.yaml")]
    done = subprocess.run(
        [str(CLI), *args, *(["--dry-run"] if variable == "VITAL_SOURCE_DSN" else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert f"vital-etl: {variable} is not a valid" in done.stderr or "vital-etl: cannot connect to " in done.stderr
    assert "Traceback" not in done.stderr
    assert places_holding(SECRET, vital_home, target_dsn, [done.stdout, done.stderr]) == []


MASKED = [
    ("postgresql://etl:pw?Q9zxSecret@h:5432/db", "postgresql://etl:***@h:5432/db"),
    ("postgresql://etl:pw#Q9zxSecret@h/db", "postgresql://etl:***@h/db"),
    ("postgresql://etl:p@ss/Q9zxSecret@h/db", "postgresql://etl:***@h/db"),
    ("postgresql://etl:pw%zzQ9zxSecret@h/db", "postgresql://etl:***@h/db"),
    ("postgresql://etl:Q9zxSecret@[::1:5432/db", "postgresql://etl:***@[::1:5432/db"),
    ("postgresql://etl:pw Q9zxSecret@h/db", "postgresql://etl:***@h/db"),
    ("postgresql://e/t?l:Q9zxSecret@h/db", "postgresql://***@h/db"),  # no user part can be read: all masked
    ("host=h user=etl password=pw Q9zxSecret dbname=db", "host=h user=etl password=*** dbname=db"),
    ("host=h password='pw Q9zxSecret dbname=db", "host=h password=***"),
    ("host=h PASSWORD = Q9zxSecret", "host=h PASSWORD = ***"),
]


@pytest.mark.parametrize("dsn, masked", MASKED)
def test_mask_dsn_cannot_fail_and_never_shows_the_password(dsn, masked):
    from core.connections import checked_dsn, mask_dsn

    assert mask_dsn(dsn) == masked
    try:
        checked_dsn(dsn, "VITAL_SOURCE_DSN")
    except ConfigError as exc:
        assert SECRET not in str(exc) and "\n" not in str(exc)
        assert str(exc).startswith(f"VITAL_SOURCE_DSN is not a valid PostgreSQL connection string ({masked}): ")


def test_a_path_variable_is_never_echoed(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPORTS", f"/srv/{SECRET}/exports")
    path = manifest_of(tmp_path, "entities: {agents: [{kind: json, path: '${EXPORTS}/agents.json'}]}")
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(err.value) == f"{path}: entities.agents[0]: file '${{EXPORTS}}/agents.json' does not exist"


# ---------------------------------------------------------------------------------------------
# 9. Huge numbers are quarantined, at once, never built or turned into Infinity.

HUGE = ["1e39", "1e400", "1e99999999", "-1e99999999", "9" * 5000]
NUMBERS_SCRIPT = """
import json, sys, time
import polars as pl
from tasks.normalize import SHAPES
from tasks.normalize.base import normalize_frame
from tasks.normalize.rules import load_rules

value, rules = sys.argv[1], load_rules()
good = {"id": "11111111-0000-0000-0000-000000000001", "name": "good", "max_tokens": "4000"}
cases = {
    "agents": [good] + [{"id": f"11111111-0000-0000-0000-00000000000{i}", "name": f"bad{i}", f: value}
                        for i, f in enumerate(("max_tokens", "tier", "temperature"), start=2)],
    "jobs_to_be_done": [{"code": "J1", "name": "x", "validation_score": value}],
    "knowledge_domains": [{"slug": "d", "name": "D", "depth_level": value}],
    "personas": [{"code": "P1", "name": "P", "years_experience": value}],
}
started, out = time.monotonic(), {}
for entity, records in cases.items():
    cols = list({k: None for r in records for k in r})
    frame = pl.DataFrame({c: [r.get(c) for r in records] for c in cols}, schema={c: pl.Utf8 for c in cols})
    frame = frame.with_columns(pl.lit("t.json").alias("_source"), pl.Series("_row", range(1, len(records) + 1)),
                               pl.lit(None, dtype=pl.Utf8).alias("_tenants"))
    n = normalize_frame(entity, frame, rules, SHAPES[entity])
    out[entity] = {"loaded": n.rows.height, "reasons": n.rejects["reason"].to_list()}
out["seconds"] = time.monotonic() - started
print(json.dumps(out))
"""


@pytest.mark.parametrize("value", HUGE, ids=["1e39", "1e400", "1e99999999", "-1e99999999", "5000 digits"])
def test_huge_numbers_are_quarantined_within_a_second(value):
    done = subprocess.run(
        [sys.executable, "-c", NUMBERS_SCRIPT, value],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,  # the old int(Decimal('1e99999999')) spun for minutes
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out.pop("seconds") < 1.0
    shown = repr(value[:40])
    assert out == {
        "agents": {
            "loaded": 1,
            "reasons": [
                f"max_tokens: {shown} is out of range (an integer holds -2147483648..2147483647)",
                f"tier: {shown} is out of range (a smallint holds -32768..32767)",
                f"temperature: {shown} is out of range (numeric(4,2) holds less than 100 in absolute value)",
            ],
        },
        "jobs_to_be_done": {
            "loaded": 0,
            "reasons": [
                f"validation_score: {shown} is out of range (numeric(4,3) holds less than 10 in absolute value)"
            ],
        },
        "knowledge_domains": {
            "loaded": 0,
            "reasons": [f"depth_level: {shown} is out of range (a smallint holds -32768..32767)"],
        },
        "personas": {
            "loaded": 0,
            "reasons": [f"years_experience: {shown} is out of range (a smallint holds -32768..32767)"],
        }
        if value.isdigit()
        else {"loaded": 0, "reasons": [f"years_experience: not a range: {shown} (expected '10-15', '15+' or '7')"]},
    }


# ---------------------------------------------------------------------------------------------
# 13. The junk-title rule never eats a header: a one-column CSV keeps every row.


@pytest.mark.parametrize(
    "text, rows, skipped",
    [
        ('name\n"a, b"\nc\n', [{"name": "a, b"}, {"name": "c"}], None),
        ('name\n"Smith, J"\n', [{"name": "Smith, J"}], None),
        ("name\nx\ny\n", [{"name": "x"}, {"name": "y"}], None),
        (
            "Tools export 2025\nname,slug\nR,r\nS,s\n",
            [{"name": "R", "slug": "r"}, {"name": "S", "slug": "s"}],
            "one cell, while the 3 record(s) after it have 2 or more: not a header",
        ),
        ('name\na,b\nc\n"d"\n', None, None),  # a stray comma in one row is a bad row, not a header
    ],
    ids=["quoted comma", "one row", "plain one column", "title line", "one bad row"],
)
def test_a_first_line_is_skipped_only_when_it_cannot_be_the_header(tmp_path, text, rows, skipped):
    path = tmp_path / "people.csv"
    path.write_text(text)
    detected: dict = {}
    frame = pl.concat(list(read_csv(path, 100, detected=detected)))
    assert detected.get("skipped_first_line_reason") == skipped
    if rows is not None:
        assert frame.select(pl.exclude("_row", "_typed", "_error", "_raw")).to_dicts() == rows
    else:
        assert frame.columns[0] == "name" and frame.height == 3
        assert frame["_error"].to_list() == ["record 1 (line 2) has 2 cells, the header has 1", None, None]


# ---------------------------------------------------------------------------------------------
# 14. Data the JSON readers cannot hold: a quarantine row with the reason, or one clear line.


@pytest.mark.parametrize(
    "record, reason",
    [
        (
            '{"name": "R", "slug": "\\ud800"}',
            "a lone UTF-16 surrogate (\\ud800) is not text; fix the export's encoding",
        ),
        ('{"name": "R", "slug": ' + "1" * 5000 + "}", "a number of 5000 digits (at most 4000)"),
        ('{"name": "R", "slug": 1e400}', "the number 1e400 is out of range (a float holds about 1.8e308)"),
        ('{"name": "R", "slug": NaN}', "NaN is not a JSON number"),
    ],
    ids=["lone surrogate", "5000 digits", "1e400", "NaN"],
)
@pytest.mark.parametrize("kind", ["json", "jsonl"])
def test_json_a_record_cannot_hold_is_quarantined(tmp_path, kind, record, reason):
    good = '{"name": "S", "slug": "s"}'
    path = tmp_path / f"tools.{kind}"
    path.write_text(f"[{good}, {record}]" if kind == "json" else f"{good}\n{record}\n")
    reader = read_json if kind == "json" else read_jsonl
    frame = pl.concat(list(reader(path, 100))).with_columns(
        pl.lit(path.name).alias("_source"), pl.lit(None, dtype=pl.Utf8).alias("_tenants")
    )
    n = normalize_frame("tools", frame, RULES, SHAPES["tools"])
    assert n.rows["slug"].to_list() == ["s"]
    where = "record 2" if kind == "json" else "line 2"
    assert n.rejects["reason"].to_list() == [f"{where}: {reason}"]
    n.rejects["payload"][0].encode("utf-8")  # storable


def test_json_nested_too_deeply_is_one_line(tmp_path):
    path = tmp_path / "tools.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SourceError) as err:
        list(read_json(path, 100))
    assert str(err.value) == (
        f"{path}: cannot be read as JSON: nested too deeply (more levels of arrays and objects than can be read)"
    )
    path = tmp_path / "tools.jsonl"
    path.write_text('{"name": "S", "slug": "s"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    (row,) = [r for r in pl.concat(list(read_jsonl(path, 100))).to_dicts() if r.get("_error")]
    assert row["_error"] == "line 2: nested too deeply (more levels of arrays and objects than can be read)"


@pytest.mark.parametrize(
    "cell, reason",
    [
        (
            '["\\ud800"]',
            "capabilities: JSON array '[\"\\\\ud800\"]': a lone UTF-16 surrogate (\\ud800) is not text; "
            "fix the export's encoding",
        ),
        (
            "[" + "1" * 5000 + "]",
            "capabilities: JSON array '[" + "1" * 59 + "': a number of 5000 digits (at most 4000)",
        ),
    ],
    ids=["lone surrogate", "5000 digits"],
)
def test_json_in_a_cell_that_cannot_be_held_is_quarantined(cell, reason):
    frame = pl.DataFrame(
        {"id": ["11111111-0000-0000-0000-000000000001"], "name": ["a"], "capabilities": [cell]},
    ).with_columns(
        pl.lit("a.csv").alias("_source"), pl.Series("_row", [1]), pl.lit(None, dtype=pl.Utf8).alias("_tenants")
    )
    n = normalize_frame("agents", frame, RULES, SHAPES["agents"])
    assert n.rejects["reason"].to_list() == [reason]


# ---------------------------------------------------------------------------------------------
# 10. Flow parameters are checked: by type and range, in the signature (Prefect checks calls
# and deployment runs against it), and by the CLI in one line.

BAD_PARAMETERS = [
    (
        "migrate-tenant",
        {"tenant": "pharma", "batch_size": -5},
        "batch_size=-5: Input should be greater than or equal to 1",
    ),
    (
        "migrate-tenant",
        {"tenant": "pharma", "batch_size": 0},
        "batch_size=0: Input should be greater than or equal to 1",
    ),
    ("migrate-tenant", {"tenant": "pharma", "batch_size": 10**9}, "batch_size=1000000000: Input should be less than"),
    (
        "migrate-tenant",
        {"tenant": "pharma", "batch_size": "many"},
        "batch_size='many': Input should be a valid integer",
    ),
    ("migrate-tenant", {"tenant": ""}, "tenant='': String should have at least 1 character"),
    ("migrate-tenant", {"tenant": "pharma", "entities": "agents"}, "entities='agents': Input should be a valid list"),
    ("migrate-all", {"timeout_s": 0}, "timeout_s=0: Input should be greater than 0"),
    ("backfill-embeddings", {"batch_size": 0}, "batch_size=0: Input should be greater than or equal to 1"),
    ("verify-tenant", {"tenant": ""}, "tenant='': String should have at least 1 character"),
]


def flow_named(name: str):
    from flows.backfill import backfill_embeddings
    from flows.migrate import migrate_all, migrate_tenant
    from flows.verify import verify_tenant

    return {f.name: f for f in (migrate_tenant, migrate_all, backfill_embeddings, verify_tenant)}[name]


@pytest.mark.parametrize("name, params, message", BAD_PARAMETERS)
def test_bad_flow_parameters_are_refused(name, params, message):
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import is_valid

    from core.errors import ConfigError
    from core.params import check_parameters

    flow = flow_named(name)
    with pytest.raises(ConfigError) as err:
        check_parameters(flow.fn, name, params)
    assert str(err.value).startswith(f"{name}: parameter {message}") and "\n" not in str(err.value)
    with pytest.raises(ParameterTypeError):  # a direct call of the flow
        flow.validate_parameters(params)
    schema = parameter_schema(flow).model_dump_for_openapi()
    assert not is_valid(params, schema)  # what Prefect enforces on a deployment's runs


@pytest.mark.parametrize(
    "args",
    [
        ["migrate", "--tenant", "pharma", "--batch-size", "-5"],
        ["migrate", "--tenant", "pharma", "--batch-size", "0"],
        ["migrate", "--tenant", "pharma", "--batch-size", "many"],
        ["backfill", "--batch-size", "0"],
    ],
    ids=["-5", "0", "many", "backfill 0"],
)
def test_the_cli_refuses_a_bad_batch_size_in_one_line(fresh_dsn, tmp_path, args):
    env = {**os.environ, "VITAL_HOME": str(tmp_path), "VITAL_SOURCE_DSN": fresh_dsn, "VITAL_TARGET_DSN": fresh_dsn}
    done = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "batch_size" in done.stderr or "--batch-size" in done.stderr
    assert done.stdout == ""


# ---------------------------------------------------------------------------------------------
# 18. The CLI exits cleanly and leaves no process of its own, even when SIGKILLed.


def marked(mark: str) -> list[psutil.Process]:
    """Live processes whose environment holds VITAL_TEST_MARK=mark."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("VITAL_TEST_MARK") == mark:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_for(condition, timeout: float = 60, step: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return condition()


def cli_env(tmp_path, target: str, mark: str) -> dict:
    """The CLI as a user runs it: no Prefect API set, its own VITAL_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    home = tmp_path / "home"
    return env | {
        "VITAL_HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),
        "VITAL_TARGET_DSN": target,
        "VITAL_SOURCE_DSN": target,
        "VITAL_TEST_MARK": mark,
    }


@pytest.mark.slow
def test_the_cli_exits_cleanly_and_leaves_no_process(target_dsn, tmp_path):
    mark = f"clean-{tmp_path.name}"
    done = subprocess.run(
        [str(CLI), "bootstrap", "--dry-run"],
        env=cli_env(tmp_path, target_dsn, mark),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Error flushing" not in done.stderr
    assert wait_for(lambda: not marked(mark), timeout=20), [p.cmdline() for p in marked(mark)]


@pytest.mark.slow
def test_a_sigkilled_cli_leaves_no_prefect_server(target_dsn, tmp_path):
    mark = f"killed-{tmp_path.name}"
    cli = subprocess.Popen(
        [str(CLI), "bootstrap", "--dry-run"],
        env=cli_env(tmp_path, target_dsn, mark),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def serving():
            return [
                p
                for p in marked(mark)
                if p.pid != cli.pid and any(c.status == psutil.CONN_LISTEN for c in p.net_connections("tcp"))
            ]

        assert wait_for(serving, timeout=180), "no Prefect server started"
        cli.kill()
        cli.wait()
        assert wait_for(lambda: not marked(mark), timeout=30), [p.cmdline() for p in marked(mark)]
    finally:
        for proc in marked(mark):
            proc.kill()
        if cli.poll() is None:
            cli.kill()


# ---------------------------------------------------------------------------------------------
# 17. A key written twice is refused in every YAML file vital-etl reads (rules/, manifests).


def test_every_yaml_file_is_read_by_the_one_strict_reader():
    """core/yamlfile.py is the only module that parses YAML: rules, tenants and manifests all go
    through read_yaml."""
    readers = [
        str(path.relative_to(ROOT))
        for layer in ("core", "sources", "tasks", "flows", "local")
        for path in (ROOT / layer).rglob("*.py")
        if path.name != "yamlfile.py" and ("yaml.safe_load" in path.read_text() or "yaml.load" in path.read_text())
    ]
    assert readers == []


def test_a_duplicate_key_in_a_rules_file_is_refused(tmp_path):
    from core.errors import ConfigError
    from core.tenants import load_tenants

    path = tmp_path / "tenants.yaml"
    path.write_text((ROOT / "rules" / "tenants.yaml").read_text() + "\ntenants: []\n")
    with pytest.raises(ConfigError) as err:
        load_tenants(path)
    assert str(err.value).startswith(f"{path}: line ")
    assert "duplicate key 'tenants' (first on line " in str(err.value)
    assert str(err.value).endswith("a key may appear once in a mapping: merge the two entries")
