"""The bundled sample: a deterministic generator of a legacy VITAL catalogue, shaped like the
real one and carrying every kind of problem the real data has, at any size.

It builds two things:
- a legacy database (tables `agents`, `capabilities`, `prompts`, `jtbd_core`,
  `knowledge_documents` in the source database): text and UUID arrays, a JTBD table without
  functional area, free-text statuses and business functions, knowledge documents with legacy
  1536-dim vectors;
- export files beside it (JSON with everything-as-a-string and PostgreSQL array literals, a
  tenant-label file, a dashboard CSV with JSON text in cells, Notion CSVs with a BOM and
  'Title (url)' lists, JSONL, Parquet, Markdown documents).

Planted problems (each ends loaded by a rule, or quarantined with a reason): NULL business
functions (inferred), synonyms (Clinical Development, Pharmacovigilance, R&D, inactive,
yearly), an unknown enum value, a malformed array literal, an invalid UUID in an array, an
unknown legacy tenant id, a duplicate natural key across sources, a missing required field,
a wrong type, a CSV row with a missing cell, a malformed JSONL line, NBSP and literal \\n, an
unresolvable link, a BOM and a junk title line.

`scale` multiplies the row counts of agents, capabilities, prompts and jobs-to-be-done.
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import psycopg
from psycopg import sql

DH_ID, PHARMA_ID, PLATFORM_ID = (
    "684f6c2c-b50d-4726-ad92-c76c3b785a89",
    "c6d221f8-1e8d-4dd9-86c5-d640ad6bf30b",
    "c1977eb4-cb2e-4cf7-8cf8-4ac71e27a244",
)
UNKNOWN_TENANT_ID = "99999999-9999-4999-8999-999999999999"
BUSINESS_FUNCTIONS = [
    "Operations",
    "Research & Development",
    "Clinical Development",
    "Regulatory Affairs",
    "IT/Digital",
    "Commercial",
    "Pharmacovigilance",
    "Quality",
    "Business Development",
    "Manufacturing",
    "Legal",
    "Medical Affairs",
    "R&D",
    None,
]
SPECIALTIES = [
    "pharmacovigilance signal detection",
    "regulatory submission planning",
    "payer value dossier",
    "clinical trial design",
    "medical information response",
    "formulary positioning",
    "real-world evidence study",
    "SaMD classification",
    "GMP deviation review",
    "KOL engagement",
    "launch readiness",
    "HEOR modelling",
    "digital therapeutics validation",
    "publication planning",
    "contract review",
    "supply chain risk",
    "biostatistics analysis",
    "data privacy assessment",
]
CAPABILITY_WORDS = [
    "signal_detection",
    "case_processing",
    "dossier_writing",
    "protocol_design",
    "endpoint_selection",
    "payer_negotiation",
    "budget_impact_modelling",
    "literature_review",
    "kol_mapping",
    "label_review",
    "deviation_analysis",
    "capa_management",
    "sample_size_calculation",
    "evidence_synthesis",
    "medical_writing",
    "claims_review",
    "market_sizing",
    "risk_assessment",
]
KNOWLEDGE_DOMAINS = [
    "pharmacovigilance",
    "regulatory-affairs",
    "market-access",
    "clinical-development",
    "medical-affairs",
    "digital-health",
    "quality-management",
    "manufacturing",
]
STATUSES = ["inactive", "inactive", "inactive", "active", "testing", "development"]
JTBD_PHRASES = [
    ("preparing regulatory submissions", "a checklist of FDA and EMA requirements", "file on time"),
    ("planning clinical development strategy", "trial design benchmarks", "reduce development risk"),
    ("detecting safety signals", "signal detection dashboards across adverse event sources", "protect patients"),
    ("building a payer value dossier", "HEOR evidence and budget impact models", "secure reimbursement"),
    ("launching a digital therapeutic", "app engagement analytics", "drive adoption"),
    ("coordinating with partners through the year", "a shared plan", "stay aligned"),
    ("hiring a field medical team", "recruitment and onboarding playbooks", "scale MSL coverage"),
    ("negotiating licensing deals", "partnership term benchmarks", "close the deal"),
]
NBSP = "\u00a0"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class Sample:
    """Everything generated, before any I/O."""

    tables: dict[str, list[dict]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    frames: dict[str, pl.DataFrame] = field(default_factory=dict)  # written as Parquet


def generate(scale: int = 1, seed: int = 7) -> Sample:
    """The sample at `scale` (1: about 500 rows in all). Same scale and seed, same bytes."""
    if scale < 1:
        raise ValueError("scale must be >= 1")
    rng = random.Random(seed)
    s = Sample()
    caps = _capabilities(rng, 20 * scale)
    s.tables["capabilities"] = caps
    agents = _agents(rng, 40 * scale, caps)
    s.tables["agents"] = agents
    s.tables["prompts"] = _prompts(rng, 60 * scale)
    s.tables["jtbd_core"] = _jtbds(rng, 30 * scale)
    s.tables["knowledge_documents"] = _legacy_docs(rng)
    s.files["exports/agents_export.json"] = _agents_export(rng, agents, 10 * scale, caps)
    s.files["exports/agent_tenant_labels.json"] = _labels(rng, agents)
    s.files["exports/prompts_dashboard.csv"] = _prompts_csv(rng, 20 * scale)
    s.files["exports/jtbd_extra.jsonl"] = _jtbd_jsonl(rng)
    s.files["exports/personas.json"], s.files["exports/dh_personas.json"] = _personas()
    s.files["exports/tools.json"] = _tools()
    s.files["exports/knowledge_domains.json"] = _domains()
    s.files.update(_notion())
    s.files.update(_markdown())
    s.frames["exports/capabilities_extra.parquet"] = _capability_extras()
    return s


# --- legacy tables ----------------------------------------------------------------------------
def _capabilities(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        word = CAPABILITY_WORDS[i % len(CAPABILITY_WORDS)] + ("" if i < len(CAPABILITY_WORDS) else f"_{i}")
        rows.append(
            {
                "id": _uuid(rng),
                "name": word,
                "slug": word.replace("_", "-"),
                "description": f"Capability for {word.replace('_', ' ')}.",
                "category": rng.choice(["clinical", "regulatory", "market_access", "analytical", "operational"]),
                "complexity_level": rng.choice(["expert", "advanced", "intermediate"]),
                "depends_on": [],
                "enables": [],
            }
        )
    for i, row in enumerate(rows[1:], start=1):
        row["depends_on"] = [rows[rng.randrange(i)]["id"]]
    rows[-1]["enables"] = [rows[0]["id"], "00000000-0000-4000-8000-00000000beef"]  # an unresolvable link
    return rows


def _agents(rng: random.Random, n: int, caps: list[dict]) -> list[dict]:
    rows = []
    for i in range(n):
        spec = SPECIALTIES[i % len(SPECIALTIES)]
        title = spec.title() + ("" if i < len(SPECIALTIES) else f" {i}")
        rows.append(
            {
                "id": _uuid(rng),
                "name": title.lower().replace(" ", "_"),
                "display_name": title,
                "description": f"Supports {spec} for pharma and digital-health teams.",
                "system_prompt": f"YOU ARE: {title}.\\n\\nYOU DO: {spec}.",
                "model": rng.choice(["gpt-4", "gpt-4o-mini"]),
                "temperature": rng.choice([0.2, 0.5, 0.7]),
                "max_tokens": rng.choice([2000, 4000]),
                "capabilities": [c["name"] for c in rng.sample(caps, min(3, len(caps)))],
                "knowledge_domains": rng.sample(KNOWLEDGE_DOMAINS, 2),
                "business_function": BUSINESS_FUNCTIONS[i % len(BUSINESS_FUNCTIONS)],
                "department": None if i % 3 else "Information Technology",
                "role": "Senior Specialist",
                "tier": 1 + i % 3,
                "status": STATUSES[i % len(STATUSES)],
                "compatible_agents": [],
                "incompatible_agents": [],
                "prerequisite_agents": [],
                "created_at": f"2025-10-{1 + i % 28:02d} 08:38:37.317",
            }
        )
    for i, row in enumerate(rows[1:], start=1):
        row["compatible_agents"] = [rows[i - 1]["id"]]
    rows[0]["business_function"] = "Astrology"  # unknown value, no synonym: quarantined
    rows[1]["display_name"] = f"{NBSP}{rows[1]['display_name']}{NBSP}"
    return rows


def _prompts(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        allowed = [[PLATFORM_ID, DH_ID, PHARMA_ID], [], [DH_ID], [PHARMA_ID], [PLATFORM_ID]][i % 5]
        rows.append(
            {
                "id": _uuid(rng),
                "prompt_code": f"USR-{i:05d}",
                "name": f"Prompt {i}: {SPECIALTIES[i % 18]}",
                "slug": f"prompt-{i}",
                "description": None if i % 7 == 0 else f"Helps with {SPECIALTIES[i % 18]}.",
                "detailed_prompt": f"You are an expert in {SPECIALTIES[i % 18]}.\\nAnswer with evidence.",
                "category": rng.choice(["general", "clinical", "regulatory", "market-access", "safety"]),
                "complexity": rng.choice(["advanced", "intermediate", "expert"]),
                "tags": ["sample", SPECIALTIES[i % 18].split()[0]],
                "allowed_tenants": allowed,
                "is_active": True,
                "created_at": "2025-12-11 10:00:00",
            }
        )
    rows[3]["allowed_tenants"] = [UNKNOWN_TENANT_ID]  # names no tenant: quarantined
    return rows


def _jtbds(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        situation, need, outcome = JTBD_PHRASES[i % len(JTBD_PHRASES)]
        rows.append(
            {
                "id": _uuid(rng),
                "code": f"JTBD_{i + 1:03d}",
                "name": situation,
                "description": f"When {situation}, I need {need}, so I can {outcome}",
                "job_category": rng.choice(["strategic", "operational", "analytical"]),
                "complexity": rng.choice(["medium", "high", "very_high"]),
                "frequency": ["monthly", "yearly", "quarterly", "weekly"][i % 4],
                "status": "active",
                "validation_score": round(0.6 + (i % 4) / 10, 2),
                "metadata": {
                    "persona_code": "",
                    "sector": "Multi-sector",
                    "source": "Digital Health JTBD Library Complete.md" if i % 2 else "Persona Master Catalogue v6.0",
                },
            }
        )
    rows[4]["validation_score"] = 1.7  # wrong range: quarantined
    return rows


def _legacy_docs(rng: random.Random) -> list[dict]:
    return [
        {
            "id": _uuid(rng),
            "title": f"Legacy brief {i}",
            "path": f"legacy/brief-{i}.md",
            "content": f"# Legacy brief {i}\n\nNotes about {SPECIALTIES[i]}.\n\n## Details\n\n"
            + " ".join([SPECIALTIES[(i + k) % 18] for k in range(30)]),
            "embedding": [round(rng.uniform(-1, 1), 4) for _ in range(1536)],
        }
        for i in range(3)
    ]


# --- export files ------------------------------------------------------------------------------
def _pg_array(items: list[str]) -> str:
    def quote(x: str) -> str:
        return '"' + x.replace('"', '\\"') + '"' if any(c in x for c in ' ,"{}') else x

    return "{" + ",".join(quote(x) for x in items) + "}"


def _agents_export(rng: random.Random, db_agents: list[dict], n: int, caps: list[dict]) -> bytes:
    """Like the real agents.json: every value a string, arrays as PostgreSQL literals."""
    rows = []
    for i in range(n):
        title = f"Export Agent {i}"
        rows.append(
            {
                "id": _uuid(rng),
                "name": title.lower().replace(" ", "_"),
                "display_name": title,
                "description": f"Exported agent for {SPECIALTIES[i % 18]}",
                "system_prompt": f"YOU ARE: {title}.\\n\\nWHEN UNSURE: escalate.",
                "temperature": "0.70",
                "max_tokens": "4000",
                "tier": str(1 + i % 3),
                "capabilities": _pg_array([caps[i % len(caps)]["name"], "Protocol development"]),
                "knowledge_domains": _pg_array([KNOWLEDGE_DOMAINS[i % 8]]),
                "business_function": ["Clinical Development", "Regulatory Affairs", "Pharmacovigilance"][i % 3],
                "status": "inactive",
                "is_custom": "f",
                "is_public": "t",
                "created_at": "2025-10-04 08:38:37.317",
            }
        )
    rows[0]["capabilities"] = "{unterminated,array"  # malformed array literal
    rows[1]["name"] = None  # missing required field
    rows[2]["temperature"] = "warm"  # wrong type
    duplicate = {
        k: None if v is None else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
        for k, v in db_agents[5].items()
    }
    rows.append(duplicate)  # same id as a legacy-DB agent
    return json.dumps(rows, indent=2, ensure_ascii=False).encode()


def _labels(rng: random.Random, agents: list[dict]) -> bytes:
    out = []
    for i, a in enumerate(agents):
        tenants = [["pharma"], ["pharma", "digital_health"], ["digital_health"], ["pharma"]][i % 4]
        out.append({"agent_id": a["id"], "agent_name": a["display_name"], "tier": "EXPERT", "tenants": tenants})
    return json.dumps(out, indent=2).encode()


def _prompts_csv(rng: random.Random, n: int) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(
        [
            "id",
            "prompt_code",
            "name",
            "slug",
            "detailed_prompt",
            "category",
            "complexity",
            "tags",
            "allowed_tenants",
            "is_active",
            "expert_validated",
        ]
    )
    for i in range(n):
        allowed = json.dumps([[PLATFORM_ID, DH_ID, PHARMA_ID], [DH_ID], []][i % 3])
        w.writerow(
            [
                _uuid(rng),
                f"SYS-{i:05d}",
                f"System prompt {i}",
                f"system-prompt-{i}",
                f"Line one for {SPECIALTIES[i % 18]}.\nLine two.",
                "regulatory",
                "advanced",
                json.dumps(["system", "sample"]),
                "" if i == 1 else allowed,
                "true",
                "false",
            ]
        )
    text = buf.getvalue() + '"bad-row","SYS-BAD","Missing cells"\r\n'  # a row with too few cells
    return text.encode()


def _jtbd_jsonl(rng: random.Random) -> bytes:
    lines = [
        json.dumps(
            {
                "code": "JTBD_X01",
                "name": "auditing GMP deviations",
                "description": "When auditing GMP deviations, I need CAPA tracking, so I can pass inspection",
                "job_category": "operational",
                "complexity": "high",
                "frequency": "as needed",
            }
        ),
        '{"code": "JTBD_X02", "name": broken json}',
        json.dumps(
            {
                "code": "JTBD_X03",
                "name": "working with words through the night",
                "description": "When working with words through the night, I need rest",
            }
        ),
    ]
    return ("\n".join(lines) + "\n").encode()


def _personas() -> tuple[bytes, bytes]:
    ma = [
        {
            "name": t,
            "slug": t.lower().replace(" ", "-").replace("/", ""),
            "title": t,
            "tagline": dept,
            "seniority_level": level,
            "pain_points": [],
            "goals": [],
            "key_responsibilities": [],
            "is_active": True,
            "validation_status": "approved",
            "metadata": {
                "persona_id": f"P{i + 1:03d}",
                "sector": "Pharmaceutical & Life Sciences",
                "function": f"Medical Affairs - {dept}",
                "team_size": "50-500+",
            },
        }
        for i, (t, dept, level) in enumerate(
            [
                ("VP Medical Affairs", "Global Leadership", "executive"),
                ("Medical Science Liaison", "Field Medical", "mid"),
                ("HEOR Director", "Health Economics", "senior"),
                ("Medical Information Manager", "Medical Information", "mid"),
                ("Publication Planner", "Publications", "senior"),
            ]
        )
    ]
    dh = [
        {
            "code": f"P0{i + 1}_{code}",
            "name": name,
            "unique_id": f"PERSONA-P0{i + 1}-{code}",
            "expertise_level": "EXPERT",
            "years_experience": years,
            "education": ["MD"],
            "typical_titles": [name],
            "decision_authority": "HIGH",
            "capabilities": ["Strategy"],
            "key_responsibilities": ["Own the roadmap"],
            "department": dept,
            "description": f"{name} at a DTx startup.",
        }
        for i, (code, name, years, dept) in enumerate(
            [
                ("CMO", "Chief Medical Officer", "15+", "Clinical Development"),
                ("PM", "Digital Health Product Manager", "5-10", "Product"),
                ("RA", "Regulatory Lead", "8-12", "Regulatory Affairs"),
                ("CTO", "Chief Technology Officer", "ten", "Engineering"),
            ]
        )
    ]
    return json.dumps(ma, indent=2).encode(), json.dumps(dh, indent=2).encode()


def _tools() -> bytes:
    tools = [
        {
            "name": n,
            "slug": n.lower().replace(" ", "-"),
            "description": f"{n} integration.",
            "tool_type": t,
            "integration_name": n.lower().replace(" ", "_"),
            "is_active": True,
            "tags": ["sample", t],
            "metadata": {"vendor": "Sample Inc", "tier": 1 + i % 3},
        }
        for i, (n, t) in enumerate(
            [
                ("PubMed Search", "api"),
                ("FDA Label Lookup", "api"),
                ("R Statistical Software", "statistical"),
                ("Medidata Rave", "edc"),
                ("ClinicalTrials Registry", "research_tool"),
            ]
        )
    ]
    tools[0]["endpoint_url"] = "https://example.invalid/pubmed"
    return json.dumps(tools, indent=2).encode()


def _domains() -> bytes:
    roots = [("Pharmaceuticals", "pharmaceuticals"), ("Digital Health", "digital-health-root")]
    rows = [
        {
            "name": n,
            "slug": s,
            "description": f"{n} industry.",
            "parent_slug": None,
            "domain_path": s,
            "depth_level": 0,
            "domain_type": "industry",
            "is_active": True,
        }
        for n, s in roots
    ]
    for slug in KNOWLEDGE_DOMAINS:
        parent = roots[1][1] if slug == "digital-health" else roots[0][1]
        rows.append(
            {
                "name": slug.replace("-", " ").title(),
                "slug": slug,
                "description": f"All about {slug}.",
                "parent_slug": parent,
                "domain_path": f"{parent}.{slug.replace('-', '_')}",
                "depth_level": 1,
                "domain_type": "function",
                "is_active": True,
            }
        )
    return json.dumps(rows, indent=2).encode()


def _csv_bytes(header: list[str], rows: list[list[str]], bom: bool = True) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    return (("\ufeff" if bom else "") + buf.getvalue().rstrip("\r\n")).encode()


def _link(title: str) -> str:
    return f"{title} (https://www.notion.so/{title.replace(' ', '-')}-2753dedf98568?pvs=21)"


def _notion() -> dict[str, bytes]:
    functions = ["Research & Development", "Clinical Development", "Regulatory Affairs", "Pharmacovigilance"]
    departments = ["Drug Discovery", "Clinical Operations", "Global Regulatory", "Drug Safety"]
    roles = [
        "Chief Scientific Officer",
        "Clinical Trial Manager",
        "Regulatory Affairs Director",
        "Safety Physician",
        "Formulation Scientist",
        "Formulation Scientist",
    ]
    resps = ["Set R&D Strategy", "Run Trials", "File Submissions", "Detect Signals"]
    files = {
        "exports/notion/functions.csv": _csv_bytes(
            ["Department_Name", "Description", "Roles", "Unique_ID", "🏫 Departments"],
            [
                [f, f"The {f} function", _link(roles[i]), f"FUNC-{i + 1:03d}", _link(departments[i])]
                for i, f in enumerate(functions)
            ],
        ),
        "exports/notion/departments.csv": _csv_bytes(
            [
                "Department_Name",
                "Data_Classification",
                "Department_ID",
                "Department_Type",
                "Description",
                "Mapped_to_Functions",
                "Mapped_to_Roles",
                "Roles",
                "Unique_ID",
                "🏫 Functions",
            ],
            [
                [
                    d,
                    "",
                    "",
                    "",
                    f"{d} department",
                    f"FUNC-{i + 1:03d}",
                    f"ROLE-{i + 1:03d}",
                    _link(roles[i]),
                    f"DEPT-{i + 1:03d}",
                    _link(functions[i]),
                ]
                for i, d in enumerate(departments)
            ]
            + [["Medical Affairs - Launch", "Restricted", "VP-DEPT-3", "Medical Affairs", "", "", "", "", "", ""]],
        ),
        "exports/notion/roles.csv": _csv_bytes(
            [
                "Name",
                "Description",
                "Mapped_to_Departments",
                "Mapped_to_Functions",
                "Mapped_to_Responsibilities",
                "Responsibilities",
                "Unique_ID",
                "🏫 Departments",
                "🏫 Functions",
            ],
            [
                [
                    r,
                    f"{r} role",
                    f"DEPT-{min(i, 3) + 1:03d}",
                    f"FUNC-{min(i, 3) + 1:03d}",
                    f"RESP-{min(i, 3) + 1:03d}, RESP-{630 - i}",
                    _link(resps[min(i, 3)]),
                    f"ROLE-{i + 1:03d}",
                    _link(departments[min(i, 3)]),
                    _link(functions[min(i, 3)]),
                ]
                for i, r in enumerate(roles)
            ],
        ),
        "exports/notion/responsibilities.csv": _csv_bytes(
            ["Name", "Description", "Mapped_to_VITAL_Path_Use_Cases", "Roles", "Unique_ID"],
            [[r, f"{r}.", f"UC-00{i + 1}: sample", _link(roles[i]), f"RESP-{i + 1:03d}"] for i, r in enumerate(resps)],
        ),
    }
    return files


def _markdown() -> dict[str, bytes]:
    docs = {}
    for i, spec in enumerate(SPECIALTIES[:5]):
        body = (
            f"# {spec.title()}\n\nAn overview of {spec}.\n\n## 🎯 Workflow\n\n| step | owner |\n|---|---|\n"
            f"| plan | lead |\n| run | team |\n\n```text\nPROMPT: act as an expert in {spec}\n```\n\n"
            f"## Evidence\n\n" + " ".join(f"Paragraph about {spec} ({k})." for k in range(40)) + "\n"
        )
        docs[f"knowledge/{i:02d}-{spec.replace(' ', '-')}.md"] = body.encode()
    docs["knowledge/empty-draft.md"] = b"\n"  # an empty document: quarantined
    return docs


def _capability_extras() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "capability_name": ["contract_analysis", "privacy_impact_assessment"],
            "capability_slug": ["contract-analysis", "privacy-impact-assessment"],
            "display_name": ["Contract Analysis", "Privacy Impact Assessment"],
            "description": ["Reviews contracts.", "Assesses privacy impact."],
            "category": ["legal", "legal"],
            "complexity_level": ["advanced", "basic"],
            "is_active": [True, True],
        }
    )


# --- I/O: write the files, build the legacy database ---------------------------------------------
LEGACY_DDL = {
    "agents": """id uuid PRIMARY KEY, name text, display_name text, description text, system_prompt text,
        model text, temperature numeric(3,2), max_tokens integer, capabilities text[], knowledge_domains text[],
        business_function varchar(100), department text, role text, tier integer, status text,
        compatible_agents uuid[], incompatible_agents uuid[], prerequisite_agents uuid[],
        created_at timestamp""",
    "capabilities": """id uuid PRIMARY KEY, name text, slug text, description text, category text,
        complexity_level text, depends_on uuid[], enables uuid[]""",
    "prompts": """id uuid PRIMARY KEY, prompt_code text, name text, slug text, description text,
        detailed_prompt text, category text, complexity text, tags text[], allowed_tenants uuid[],
        is_active boolean, created_at timestamp""",
    "jtbd_core": """id uuid PRIMARY KEY, code text, name text, description text, job_category text,
        complexity text, frequency text, status text, validation_score numeric, metadata jsonb""",
    "knowledge_documents": "id uuid PRIMARY KEY, title text, path text, content text, embedding vector(1536)",
}


def sample_dir() -> Path:
    """Where the bundled sample's export files are written: $VITAL_HOME/sample."""
    from core.settings import vital_home

    return vital_home() / "sample"


def write_files(sample: Sample, folder: Path) -> list[Path]:
    written = []
    for rel, data in sample.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    for rel, frame in sample.frames.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path)
        written.append(path)
    return written


def build_legacy_db(sample: Sample, dsn: str) -> dict[str, int]:
    """(Re)create the legacy tables in `dsn` and COPY the sample rows in."""
    counts = {}
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for table, ddl in LEGACY_DDL.items():
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table), sql.SQL(ddl)))
            rows = sample.tables[table]
            columns = list(rows[0])
            copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            with conn.cursor().copy(copy) as cp:
                for row in rows:
                    cp.write_row([_copy_value(row[c]) for c in columns])
            counts[table] = len(rows)
    return counts


def _copy_value(value):
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, list) and value and isinstance(value[0], float):
        return "[" + ",".join(map(str, value)) + "]"
    return value
