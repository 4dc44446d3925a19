"""Inference quality against the hand-made labels of bench/quality/ (rubric: RUBRIC.md):
functional-area agreement per entity (JTBDs, prompts, roles) and link precision (persona ->
JTBD, agent -> JTBD), next to the figures measured before issue 11 (bench/quality/baseline.json).

It runs what migrate-tenant runs, without a database: extract and normalize the real exports
(bench/quality/manifest.yaml), slice each tenant, and the decide step (tasks/decide.py) with the
bundled embedding model. A labelled row counts once: its area is right when it is right in every
tenant the row is loaded into; a link counts once whichever tenant holds it.

    python bench/quality.py [--manifest FILE] [--cache FILE]

Prints the table and writes bench/results/quality.json.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from collections import Counter
from pathlib import Path

import numpy as np
from quality_score import read_area_labels, read_link_labels, score_areas, score_links

from core.settings import model_spec
from sources.manifest import load_manifest
from tasks.decide import decide_slice
from tasks.extract import extract_entity, read_labels
from tasks.normalize import SHAPES
from tasks.normalize.base import normalize_frame
from tasks.normalize.resolve import slice_tenant
from tasks.normalize.rules import load_rules
from tasks.review import Overrides

from common import ROOT, save, table

HERE = Path(__file__).resolve().parent / "quality"
TARGETS = {"jtbd": 0.85, "prompt": 0.85, "role": 0.85, "persona_jtbd": 0.80, "agent_jtbd": 0.80}
AREAS = {
    "jtbd": ("jobs_to_be_done", "jtbd_areas"),
    "prompt": ("prompts", "prompt_areas"),
    "role": ("org_roles", "role_areas"),
}
LINKS = {"persona_jtbd": ("jtbd_personas", "persona_jtbd", True), "agent_jtbd": ("agent_jtbds", "agent_jtbd", False)}


class Encoder:
    """texts -> vectors with the bundled model; identical texts encoded once (optionally kept
    in a pickle between runs)."""

    def __init__(self, cache: Path | None):
        self.path = cache
        self.known = pickle.loads(cache.read_bytes()) if cache and cache.exists() else {}
        self.encoded = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        from tasks.model import encode

        spec = model_spec()
        missing = sorted({t for t in texts if t not in self.known})
        if missing:
            self.known.update(zip(missing, encode(spec, missing)))
            self.encoded += len(missing)
            if self.path:
                self.path.write_bytes(pickle.dumps(self.known))
        return np.array([self.known[t] for t in texts], dtype=np.float32).reshape(len(texts), spec.dim)


def run(manifest_path: Path, cache: Path | None) -> dict:
    rules = load_rules()
    manifest = load_manifest(manifest_path)
    labels = {e: read_labels(s, manifest) for e, s in manifest.tenant_labels.items()}
    normalized = {
        e: normalize_frame(e, extract_entity(manifest, e).frame, rules, SHAPES[e], labels=labels.get(e))
        for e in manifest.entities
    }
    encoder = Encoder(cache)
    slices, decided = {}, {}
    for tenant in rules.tenants.tenants:
        part = slice_tenant(normalized, tenant, rules.create_missing)
        decided[tenant.slug] = decide_slice(part, rules, encoder, overrides=Overrides(tenant.slug))
        slices[tenant.slug] = part
    out: dict = {"areas": {}, "links": {}, "facts": {}}
    for name, (entity, label_file) in AREAS.items():
        found: dict[str, set[str]] = {}
        sources = Counter()
        for part in slices.values():
            rows = part.entities[entity].rows
            for key, area, src in zip(rows["legacy_key"], rows["functional_area"], rows["functional_area_source"]):
                found.setdefault(key, set()).add(area)
                sources[src] += 1
        # a row counts once: right when its area is right in every tenant it is loaded into
        per = {key: next(iter(a)) if len(a) == 1 else " | ".join(sorted(a)) for key, a in found.items()}
        out["areas"][name] = score_areas(per, read_area_labels(label_file)) | {"sources": dict(sources)}
    for name, (junction, label_file, flip) in LINKS.items():
        made, reach, by_source = set(), set(), Counter()
        lab = read_link_labels(label_file)
        for part in slices.values():
            from core.catalogue import junction as junction_of

            j = junction_of(junction)
            keys = {e: dict(zip(part.entities[e].rows["id"], part.entities[e].rows["legacy_key"])) for e in (j.a, j.b)}
            frame = part.junctions.get(junction)
            if frame is not None and frame.height:
                ms = frame["mapping_source"].fill_null("automated") if "mapping_source" in frame.columns else None
                for i, (a, b) in enumerate(zip(frame[j.a_col], frame[j.b_col])):
                    pair = (keys[j.b][b], keys[j.a][a]) if flip else (keys[j.a][a], keys[j.b][b])
                    made.add(pair)
                    if pair[0] in lab:
                        by_source[ms[i] if ms is not None else "automated"] += 1
            owners = keys[j.b] if flip else keys[j.a]
            targets = keys[j.a] if flip else keys[j.b]
            reach |= {(o, t) for o in owners.values() if o in lab for t in targets.values()}
        out["links"][name] = score_links(made, lab, reach) | {"by_mapping_source": dict(by_source)}
    hubs = Counter()
    for part in slices.values():
        frame = part.junctions.get("agent_jtbds")
        if frame is not None and frame.height:
            hubs.update(frame["jtbd_id"].to_list())
    out["facts"]["most_agents_on_one_jtbd"] = max(hubs.values()) if hubs else 0
    out["facts"].update(facts(slices, rules))
    out["decisions"] = {slug: d.summary() for slug, d in decided.items()}
    out["texts_encoded"] = encoder.encoded
    return out


def facts(slices: dict, rules) -> dict:
    """What the issue asks to hold on the real data."""
    from tasks.normalize.areas import map_value

    part = next(iter(slices.values()))
    caps = part.entities["capabilities"].rows
    cmc = [a for a, c in zip(caps["functional_area"], caps["category"]) if c == "technical_cmc"]
    prompts = part.entities["prompts"].rows
    safety = [a for a, c in zip(prompts["functional_area"], prompts["category"]) if c == "safety"]
    functions = {
        k: a
        for k, a in zip(
            part.entities["org_functions"].rows["id"], part.entities["org_functions"].rows["functional_area"]
        )
    }
    contradict = 0
    for entity, junction, col in (
        ("org_roles", "function_roles", "role_id"),
        ("org_departments", "function_departments", "department_id"),
    ):
        rows = part.entities[entity].rows
        frame = part.junctions.get(junction)
        mine: dict[str, set[str]] = {}
        if frame is not None:
            for f, x in zip(frame["function_id"], frame[col]):
                mine.setdefault(x, set()).add(functions[f])
        for rid, area, ev in zip(rows["id"], rows["functional_area"], rows["functional_area_evidence"]):
            named = {e["area"] for e in json.loads(ev).get("explicit", []) if e["column"] == "function_titles"}
            allowed = mine.get(rid, set()) | named
            if allowed and area not in allowed:
                contradict += 1
    del map_value
    return {
        "technical_cmc_capabilities": dict(Counter(cmc)),
        "safety_prompts": dict(Counter(safety)),
        "roles_and_departments_contradicting_their_functions": contradict,
    }


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", default=str(HERE / "manifest.yaml"))
    ap.add_argument("--cache", help="keep encoded texts in this pickle between runs")
    args = ap.parse_args()
    start = time.perf_counter()
    after = run(Path(args.manifest), Path(args.cache) if args.cache else None)
    before = json.loads((HERE / "baseline.json").read_text())
    rows = []
    for name in ("jtbd", "prompt", "role"):
        b, a = before["areas"][name], after["areas"][name]
        rows.append(
            {
                "measure": f"{name} area agreement",
                "labels": a["labelled"],
                "before": pct(b["accuracy"]),
                "before (alt ok)": pct(b["accuracy_alt"]),
                "after": pct(a["accuracy"]),
                "after (alt ok)": pct(a["accuracy_alt"]),
                "target": pct(TARGETS[name]),
            }
        )
    for name in ("persona_jtbd", "agent_jtbd"):
        b, a = before["links"][name], after["links"][name]
        rows.append(
            {
                "measure": f"{name.replace('_', ' -> ')} link precision",
                "labels": a["labelled_owners"],
                "before": f"{pct(b['precision'])} of {b['links']}",
                "before (alt ok)": pct(b["precision_lenient"]),
                "after": f"{pct(a['precision'])} of {a['links']}",
                "after (alt ok)": pct(a["precision_lenient"]),
                "target": pct(TARGETS[name]),
            }
        )
    print(table(rows, ["measure", "labels", "before", "before (alt ok)", "after", "after (alt ok)", "target"]))
    print(
        f"\nlink recall (labelled relevant pairs linked, of those whose ends share a tenant): persona -> JTBD "
        f"{pct(before['links']['persona_jtbd']['recall'])} -> {pct(after['links']['persona_jtbd']['recall'])}, "
        f"agent -> JTBD {pct(before['links']['agent_jtbd']['recall'])} -> {pct(after['links']['agent_jtbd']['recall'])}"
    )
    print(f"most agents linked to one JTBD: {after['facts']['most_agents_on_one_jtbd']}")
    print(f"facts: {json.dumps({k: v for k, v in after['facts'].items() if k != 'most_agents_on_one_jtbd'})}")
    for slug, s in after["decisions"].items():
        print(f"{slug}: {s['decisions']} decisions {s['by_kind']}, {s['below_threshold']} below {s['review_below']}")
    payload = {"before": before, "after": after, "targets": TARGETS, "seconds": round(time.perf_counter() - start, 1)}
    path = save("quality", payload)
    print(f"\n{path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
