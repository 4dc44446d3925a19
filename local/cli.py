"""`vital-etl`: the commands the Makefile and a data engineer run.

vital-etl db start|stop|status      the embedded PostgreSQL under VITAL_HOME
vital-etl bootstrap [--dry-run]     run the bootstrap-schema flow on the target
vital-etl sample [--scale N]        build the bundled sample (legacy tables + export files)
vital-etl migrate --tenant T ...    run the migrate-tenant flow for one tenant
vital-etl migrate --tenant T --plan [--prune hard|soft]   what the run would change; writes nothing
vital-etl verify --tenant T         run the verify-tenant flow
vital-etl backfill [--tenant T]     run the backfill-embeddings flow
vital-etl undo --tenant T --confirm T   remove everything the tenant's migration loaded
vital-etl restore --schema S [--data D]   restore a dump (plain SQL or pg_dump -Fc) into the embedded PostgreSQL
vital-etl up | down                 the local Prefect server + worker (and, for down, the DB)
vital-etl report --tenant T         the report of the tenant's last completed run
vital-etl review export --tenant T  the decisions of the tenant's last run, lowest confidence first (CSV)
vital-etl review import FILE        a filled review file into rules/overrides/ (applied by the next run)
vital-etl explain (--id UUID | --entity E --key KEY) --tenant T [--json]
                                    where one row of the target came from and what shaped it (read-only)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from core.errors import VitalError
from core.settings import vital_home


def _run_flow(flow, **params):
    """Check the parameters against the flow's signature (one line naming the wrong one, before
    anything starts), make sure a Prefect API answers, then run the flow."""
    from core.params import check_parameters
    from local.services import temporary_api

    params = check_parameters(flow.fn, flow.name, params)
    temporary_api()
    return flow(**params)


def _db(args: argparse.Namespace) -> int:
    from core.connections import SOURCE_DB, TARGET_DB, mask_dsn
    from local.embedded import embedded

    server = embedded()
    if args.action == "start":
        server.start(persistent=True)
        st = server.status()
        print(f"embedded PostgreSQL running (pid {st.pid}) in {st.pgdata}")
        for db in (SOURCE_DB, TARGET_DB):
            print(f"  {db}: {mask_dsn(server.dsn(db))}")
    elif args.action == "stop":
        print("embedded PostgreSQL stopped" if server.stop() else "embedded PostgreSQL was not running")
    else:
        st = server.status()
        print(f"running (pid {st.pid}) in {st.pgdata}" if st.running else f"not running ({st.pgdata})")
        return 0 if st.running else 3
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    from flows.bootstrap import bootstrap_schema
    from tasks.report import schema_report_markdown

    summary = _run_flow(bootstrap_schema, dry_run=args.dry_run, migrations_dir=args.migrations_dir)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(schema_report_markdown(summary))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from flows.migrate import migrate_tenant

    entities = [e.strip() for e in args.entities.split(",")] if args.entities else None
    pruning = _plan_prune_parameters(args, migrate_tenant)
    summary = _run_flow(
        migrate_tenant,
        tenant=args.tenant,
        manifest=args.manifest,
        entities=entities,
        dry_run=args.dry_run,
        batch_size=args.batch_size,
        embed=not args.no_embed,
        **pruning,
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    if summary.get("plan"):
        from tasks.plan import plan_markdown

        if not args.json:
            print(plan_markdown(summary["plan"]))
        return 1 if summary["plan"]["guard"]["refused"] else 0
    return 0 if summary["reconciled"] else 1


def _plan_prune_parameters(args: argparse.Namespace, flow) -> dict:
    """--plan, --prune and --max-delete-ratio as migrate-tenant parameters (only those given)."""
    import inspect

    given = {
        "plan": True if args.plan else None,
        "prune": {"hard": True, "soft": "soft"}.get(args.prune),
        "max_delete_ratio": args.max_delete_ratio,
    }
    given = {k: v for k, v in given.items() if v is not None}
    missing = [k for k in given if k not in inspect.signature(flow.fn).parameters]
    if missing:  # never run a real migration in place of the plan or prune that was asked for
        raise VitalError(f"this migrate-tenant has no parameter {', '.join(missing)}; nothing was run")
    return given


def _sample(args: argparse.Namespace) -> int:
    from core.connections import mask_dsn, source_dsn
    from sources.sample import build_legacy_db, generate, sample_dir, write_files

    sample = generate(scale=args.scale, seed=args.seed)
    folder = sample_dir()
    files = write_files(sample, folder)
    dsn = source_dsn()
    counts = build_legacy_db(sample, dsn)
    print(f"sample (scale {args.scale}, seed {args.seed}): {len(files)} export files in {folder}")
    print(f"legacy database {mask_dsn(dsn)}: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from flows.verify import verify_tenant

    summary = _run_flow(verify_tenant, tenant=args.tenant)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def _backfill(args: argparse.Namespace) -> int:
    from flows.backfill import backfill_embeddings

    entities = [e.strip() for e in args.entities.split(",")] if args.entities else None
    result = _run_flow(backfill_embeddings, tenant=args.tenant, entities=entities, batch_size=args.batch_size)
    print(json.dumps(result, indent=2))
    return 0


def _undo(args: argparse.Namespace) -> int:
    from flows.undo import undo_tenant

    _run_flow(undo_tenant, tenant=args.tenant, confirm=args.confirm)
    return 0


def _up(args: argparse.Namespace) -> int:
    from local import services

    info = services.up()
    print(
        f"Prefect server {info['api_url']} (pid {info['server']}), worker on pool {services.WORK_POOL} "
        f"(pid {info['worker']}); started now: {', '.join(info['started']) or 'nothing, already running'}"
    )
    print(f"Prefect UI: {info['ui']}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from local import services
    from local.embedded import embedded

    stopped = services.down()
    if not args.keep_db and embedded().stop():
        stopped.append("embedded PostgreSQL")
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _review(args: argparse.Namespace) -> int:
    from tasks import review

    if args.action == "export":
        if not args.tenant:
            print("vital-etl: review export needs --tenant", file=sys.stderr)
            return 2
        _start_what_it_uses()
        path, n = review.export_decisions(args.tenant, args.out)
        print(f"{n} decisions of {args.tenant} in {path} (lowest confidence first); fill `decision`, then "
              f"`vital-etl review import {path}`")  # fmt: skip
        return 0
    if not args.file:
        print("vital-etl: review import needs the review file", file=sys.stderr)
        return 2
    result = review.import_decisions(args.file)
    print(
        f"{result['imported']} decision(s) imported into {', '.join(result['files']) or 'nothing'} "
        f"({result['replaced']} replaced an earlier one, {result['empty']} row(s) without a decision skipped); "
        "the next migrate-tenant run applies them"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from core.connections import connect, target_dsn
    from tasks import runs
    from tasks.report import migration_report_markdown

    with connect(target_dsn(), autocommit=True) as conn:
        run = runs.last_run(conn, "migrate-tenant", args.tenant)
    if run is None:
        print(f"vital-etl: no completed migrate-tenant run for {args.tenant!r} in the target", file=sys.stderr)
        return 1
    print(f"last completed run {run['id']} (finished {run['finished_at']})\n")
    print(migration_report_markdown(run["counts"]))
    return 0 if run["counts"].get("verify", {}).get("passed", True) else 1


def _explain(args: argparse.Namespace) -> int:
    from core.connections import target_dsn
    from tasks.explain import RowNotFound, explain_row, render_text

    if bool(args.entity) != bool(args.key):
        print("vital-etl: explain needs --id UUID, or --entity and --key together", file=sys.stderr)
        return 2
    try:
        found = explain_row(target_dsn(), args.tenant, row_id=args.id, entity=args.entity, key=args.key)
    except RowNotFound as exc:
        print(f"vital-etl: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=2, ensure_ascii=False, default=str) if args.json else render_text(found))
    return 0


def _restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.connections import mask_dsn
    from sources.supabase_dump import restored_copy

    dsn, result = restored_copy(Path(args.schema).resolve(), Path(args.data).resolve() if args.data else None)
    if result is None:
        print(f"a copy of this dump is already restored: {mask_dsn(dsn)}")
        return 0
    print(result.describe())
    print(f"copy: {mask_dsn(dsn)}")
    return 0 if result.complete else 1


def _local_prefect_defaults() -> None:
    """Local runs keep Prefect's state in VITAL_HOME and send no analytics (DESIGN §9)."""
    home = vital_home() / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


# commands that reach a database: the embedded server is started for them when no DSN is set
NEEDS_DATABASE = {"bootstrap", "sample", "migrate", "verify", "backfill", "undo", "restore", "report", "explain"}


def _start_what_it_uses() -> None:
    """The embedded PostgreSQL when no DSN is set; a Prefect API when a DSN is in a Secret block."""
    from core.connections import uses_embedded
    from core.settings import settings
    from local.embedded import embedded
    from local.services import temporary_api

    if uses_embedded():
        embedded().start()
    if settings().source_dsn_secret or settings().target_dsn_secret:
        temporary_api()  # Secret blocks are read through the Prefect API


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (and exit status 2), like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def main(argv: list[str] | None = None) -> int:
    _local_prefect_defaults()
    import prefect.main  # noqa: F401  (sets up Prefect's logging handlers, which the filter joins)
    from prefect.exceptions import ParameterTypeError

    from core import logs

    logs.install()
    parser = OneLineParser(prog="vital-etl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="manage the embedded PostgreSQL under VITAL_HOME")
    db.add_argument("action", choices=["start", "stop", "status"])
    db.set_defaults(func=_db)
    boot = sub.add_parser("bootstrap", help="apply schema/ to the target (flow bootstrap-schema)")
    boot.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    boot.add_argument("--migrations-dir", help="schema folder (default: schema/)")
    boot.add_argument("--json", action="store_true", help="print the summary as JSON")
    boot.set_defaults(func=_bootstrap)
    smp = sub.add_parser("sample", help="build the bundled sample: legacy tables + export files")
    smp.add_argument("--scale", type=int, default=1, help="multiplies agents, capabilities, prompts, JTBDs")
    smp.add_argument("--seed", type=int, default=7)
    smp.set_defaults(func=_sample)
    mig = sub.add_parser("migrate", help="migrate one tenant (flow migrate-tenant)")
    mig.add_argument("--tenant", required=True, help="tenant slug from rules/tenants.yaml")
    mig.add_argument("--manifest", help="sources manifest (default: the bundled sample)")
    mig.add_argument("--entities", help="comma-separated subset of entities")
    mig.add_argument("--dry-run", action="store_true", help="extract, normalize, validate and report; write nothing")
    mig.add_argument("--batch-size", type=int, default=5000, help="rows per read and per load batch")
    mig.add_argument("--no-embed", action="store_true", help="load without vectors; run `vital-etl backfill` later")
    mig.add_argument("--json", action="store_true", help="also print the summary as JSON")
    mig.add_argument("--plan", action="store_true", help="print what the run would change in the target; write nothing")
    mig.add_argument(
        "--prune",
        choices=["hard", "soft"],
        help="remove (hard) or hide (soft: deleted_at) the rows the sources no longer have",
    )
    mig.add_argument(
        "--max-delete-ratio",
        type=float,
        help="refuse a prune that removes more than this share of an entity's rows (default: rules/prune.yaml, 0.1)",
    )
    mig.set_defaults(func=_migrate)
    ver = sub.add_parser("verify", help="verify one tenant's migration (flow verify-tenant)")
    ver.add_argument("--tenant", required=True)
    ver.add_argument("--json", action="store_true")
    ver.set_defaults(func=_verify)
    bf = sub.add_parser("backfill", help="embed missing, stale or other-model rows (flow backfill-embeddings)")
    bf.add_argument("--tenant", help="one tenant (default: all)")
    bf.add_argument("--entities", help="comma-separated searchable tables (default: all)")
    bf.add_argument("--batch-size", type=int, default=1000)
    bf.set_defaults(func=_backfill)
    undo = sub.add_parser("undo", help="remove everything a tenant's migration loaded (flow undo-tenant)")
    undo.add_argument("--tenant", required=True)
    undo.add_argument("--confirm", help="the tenant slug again, to confirm")
    undo.set_defaults(func=_undo)
    rst = sub.add_parser(
        "restore", help="restore a pg_dump / supabase db dump (plain SQL or -Fc) into the embedded PostgreSQL"
    )
    rst.add_argument("--schema", required=True, help="the dump (plain SQL or pg_dump -Fc/-Ft/-Fd), or its schema part")
    rst.add_argument("--data", help="its data part, when schema and data were dumped apart")
    rst.set_defaults(func=_restore)
    up = sub.add_parser("up", help="start the local Prefect server and a process worker (background)")
    up.set_defaults(func=_up)
    down = sub.add_parser("down", help="stop what `up` started, and the embedded PostgreSQL")
    down.add_argument("--keep-db", action="store_true", help="leave the embedded PostgreSQL running")
    down.set_defaults(func=_down)
    rev = sub.add_parser("review", help="export the decisions vital-etl made, or import reviewers' answers")
    rev.add_argument("action", choices=["export", "import"])
    rev.add_argument("file", nargs="?", help="import: the filled review file")
    rev.add_argument("--tenant", help="export: the tenant")
    rev.add_argument("--out", help="export: the CSV to write (default: review-<tenant>.csv)")
    rev.set_defaults(func=_review)
    rep = sub.add_parser("report", help="print the report of a tenant's last completed migrate-tenant run")
    rep.add_argument("--tenant", required=True)
    rep.set_defaults(func=_report)
    exp = sub.add_parser("explain", help="where one row of the target came from and what shaped it (read-only)")
    which = exp.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", help="the row's id (a UUID)")
    which.add_argument("--entity", help="the row's table (agents, personas, ...), with --key")
    exp.add_argument("--key", help="the row's legacy key, as the source writes it (with --entity)")
    exp.add_argument("--tenant", required=True, help="tenant slug")
    exp.add_argument("--json", action="store_true", help="print the explanation as JSON")
    exp.set_defaults(func=_explain)
    args = parser.parse_args(argv)
    try:
        if args.command in NEEDS_DATABASE:
            _start_what_it_uses()
        return args.func(args)
    except VitalError as exc:
        print(f"vital-etl: {exc}", file=sys.stderr)
        return 2
    except ParameterTypeError as exc:  # Prefect's own check, should one differ from check_parameters
        print(f"vital-etl: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
