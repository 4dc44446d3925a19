"""verify-tenant's checks, against the target database: every source row accounted for, no
NULL functional areas, every junction row resolving, embedding coverage with the current
model, and Row Level Security isolation seen as a non-owner role."""

from __future__ import annotations

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import sql

from core.catalogue import CATALOGUE_TABLES, JUNCTIONS, SEARCHABLE
from core.connections import connect, target_dsn
from core.errors import TerminalError
from core.retry import IO_RETRIES
from core.settings import model_spec
from core.tenants import load_tenants
from tasks.runs import last_run
from tasks.search import load_search_rules, search_recall
from tasks.summary import reconciles

VERIFY_ROLE = "vital_etl_verifier"


def _count(conn, table: str, tenant_id: str, where: str = "TRUE") -> int:
    return conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s AND " + where).format(sql.Identifier(table)), (tenant_id,)
    ).fetchone()[0]


def verify(conn: psycopg.Connection, tenant_slug: str, tenant_id: str, model_id: str, embedded: bool = True) -> dict:
    """Every check; embedded=False (a run that deferred embedding) reports coverage without failing."""
    checks: list[dict] = []

    def check(name: str, passed: bool, detail: str) -> None:
        checks.append({"check": name, "passed": bool(passed), "detail": detail})

    run = last_run(conn, "migrate-tenant", tenant_slug)
    entities = (run or {}).get("counts", {}).get("entities", {})
    if run is None:
        check("reconciled", False, "no completed migrate-tenant run for this tenant")
    for entity, c in entities.items():
        check(
            f"reconciled: {entity}",
            reconciles(c),
            f"read {c['read']} + created {c.get('created', 0)} = loaded "
            f"{c['loaded']} + quarantined {c['quarantined']} + skipped {c['skipped']}",
        )
        if entity in CATALOGUE_TABLES:
            rows = _count(conn, entity, tenant_id)
            check(
                f"rows in target: {entity}",
                rows >= c["loaded"],
                f"{rows} rows in {entity}, the last run loaded {c['loaded']}",
            )
    for table in ("jobs_to_be_done", "agents"):
        nulls = _count(conn, table, tenant_id, "functional_area IS NULL")
        check(f"functional_area set: {table}", nulls == 0, f"{nulls} rows without a functional area")
    junctions = {}
    for j in JUNCTIONS:
        junction, a_entity, b_entity, a_col, b_col = j.name, j.a, j.b, j.a_col, j.b_col
        total = _count(conn, junction, tenant_id)
        orphans = conn.execute(
            sql.SQL(
                """SELECT count(*) FROM {j} x WHERE x.tenant_id = %s AND (
                 NOT EXISTS (SELECT 1 FROM {a} WHERE id = x.{ac} AND tenant_id = x.tenant_id) OR
                 NOT EXISTS (SELECT 1 FROM {b} WHERE id = x.{bc} AND tenant_id = x.tenant_id))"""
            ).format(
                j=sql.Identifier(junction),
                a=sql.Identifier(a_entity),
                b=sql.Identifier(b_entity),
                ac=sql.Identifier(a_col),
                bc=sql.Identifier(b_col),
            ),
            (tenant_id,),
        ).fetchone()[0]
        junctions[junction] = total
        if total:
            check(f"junction resolves: {junction}", orphans == 0, f"{orphans} of {total} rows point nowhere")
    coverage = {}
    for table in SEARCHABLE:
        total = _count(conn, table, tenant_id)
        current = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {} WHERE tenant_id = %s AND embedding IS NOT NULL AND embedding_model = %s"
            ).format(sql.Identifier(table)),
            (tenant_id, model_id),
        ).fetchone()[0]
        coverage[table] = {"rows": total, "embedded": current}
        check(
            f"embedding coverage: {table}",
            current == total or not embedded,
            f"{current} of {total} rows embedded with {model_id}"
            + ("" if embedded or current == total else " (embedding deferred: run backfill-embeddings)"),
        )
    check(*_rls_check(conn, tenant_id))
    search = _search_checks(conn, tenant_id, check)
    return {
        "tenant": tenant_slug,
        "passed": all(c["passed"] for c in checks),
        "checks": checks,
        "entities": entities,
        "junctions": junctions,
        "embedding_coverage": coverage,
        "search": search,
        "last_run": run and {k: run[k] for k in ("id", "finished_at")},
    }


def _search_checks(conn: psycopg.Connection, tenant_id: str, check) -> dict:
    """k-nearest-neighbour search as the verifier role under RLS vs an exact scan, per table."""
    rules = load_search_rules()
    found = {}
    for table in SEARCHABLE:
        r = found[table] = search_recall(conn, table, tenant_id, VERIFY_ROLE, rules)
        if r["queries"]:
            check(
                f"search: {table}",
                r["recall"] >= rules.min_recall and r["short"] == 0,
                f"recall@{rules.k} {r['recall']:.2f} over {r['queries']} queries (min {rules.min_recall}); "
                f"{r['short']} returned fewer rows than the tenant has",
            )
    return found


def _rls_check(conn: psycopg.Connection, tenant_id: str) -> tuple[str, bool, str]:
    """As a NOLOGIN role that does not own the tables: with app.tenant_id set, only this
    tenant's rows are visible in every tenant-scoped table; with none set, no rows."""
    soft = {}  # table -> has deleted_at: RLS hides soft-deleted rows (schema/0014)
    for name, has_deleted_at in conn.execute(
        """SELECT c.relname, EXISTS (SELECT 1 FROM pg_attribute d WHERE d.attrelid = c.oid
                  AND d.attname = 'deleted_at' AND NOT d.attisdropped)
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
           WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' ORDER BY 1"""
    ):
        soft[name] = has_deleted_at
    tables = list(soft)
    try:
        with conn.transaction():
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (VERIFY_ROLE,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(VERIFY_ROLE)))
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            if not conn.execute("SELECT has_schema_privilege(%s, %s, 'USAGE')", (VERIFY_ROLE, schema)).fetchone()[0]:
                conn.execute(
                    sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                        sql.Identifier(schema), sql.Identifier(VERIFY_ROLE)
                    )
                )
            ungranted = conn.execute(  # granted once: a later run reads the catalogue, writes nothing
                """SELECT t FROM unnest(%s::text[]) AS t
                   WHERE NOT has_table_privilege(%s, quote_ident(t)::regclass, 'SELECT')""",
                (tables, VERIFY_ROLE),
            ).fetchall()
            for (t,) in ungranted:
                conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(t), sql.Identifier(VERIFY_ROLE)))
    except psycopg.Error as exc:
        return "row level security", False, f"could not set up role {VERIFY_ROLE}: {exc.diag.message_primary}"
    problems = []
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(VERIFY_ROLE)))
        for t in tables:
            none = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
            if none:
                problems.append(f"{t}: {none} rows visible with no tenant set")
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant_id,))
        seen = {}
        for t in tables:
            other, mine = conn.execute(
                sql.SQL(
                    "SELECT count(*) FILTER (WHERE tenant_id <> %s), count(*) FILTER (WHERE tenant_id = %s) FROM {}"
                ).format(sql.Identifier(t)),
                (tenant_id, tenant_id),
            ).fetchone()
            seen[t] = mine
            if other:
                problems.append(f"{t}: {other} rows of other tenants visible")
    for t in tables:
        owner_sees = _count(conn, t, tenant_id, "deleted_at IS NULL" if soft[t] else "TRUE")
        if owner_sees != seen[t]:
            problems.append(f"{t}: the role sees {seen[t]} of the tenant's {owner_sees} rows")
    return (
        "row level security",
        not problems,
        "; ".join(problems) if problems else f"{len(tables)} tables isolated for {VERIFY_ROLE}",
    )


@task(name="verify", task_run_name="verify-{tenant}", cache_policy=NO_CACHE, **IO_RETRIES)
def verify_target(tenant: str, embedded: bool = True, model_id: str | None = None) -> dict:
    """model_id: the model the rows must be embedded with: the one a migrate-tenant run used (the
    quality gate may have fallen back to torch fp32), else the configured one."""
    tenant_id = str(load_tenants().by_slug(tenant).id)
    with connect(target_dsn(), autocommit=True) as conn:
        return verify(conn, tenant, tenant_id, model_id or model_spec().model_id, embedded)


class VerificationFailed(TerminalError):
    """One or more verify-tenant checks failed; the report lists them."""


def require_verified(v: dict | None, flow: str = "migrate-tenant") -> None:
    """Fail the run (after its report is written) when a verify check failed; None: not verified
    (a dry run)."""
    if v is not None and not v["passed"]:
        failed = [f"{c['check']} ({c['detail']})" for c in v["checks"] if not c["passed"]]
        raise VerificationFailed(
            f"{flow} {v['tenant']}: {len(failed)} verify check(s) failed: " + "; ".join(failed) + ". The report "
            "lists every check; fix the cause and run again (`vital-etl verify --tenant "
            f"{v['tenant']}` re-checks)"
        )
