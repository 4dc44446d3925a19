"""make fidelity: every record of the real VITAL exports (../shared/vital) compared field by
field with what vital-etl loads for it, per tenant. Prints per source: records loaded /
quarantined, and fields kept, converted (documented conversions), kept in metadata, linked,
lost and changed; writes bench/results/fidelity.json. Exits 1 when anything is lost or changed.

    .venv/bin/python bench/fidelity.py [--manifest sources/manifests/vital.yaml] [--shared DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tasks.fidelity import CONVERSIONS, compare, prepared_targets, summary_table
from tasks.normalize.rules import load_rules

from common import ROOT, save, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default=str(ROOT / "sources" / "manifests" / "vital.yaml"))
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "vital"))
    args = parser.parse_args()
    rules = load_rules()
    reports = compare(Path(args.shared), prepared_targets(args.manifest, rules), rules)
    rows = summary_table(reports)
    print(table(rows, list(rows[0])))
    conversions = {}
    for r in reports.values():
        for k, n in r.conversions.items():
            conversions[k] = conversions.get(k, 0) + n
    print("\nconversions used (fields):")
    for k, n in sorted(conversions.items()):
        print(f"  {k:16} {n:6}  {CONVERSIONS[k]}")
    problems = [e for r in reports.values() for e in r.examples]
    for p in problems[:40]:
        print("  LOST/CHANGED", p)
    save("fidelity", {"sources": rows, "conversions": conversions, "problems": problems})
    bad = sum(r["lost"] + r["changed"] + r["records_lost"] for r in rows)
    print(f"\n{'OK' if not bad else 'NOT OK'}: {bad} field(s) or record(s) lost or changed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
