"""Knowledge domains (two seed shapes: the slug hierarchy and the dotted-id 'full' file) and
knowledge documents (Markdown files)."""

from __future__ import annotations

import hashlib

from tasks.normalize.base import Rec, RowError
from tasks.normalize.common import markdown_title, parse_bool, parse_int, parse_list


def shape_knowledge_domain(r: Rec, rules) -> dict:
    key = r.require("slug", "domain_id")
    name = r.require("name", "domain_name")
    depth = r.parse("depth_level", lambda v: parse_int(v, bits=16))  # smallint
    if depth is not None and depth < 0:
        raise RowError(f"depth_level: {depth} is negative")
    return {
        "legacy_key": key,
        "name": name,
        "slug": r.get("slug"),
        "description": r.text("description", "domain_description_llm"),
        "parent_ref": r.get("parent_slug", "parent_domain_id"),
        "domain_path": r.get("domain_path"),
        "depth_level": depth,
        "domain_type": r.get("domain_type"),
        "is_active": r.parse("is_active", parse_bool) is not False,
        "metadata": {},
        "_codes": [r.peek("slug"), r.peek("id"), r.peek("domain_id"), r.peek("domain_path")],
        "_aliases": [name],
    }


def shape_knowledge_document(r: Rec, rules) -> dict:
    key = r.require("path")
    content = r.raw.get("content")
    r.used.add("content")
    legacy_vector = r.parse("embedding", parse_list)  # re-embedded locally; only its size is kept
    if content is None or not content.strip():
        raise RowError("empty document: nothing to chunk or embed")
    title = r.get("title") or markdown_title(content, key)
    return {
        "legacy_key": key,
        "title": title,
        "source_path": key,
        "content": content,
        "content_sha256": hashlib.sha256(content.encode("utf-8")).hexdigest(),
        "byte_size": len(content.encode("utf-8")),
        "domain_ref": r.get("domain", "knowledge_domain"),
        "metadata": {"legacy_embedding_dims": len(legacy_vector)} if legacy_vector else {},
        "_aliases": [title],
    }
