"""Scoring against the hand-made labels of bench/quality/labels (rubric: bench/quality/RUBRIC.md).

Areas: accuracy strict (the label) and with the borderline alternative accepted (a note
`BORDERLINE; alt=X`). Links: precision strict (relevant = 1) and lenient (a `BORDERLINE`
relevant = 0 also counts), over every link made for a labelled persona/agent; any JTBD not
listed for a labelled persona/agent is not relevant (the labels list complete relevant sets).
Recall: the share of the labelled relevant pairs that were linked, among the pairs whose two
ends share a tenant (a link can only join rows of one tenant)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

LABELS = Path(__file__).resolve().parent / "quality" / "labels"
ALIASES = {"R&D": "Research & Development"}


def _alts(note: str) -> set[str]:
    m = re.match(r"\s*BORDERLINE\s*;\s*alt=([^;]+)", note or "")
    if not m:
        return set()
    text = m.group(1).strip()
    if text in ("IT/Digital",):
        return {text}
    return {ALIASES.get(p.strip(), p.strip()) for p in text.split("/")}


def read_area_labels(name: str) -> dict[str, tuple[str, set[str]]]:
    """key -> (area, alternatives)."""
    with open(LABELS / f"{name}.csv", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    out = {}
    for row in rows[1:]:
        key, _name, area, note = (row + [""] * 4)[:4]
        out[key] = (area, _alts(note))
    return out


def read_link_labels(name: str) -> dict[str, dict[str, tuple[int, bool]]]:
    """owner key -> jtbd code -> (relevant, borderline)."""
    out: dict[str, dict[str, tuple[int, bool]]] = {}
    with open(LABELS / f"{name}.csv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            owner = row.get("persona_key") or row.get("agent_id")
            borderline = (row.get("note") or "").strip().startswith("BORDERLINE")
            out.setdefault(owner, {})[row["jtbd_code"]] = (int(row["relevant"]), borderline)
    return out


def score_areas(predicted: dict[str, str], labels: dict[str, tuple[str, set[str]]]) -> dict:
    found = [k for k in labels if k in predicted]
    strict = sum(predicted[k] == labels[k][0] for k in found)
    lenient = sum(predicted[k] == labels[k][0] or predicted[k] in labels[k][1] for k in found)
    wrong = sorted(
        (k, predicted[k], labels[k][0])
        for k in found
        if predicted[k] != labels[k][0] and predicted[k] not in labels[k][1]
    )
    return {
        "labelled": len(labels),
        "found": len(found),
        "accuracy": round(strict / len(found), 4) if found else None,
        "accuracy_alt": round(lenient / len(found), 4) if found else None,
        "wrong": [{"key": k, "got": g, "label": w} for k, g, w in wrong],
    }


def score_links(
    links: set[tuple[str, str]],
    labels: dict[str, dict[str, tuple[int, bool]]],
    reachable: set[tuple[str, str]] | None = None,
) -> dict:
    """links: (owner key, jtbd code) pairs made (any tenant); reachable: pairs whose ends share
    a tenant (for recall)."""
    mine = sorted(p for p in links if p[0] in labels)
    strict = sum(labels[o].get(j, (0, False))[0] == 1 for o, j in mine)
    lenient = sum(labels[o].get(j, (0, False))[0] == 1 or labels[o].get(j, (0, False))[1] for o, j in mine)
    relevant = {(o, j) for o, js in labels.items() for j, (rel, _) in js.items() if rel == 1}
    if reachable is not None:
        relevant &= reachable
    hit = relevant & set(mine)
    owners = {o for o, _ in mine}
    return {
        "labelled_owners": len(labels),
        "owners_linked": len(owners),
        "links": len(mine),
        "precision": round(strict / len(mine), 4) if mine else None,
        "precision_lenient": round(lenient / len(mine), 4) if mine else None,
        "recall": round(len(hit) / len(relevant), 4) if relevant else None,
        "wrong": [f"{o} -> {j}" for o, j in mine if labels[o].get(j, (0, False))[0] != 1],
    }
