"""The migration runner of bootstrap-schema: files, preflight, apply (lock + ledger), describe."""

from tasks.schema.apply import applied, apply_plan, ensure_vector, include_schema
from tasks.schema.describe import describe
from tasks.schema.files import Migration, discover
from tasks.schema.preflight import Plan, preflight

__all__ = [
    "Migration",
    "Plan",
    "applied",
    "apply_plan",
    "describe",
    "discover",
    "ensure_vector",
    "include_schema",
    "preflight",
]
