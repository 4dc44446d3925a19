"""Normalizers: one pure shape function per entity of the catalogue (frames in, frames out via
base.normalize_frame), and the normalize task that applies them."""

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.normalize.agents import shape_agent
from tasks.normalize.base import Normalized, normalize_frame
from tasks.normalize.catalogue import shape_capability, shape_tool
from tasks.normalize.jobs import shape_jtbd
from tasks.normalize.knowledge import shape_knowledge_document, shape_knowledge_domain
from tasks.normalize.org import shape_department, shape_function, shape_responsibility, shape_role
from tasks.normalize.personas import shape_persona
from tasks.normalize.prompts import shape_prompt
from tasks.normalize.reuse import load_stage, save_stage, stage_key

SHAPES = {
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


@task(name="normalize", task_run_name="normalize-{entity}", cache_policy=NO_CACHE)
def normalize(entity: str, files, rules, labels, keep: bool = False, folder: str | None = None) -> Normalized:
    """The entity's extracted batch files (tasks/extract.py ExtractedFiles) -> valid rows,
    junction links and rejects. The shaping is pure; its result is read back instead when the
    same inputs were normalized before (reuse.py), and stored for the next run when `keep`
    (never in a dry run or plan: they write nothing). labels: the entity's tenant-label file.
    folder: where the rows' long texts go (spill.py), `<folder>/<entity>.text.<n>.parquet`."""
    key = stage_key(entity, files.digest, rules, labels)
    reused = load_stage(entity, key, folder)
    if reused is not None:
        get_run_logger().info("%s: inputs unchanged since a stored normalize stage; reused it", entity)
        return reused
    batches = (pl.read_parquet(p) for p in files.paths)
    out = normalize_frame(entity, batches, rules, SHAPES[entity], labels=labels, spill_to=folder)
    if keep:
        save_stage(entity, key, out)
    return out
