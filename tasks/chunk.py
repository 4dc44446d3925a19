"""Knowledge documents into chunks for embedding: Markdown-heading aware.

A document is split at headings (outside fenced code blocks) into sections; each section
keeps its heading path ("Workflows > Step 2"). A section longer than CHUNK_CHARS is cut into
pieces of at most CHUNK_CHARS characters at paragraph, then sentence, then word boundaries,
each piece starting with the last CHUNK_OVERLAP characters of the one before, so a sentence
cut at a boundary is still whole in one chunk. Sections shorter than MIN_CHARS are merged
into the next one under the same parent heading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHUNK_CHARS = 1200
CHUNK_OVERLAP = 150
MIN_CHARS = 200
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Chunk:
    index: int
    heading: str
    content: str


def _sections(text: str) -> list[tuple[str, str]]:
    path: list[tuple[int, str]] = []
    sections, buf, fenced = [], [], False
    heading = ""
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        m = None if fenced else _HEADING.match(line)
        if m:
            if "".join(buf).strip():
                sections.append((heading, "\n".join(buf).strip()))
            buf = [line]
            level = len(m.group(1))
            path = [(lv, t) for lv, t in path if lv < level] + [(level, m.group(2).strip())]
            heading = " > ".join(t for _, t in path)
        else:
            buf.append(line)
    if "".join(buf).strip():
        sections.append((heading, "\n".join(buf).strip()))
    return sections


def _split(text: str, size: int, overlap: int) -> list[str]:
    if len(text) <= size:
        return [text]
    pieces, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            window = text[start:end]
            for sep in ("\n\n", "\n", ". ", " "):
                cut = window.rfind(sep)
                if cut > size // 2:
                    end = start + cut + len(sep)
                    break
        pieces.append(text[start:end].strip())
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return [p for p in pieces if p]


def chunk_markdown(text: str, size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP) -> list[Chunk]:
    merged: list[tuple[str, str]] = []
    for heading, body in _sections(text):
        if merged and len(merged[-1][1]) < MIN_CHARS:
            prev_heading, prev_body = merged.pop()
            merged.append((prev_heading or heading, f"{prev_body}\n\n{body}"))
        else:
            merged.append((heading, body))
    chunks = []
    for heading, body in merged:
        for piece in _split(body, size, overlap):
            chunks.append(Chunk(len(chunks), heading, piece))
    return chunks


def chunk_documents(documents: list[dict], tenant_id: str) -> list[dict]:
    """knowledge_chunks rows for a tenant's knowledge_documents rows (deterministic ids)."""
    from core.identity import row_id

    rows = []
    for doc in documents:
        for c in chunk_markdown(doc["content"]):
            key = f"{doc['legacy_key']}#{c.index}"
            rows.append(
                {
                    "id": str(row_id(tenant_id, "knowledge_chunks", key)),
                    "tenant_id": tenant_id,
                    "legacy_key": key,
                    "document_id": doc["id"],
                    "chunk_index": c.index,
                    "heading": c.heading or None,
                    "content": c.content,
                    "metadata": {"document": doc["legacy_key"], "chars": len(c.content)},
                }
            )
    return rows
