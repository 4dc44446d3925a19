"""Normalizers: one pure shape function per entity (frames in, frames out via base.normalize_frame).

ENTITIES is the load order: an entity comes after those its links and references point to."""

from tasks.normalize.agents import shape_agent
from tasks.normalize.catalogue import shape_capability, shape_tool
from tasks.normalize.jobs import shape_jtbd
from tasks.normalize.knowledge import shape_knowledge_document, shape_knowledge_domain
from tasks.normalize.org import shape_department, shape_function, shape_responsibility, shape_role
from tasks.normalize.personas import shape_persona
from tasks.normalize.prompts import shape_prompt

ENTITIES = {
    "org_functions": shape_function,
    "org_departments": shape_department,
    "org_roles": shape_role,
    "org_responsibilities": shape_responsibility,
    "capabilities": shape_capability,
    "tools": shape_tool,
    "knowledge_domains": shape_knowledge_domain,
    "knowledge_documents": shape_knowledge_document,
    "personas": shape_persona,
    "jobs_to_be_done": shape_jtbd,
    "agents": shape_agent,
    "prompts": shape_prompt,
}

# every catalogue table in load order: the entities, with knowledge_chunks (derived from
# knowledge_documents) right after the documents
CATALOGUE_TABLES = tuple(t for e in ENTITIES for t in ((e, "knowledge_chunks") if e == "knowledge_documents" else (e,)))
