"""The catalogue, declared once: every table vital-etl loads, as data.

Load order, undo order, the verify checks, junction resolution, similarity links, the
searchable tables and the tests all derive from these two lists. A new table is added here
(and in schema/); nothing else lists tables."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entity:
    """A catalogue table that rows of the sources become.

    searchable: the table has an embedding made from the text template of the same name
    (tasks/embed.py). parent: the column of a self-reference (parents load first).
    refs: a normalized reference column -> (entity it names, id column it fills).
    derived: tables computed from this one's rows (documents -> chunks), loaded right after it."""

    name: str
    searchable: bool = False
    has_area: bool = False
    parent: str | None = None
    refs: dict[str, tuple[str, str]] = field(default_factory=dict)
    derived: tuple[str, ...] = ()


@dataclass(frozen=True)
class Junction:
    """A link table between two entities (arrays of the sources become its rows).

    kind: the column that tells links of one pair apart (agent_relations.relation_type).
    similarity: links are also inferred (tasks/decide.py: title rules, then embedding similarity
    of the two ends' texts; rules/links.yaml), each with mapping_source and relevance_score."""

    name: str
    a: str
    b: str
    a_col: str
    b_col: str
    kind: str | None = None
    similarity: bool = False


# in load order: an entity comes after those its references and links point to
ENTITIES: tuple[Entity, ...] = (
    Entity("org_functions", has_area=True),
    Entity("org_departments", has_area=True),
    Entity("org_roles", has_area=True),
    Entity("org_responsibilities"),
    Entity("capabilities", searchable=True, has_area=True),
    Entity("tools", searchable=True),
    Entity("knowledge_domains", parent="parent_id", refs={"parent_ref": ("knowledge_domains", "parent_id")}),
    Entity(
        "knowledge_documents", refs={"domain_ref": ("knowledge_domains", "domain_id")}, derived=("knowledge_chunks",)
    ),
    Entity("personas", searchable=True, has_area=True),
    Entity("jobs_to_be_done", searchable=True, has_area=True),
    Entity("agents", searchable=True, has_area=True),
    Entity("prompts", searchable=True, has_area=True),
)

# tables that no source names: computed from an entity's rows
DERIVED: tuple[Entity, ...] = (Entity("knowledge_chunks", searchable=True),)

JUNCTIONS: tuple[Junction, ...] = (
    Junction("function_departments", "org_functions", "org_departments", "function_id", "department_id"),
    Junction("function_roles", "org_functions", "org_roles", "function_id", "role_id"),
    Junction("department_roles", "org_departments", "org_roles", "department_id", "role_id"),
    Junction("role_responsibilities", "org_roles", "org_responsibilities", "role_id", "responsibility_id"),
    Junction("agent_capabilities", "agents", "capabilities", "agent_id", "capability_id"),
    Junction("agent_knowledge_domains", "agents", "knowledge_domains", "agent_id", "knowledge_domain_id"),
    Junction("agent_tools", "agents", "tools", "agent_id", "tool_id"),
    Junction("agent_relations", "agents", "agents", "agent_id", "related_agent_id", kind="relation_type"),
    Junction(
        "capability_dependencies",
        "capabilities",
        "capabilities",
        "capability_id",
        "related_capability_id",
        kind="dependency_type",
    ),
    Junction("jtbd_personas", "jobs_to_be_done", "personas", "jtbd_id", "persona_id", similarity=True),
    Junction("agent_jtbds", "agents", "jobs_to_be_done", "agent_id", "jtbd_id", similarity=True),
    Junction("persona_roles", "personas", "org_roles", "persona_id", "role_id", similarity=True),
)

ENTITY_NAMES: tuple[str, ...] = tuple(e.name for e in ENTITIES)
_BY_NAME = {e.name: e for e in (*ENTITIES, *DERIVED)}
JUNCTION_BY_NAME = {j.name: j for j in JUNCTIONS}

# every catalogue table in load order: each entity followed by the tables derived from it
CATALOGUE_TABLES: tuple[str, ...] = tuple(t for e in ENTITIES for t in (e.name, *e.derived))
SEARCHABLE: tuple[str, ...] = tuple(t for t in CATALOGUE_TABLES if _BY_NAME[t].searchable)
SELF_REFERENCES: dict[str, str] = {e.name: e.parent for e in ENTITIES if e.parent}
REF_COLUMNS: dict[str, dict[str, tuple[str, str]]] = {e.name: dict(e.refs) for e in ENTITIES if e.refs}
# entities whose rows other rows name (a reference column's target, a junction's end): only their
# rows carry the codes and names that references are resolved by (tasks/normalize/refs.py)
REFERENCED: frozenset[str] = frozenset(
    {target for refs in REF_COLUMNS.values() for target, _ in refs.values()}
    | {end for j in JUNCTIONS for end in (j.a, j.b)}
)
SIMILARITY_LINKS: tuple[str, ...] = tuple(j.name for j in JUNCTIONS if j.similarity)
WITH_AREA: tuple[str, ...] = tuple(e.name for e in ENTITIES if e.has_area)


def entity(name: str) -> Entity:
    return _BY_NAME[name]


def junction(name: str) -> Junction:
    return JUNCTION_BY_NAME[name]
