"""The review loop: what vital-etl decided goes out as one CSV per tenant (lowest confidence
first, an empty `decision` column); what reviewers fill in comes back into rules/overrides/
(one CSV per tenant, the same shape), and every later run applies it before anything is
inferred: it wins over inference and survives re-runs. An override that matches no row any
more is reported, never silently dropped.

    vital-etl review export --tenant pharma [--out review-pharma.csv]
    vital-etl review import review-pharma.csv

`decision`, per kind:
    area                an area label (synonyms of rules/enums.yaml accepted), or `ok` (keep the value)
    link                `accept` (or `ok`): the link stays, mapping_source expert_review; `reject`: removed
    tenant, created, match   `ok`: reviewed, nothing changes (change rules/tenancy.yaml or
                        rules/references.yaml to change those)
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.catalogue import CATALOGUE_TABLES, JUNCTIONS, WITH_AREA
from core.catalogue import junction as junction_of
from core.connections import connect, target_dsn
from core.errors import ConfigError
from core.retry import IO_RETRIES
from core.settings import RULES_DIR
from core.tenants import load_tenants
from tasks.runs import writable

OVERRIDES_DIR = RULES_DIR / "overrides"
COLUMNS = (
    "tenant",
    "kind",
    "entity",
    "key",
    "target_key",
    "name",
    "value",
    "source",
    "confidence",
    "margin",
    "evidence",
    "reviewed",
    "decision",
)
KINDS = ("area", "link", "tenant", "created", "match")
ACCEPT = {"accept", "ok", "yes", "y", "keep"}
REJECT = {"reject", "no", "n", "remove"}
ARTIFACT_ROWS = 500


class ReviewFileError(ConfigError):
    """A review file cannot be imported: the file, its lines and the fix are named."""


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(RULES_DIR.parent))
    except ValueError:
        return str(path)


@dataclass
class Overrides:
    """One tenant's reviewed decisions (rules/overrides/<tenant>.csv)."""

    tenant: str
    rows: dict[tuple[str, str, str, str], dict] = field(default_factory=dict)  # (kind, entity, key, target) -> row
    file: str = ""

    def _evidence(self, row: dict) -> dict:
        return {"file": self.file, "decision": row["decision"]}

    def area(self, entity: str, key: str) -> dict | None:
        row = self.rows.get(("area", entity, key, ""))
        if row is None:
            return None
        return {"value": row["decision"], "evidence": self._evidence(row)}

    def links(self, junction: str) -> dict[tuple[str, str], dict]:
        return {
            (k[2], k[3]): {"decision": r["decision"], "evidence": self._evidence(r)}
            for k, r in self.rows.items()
            if k[0] == "link" and k[1] == junction
        }

    def reviewed(self, kind: str, entity: str, key: str, target: str = "") -> bool:
        return (kind, entity, key, target) in self.rows

    def unused(self, part) -> list[str]:
        """Overrides whose row (or link end) is not in this run's slice, as findings."""
        keys = {e: set(s.frame["legacy_key"].to_list()) if s.frame.height else set() for e, s in part.entities.items()}
        junctions = {j.name for j in JUNCTIONS}
        out = []
        for (kind, entity, key, target), row in sorted(self.rows.items()):
            if entity in junctions:
                j = junction_of(entity)
                ends = [(j.a, key)] + ([(j.b, target)] if kind == "link" else [])
            else:
                ends = [(entity, key)]
            if any(e not in keys for e, _ in ends):
                continue  # this run did not cover that entity
            missing = [f"{e} {k!r}" for e, k in ends if k not in keys[e]]
            if missing:
                out.append(
                    f"{self.file}: the {kind} decision {row['decision']!r} for {entity} {key!r}"
                    + (f" -> {target!r}" if kind == "link" else "")
                    + f" matches no row of {self.tenant} ({', '.join(missing)}: not in the sources any more); "
                    "remove the line or correct its key"
                )
        return out


def overrides_file(tenant: str, folder: Path | None = None) -> Path:
    return (folder or OVERRIDES_DIR) / f"{tenant}.csv"


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ReviewFileError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ReviewFileError(f"{path}: not UTF-8 text; save the review file as UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [
        c for c in ("tenant", "kind", "entity", "key", "target_key", "decision") if c not in (reader.fieldnames or [])
    ]
    if missing:
        raise ReviewFileError(
            f"{path}: missing column(s) {', '.join(missing)}; import the file `vital-etl review export` wrote, "
            f"with its header ({', '.join(COLUMNS)})"
        )
    return [(n, {k: (v or "").strip() for k, v in row.items() if k}) for n, row in enumerate(reader, start=2)]


def load_overrides(tenant: str, folder: Path | None = None) -> Overrides:
    """The tenant's overrides file (none: no overrides). Read again on every run."""
    path = overrides_file(tenant, folder)
    out = Overrides(tenant, file=_rel(path))
    if not path.exists():
        return out
    for _, row in _read_csv(path):
        if row.get("decision"):
            out.rows[(row["kind"], row["entity"], row["key"], row.get("target_key", ""))] = row
    return out


def _normalize(row: dict, where: str, rules, tenants: set[str]) -> tuple[dict | None, str | None]:
    """A filled review row checked and its decision normalized, or (None, the problem)."""
    kind, entity, decision = row.get("kind", ""), row.get("entity", ""), row["decision"].strip()
    if row.get("tenant") not in tenants:
        return (
            None,
            f"{where}: tenant {row.get('tenant')!r} is not in rules/tenants.yaml ({', '.join(sorted(tenants))})",
        )
    if kind not in KINDS:
        return None, f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}"
    if not row.get("key"):
        return None, f"{where}: the key is empty; keep the key column as exported"
    junctions = {j.name for j in JUNCTIONS}
    if kind == "area":
        if entity not in WITH_AREA:
            return None, f"{where}: {entity!r} has no functional area (areas: {', '.join(WITH_AREA)})"
        enum = rules.enum("functional_area")
        chosen = row.get("value", "") if decision.casefold() in ACCEPT else decision
        label = enum.map(chosen) if chosen else None
        if label is None:
            return None, (
                f"{where}: decision {decision!r} is not a functional area; write one of "
                f"{', '.join(enum.labels)}, or `ok` to keep {row.get('value')!r}"
            )
        return {**row, "decision": label}, None
    if kind == "link":
        if entity not in junctions:
            return None, f"{where}: {entity!r} is not a junction ({', '.join(sorted(junctions))})"
        if not row.get("target_key"):
            return None, f"{where}: a link decision needs target_key (the linked row's key)"
        if decision.casefold() in ACCEPT:
            return {**row, "decision": "accept"}, None
        if decision.casefold() in REJECT:
            return {**row, "decision": "reject"}, None
        return None, f"{where}: a link decision is `accept` or `reject`, not {decision!r}"
    if entity not in set(CATALOGUE_TABLES) | junctions:
        return None, f"{where}: {entity!r} is not a catalogue table or junction"
    if decision.casefold() in ACCEPT:
        return {**row, "decision": "ok"}, None
    fix = "rules/tenancy.yaml" if kind == "tenant" else "rules/references.yaml or the source"
    return None, f"{where}: a {kind} decision can only be `ok` (reviewed); to change it, edit {fix}"


def import_decisions(path: Path | str, folder: Path | None = None, rules=None) -> dict:
    """Validate a filled review file and merge its decisions into rules/overrides/<tenant>.csv
    (a later decision on the same row replaces the earlier one). All or nothing."""
    from tasks.normalize.rules import load_rules

    path = Path(path)
    rules = rules or load_rules()
    tenants = {t.slug for t in load_tenants().tenants}
    rows = _read_csv(path)
    filled, problems, empty = [], [], 0
    for line, row in rows:
        if not row.get("decision"):
            empty += 1
            continue
        ok, problem = _normalize(row, f"{path}:{line}", rules, tenants)
        if problem:
            problems.append(problem)
        else:
            filled.append(ok)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ReviewFileError(
            f"{len(problems)} decision(s) cannot be imported; nothing was imported:\n  "
            + "\n  ".join(problems[:10])
            + more
        )
    written, replaced = [], 0
    folder = folder or OVERRIDES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for tenant in sorted({r["tenant"] for r in filled}):
        target = overrides_file(tenant, folder)
        current = {}
        if target.exists():
            for _, r in _read_csv(target):
                current[(r["kind"], r["entity"], r["key"], r.get("target_key", ""))] = r
        for r in (r for r in filled if r["tenant"] == tenant):
            key = (r["kind"], r["entity"], r["key"], r.get("target_key", ""))
            replaced += key in current
            current[key] = {**r, "reviewed": "true"}
        _write_csv(target, [current[k] for k in sorted(current)])
        written.append(_rel(target))
    return {"imported": len(filled), "empty": empty, "replaced": replaced, "files": written}


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in COLUMNS})


# ---------------------------------------------------------------------------------------------
# etl.decisions: what the last run of each tenant decided


def write_decisions(conn: psycopg.Connection, tenant: str, rows: list[dict], run_id: str | None) -> int:
    """Make etl.decisions hold exactly `rows` for the tenant (unchanged rows are not touched)."""
    cols = (
        "kind",
        "entity",
        "legacy_key",
        "target_key",
        "name",
        "value",
        "source",
        "confidence",
        "margin",
        "evidence",
        "reviewed",
    )
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE decisions_stage (LIKE etl.decisions INCLUDING DEFAULTS) ON COMMIT DROP")
        with cur.copy(f"COPY decisions_stage (tenant_slug, run_id, {', '.join(cols)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(writable(  # NUL bytes and NaN from the sources never break the COPY
                    [tenant, run_id, r["kind"], r["entity"], r["key"], r["target_key"], r["name"], r["value"], r["source"],
                     r["confidence"], r["margin"], r["evidence"], r["reviewed"]]
                ))  # fmt: skip
        cur.execute(
            """DELETE FROM etl.decisions d WHERE d.tenant_slug = %s AND NOT EXISTS (
                 SELECT 1 FROM decisions_stage s WHERE (s.kind, s.entity, s.legacy_key, s.target_key)
                 = (d.kind, d.entity, d.legacy_key, d.target_key))""",
            (tenant,),
        )
        changed = ", ".join(c for c in cols if c not in ("kind", "entity", "legacy_key", "target_key"))
        cur.execute(
            f"""INSERT INTO etl.decisions AS d (tenant_slug, run_id, {", ".join(cols)})
                SELECT tenant_slug, run_id, {", ".join(cols)} FROM decisions_stage
                ON CONFLICT (tenant_slug, kind, entity, legacy_key, target_key) DO UPDATE SET
                  {", ".join(f"{c} = EXCLUDED.{c}" for c in (*changed.split(", "), "run_id"))}, decided_at = now()
                WHERE ({", ".join(f"d.{c}" for c in changed.split(", "))})
                  IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in changed.split(", "))})"""
        )
        return cur.rowcount


def read_decisions(conn: psycopg.Connection, tenant: str) -> list[dict]:
    """The tenant's decisions, lowest confidence first, as the review file lists them."""
    rows = conn.execute(
        """SELECT tenant_slug, kind, entity, legacy_key, target_key, name, value, source::text, confidence, margin,
                  evidence, reviewed
           FROM etl.decisions WHERE tenant_slug = %s
           ORDER BY confidence, kind, entity, legacy_key, target_key""",
        (tenant,),
    ).fetchall()
    out = []
    for t, kind, entity, key, target, name, value, source, conf, margin, evidence, reviewed in rows:
        out.append(
            {
                "tenant": t,
                "kind": kind,
                "entity": entity,
                "key": key,
                "target_key": target,
                "name": name or "",
                "value": value or "",
                "source": source,
                "confidence": round(float(conf), 3),
                "margin": "" if margin is None else round(float(margin), 3),
                "evidence": json.dumps(evidence, ensure_ascii=False, sort_keys=True),
                "reviewed": "true" if reviewed else "false",
                "decision": "",
            }
        )
    return out


def export_decisions(tenant: str, out: Path | str | None = None) -> tuple[Path, int]:
    """Write the review file of the tenant's last run; returns (path, rows)."""
    if tenant not in {t.slug for t in load_tenants().tenants}:
        raise ConfigError(f"unknown tenant {tenant!r}; known: {', '.join(t.slug for t in load_tenants().tenants)}")
    with connect(target_dsn(), autocommit=True) as conn:
        rows = read_decisions(conn, tenant)
    if not rows:
        raise ConfigError(
            f"etl.decisions has nothing for {tenant!r}: run `vital-etl migrate --tenant {tenant}` first "
            "(a dry run records nothing)"
        )
    path = Path(out) if out else Path(f"review-{tenant}.csv")
    _write_csv(path, rows)
    return path, len(rows)


@task(name="record-decisions", task_run_name="record-decisions-{run_id}", cache_policy=NO_CACHE, **IO_RETRIES)
def record_decisions(part, decided, run_id: str) -> dict:
    """After the load: etl.decisions holds this run's decisions; inferred links this run no
    longer makes are removed (only for junctions whose two ends the run covered); the review
    list is published as a table artifact. Returns the summary for the run report."""
    from tasks.links import prune_inferred
    from tasks.report import publish_table

    tenant, tenant_id = part.tenant.slug, str(part.tenant.id)
    rows = [d.row(tenant) for d in decided.decisions]
    with connect(target_dsn(), autocommit=True) as conn:
        written = write_decisions(conn, tenant, rows, run_id)
        pruned = {}
        for junction in decided.complete_links:
            frame = part.junctions.get(junction)
            with conn.transaction():
                pruned[junction] = prune_inferred(
                    conn, junction, tenant_id, frame.to_dicts() if frame is not None else []
                )
    columns = ("kind", "entity", "key", "target_key", "name", "value", "source", "confidence")
    publish_table(
        f"review-{tenant}",
        [{k: r[k] for k in columns} for r in rows[:ARTIFACT_ROWS]],
        f"Decisions vital-etl made for {tenant}, lowest confidence first (vital-etl review export --tenant {tenant})",
    )
    return {**decided.summary(), "written": written, "links_removed": pruned}
