"""Knowledge documents into chunks for embedding: Markdown-heading aware.

A document is split at headings (outside fenced code blocks; a line of only '=' or '-' signs,
a comment banner, is no heading) into sections; each section keeps its heading path
("Workflows > Step 2"). Sections shorter than MIN_CHARS are merged into the next one. A longer
section is cut into pieces of at most CHUNK_CHARS characters:

- at line boundaries, a blank line (paragraph) preferred; a line longer than a piece can hold
  is cut at sentence ends, and a sentence that still does not fit at spaces;
- each piece starts with up to CHUNK_OVERLAP characters of whole lines (or whole sentences of a
  long line) from the end of the one before, so nothing cut at a boundary is lost to search;
- a piece that starts inside a table repeats the table's header and separator rows; a piece
  that ends inside a fenced code block closes it, and the next reopens it with the same fence.

Full coverage: every chunk records the span of the document it holds (`start`, `end`) and how
many characters it adds before and after the span (the repeated header, the fence lines):
content = added_before + document[start:end] + added_after, and the spans cover every
character of the document (rebuild() puts it back together, exactly).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHUNK_CHARS = 1200
CHUNK_OVERLAP = 150
MIN_CHARS = 200
UNIT_CHARS = CHUNK_CHARS // 2  # a line longer than this is cut into sentences
MAX_HEADER = CHUNK_CHARS // 3  # a longer table header is not repeated
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


@dataclass(frozen=True)
class Chunk:
    index: int
    heading: str
    content: str
    start: int = 0  # the span of the document the chunk holds
    end: int = 0
    before: int = 0  # characters added before the span (table header, reopened fence)
    after: int = 0  # characters added after it (closing fence)


@dataclass
class _Line:
    start: int
    end: int  # after its line break
    text: str  # without the line break
    fence: str | None  # the opening fence line of the block the line is in (None: outside)
    opens: bool  # the line opens a fence
    closes: bool  # the line closes one
    table: tuple[str, ...] | None  # header and separator rows of the table whose body holds the line


def _lines(text: str) -> list[_Line]:
    out: list[_Line] = []
    fence: str | None = None
    header: tuple[str, ...] | None = None
    rule_next = False
    pos = 0
    raw = text.splitlines(keepends=True)
    for i, line in enumerate(raw):
        body = line.rstrip("\r\n")
        m = _FENCE.match(body)
        opens = fence is None and m is not None
        closes = (
            fence is not None
            and m is not None
            and m.group(1)[0] == _marker(fence)[0]
            and len(m.group(1)) >= len(_marker(fence))
            and not m.group(2).strip()
        )
        inside = body if opens else fence
        in_table = None
        if inside is None:
            nxt = raw[i + 1].rstrip("\r\n") if i + 1 < len(raw) else ""
            if "|" in body and _TABLE_RULE.match(nxt) and not _TABLE_RULE.match(body):
                header, rule_next = (body, nxt), True  # a table: its header row, then the rule
            elif header and rule_next:
                rule_next = False
            elif header and "|" in body and body.strip():
                in_table = header
            else:
                header = None
        else:
            header = None
        out.append(_Line(pos, pos + len(line), body, inside, opens, closes, in_table))
        pos += len(line)
        if opens:
            fence = body
        elif closes:
            fence = None
    return out


def _marker(fence_line: str) -> str:
    m = _FENCE.match(fence_line)
    return m.group(1) if m else "```"


def _is_heading(line: _Line) -> re.Match | None:
    if line.fence is not None or line.opens:
        return None
    m = _HEADING.match(line.text)
    return m if m and any(c.isalnum() for c in m.group(2)) else None


def _sections(lines: list[_Line]) -> list[tuple[str, int, int]]:
    """(heading path, first line, end line) per section; the sections cover every line."""
    path: list[tuple[int, str]] = []
    sections: list[tuple[str, int, int]] = []
    heading, first = "", 0
    for i, line in enumerate(lines):
        m = _is_heading(line)
        if m and i > first:
            sections.append((heading, first, i))
            first = i
        if m:
            level = len(m.group(1))
            path = [(lv, t) for lv, t in path if lv < level] + [(level, m.group(2).strip())]
            heading = " > ".join(t for _, t in path)
    sections.append((heading, first, len(lines)))
    return sections


@dataclass
class _Unit:
    """A piece of a line (the whole line unless it is long): where a chunk may start and end."""

    start: int
    end: int
    line: _Line
    first: bool  # starts its line
    sentence: bool  # starts a line or a sentence (a clean place for an overlap to begin)
    blank: bool  # a blank line (a paragraph boundary after it)


def _units(text: str, lines: list[_Line]) -> list[_Unit]:
    out = []
    for line in lines:
        if line.end - line.start <= UNIT_CHARS:
            out.append(_Unit(line.start, line.end, line, True, True, not line.text.strip()))
            continue
        ends = [m.end() for m in _SENTENCE_END.finditer(text, line.start, line.end)]
        cuts = sorted({line.start, line.end, *ends})
        for a, b in zip(cuts, cuts[1:]):
            pieces = _by_words(text, a, b)
            for k, (x, y) in enumerate(pieces):
                out.append(_Unit(x, y, line, x == line.start, k == 0, False))
    return out


def _by_words(text: str, a: int, b: int) -> list[tuple[int, int]]:
    """A sentence longer than UNIT_CHARS cut after spaces (or hard, for a run without spaces)."""
    out = []
    while b - a > UNIT_CHARS:
        cut = text.rfind(" ", a + 1, a + UNIT_CHARS)
        cut = cut + 1 if cut > a else a + UNIT_CHARS
        out.append((a, cut))
        a = cut
    out.append((a, b))
    return out


def _before(unit: _Unit) -> str:
    """What a chunk starting at `unit` repeats: the open fence, or the table header."""
    line = unit.line
    if line.fence is not None and not line.opens:
        return line.fence + "\n"
    if line.table and unit.first:
        header = "\n".join(line.table) + "\n"
        return header if len(header) <= MAX_HEADER else ""
    return ""


def _after(text: str, unit: _Unit) -> str:
    """What a chunk ending with `unit` adds: the closing fence of a block it leaves open."""
    line = unit.line
    if line.fence is None or line.closes:
        return ""
    return ("" if text[unit.end - 1 : unit.end] == "\n" else "\n") + _marker(line.fence) + "\n"


def _pieces(text: str, units: list[_Unit], size: int, overlap: int) -> list[tuple[int, int]]:
    """Unit ranges [i, j) of the section's pieces; each starts with the overlap of the one before
    and ends further than it."""
    out: list[tuple[int, int]] = []
    i, done, n = 0, 0, len(units)
    while done < n:
        pre = len(_before(units[i]))
        fits = []
        for k in range(i + 1, n + 1):
            length = pre + units[k - 1].end - units[i].start + len(_after(text, units[k - 1]))
            if length > size and fits:
                break
            if k > done:
                fits.append(k)
        too_long = fits and pre + units[fits[0] - 1].end - units[i].start + len(_after(text, units[fits[0] - 1])) > size
        if i < done and (not fits or too_long):  # the overlap leaves no room: start where the last piece ended
            i = done
            continue
        if fits[-1] == n:
            end = n
        else:
            half = [k for k in fits if units[k - 1].end - units[i].start > size // 2] or fits
            paragraph = [k for k in half if units[k - 1].blank]
            line = [k for k in half if units[k].first]
            sentence = [k for k in half if units[k].sentence]
            end = (paragraph or line or sentence or half)[-1]
        out.append((i, end))
        done = end
        if end >= n:
            break
        start = end
        for c in range(end - 1, i, -1):
            if units[end].start - units[c].start > overlap:
                break
            if units[c].sentence and not units[c].blank:
                start = c
        i = start
    return out


def chunk_markdown(text: str, size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP) -> list[Chunk]:
    lines = _lines(text)
    if not lines:
        return []

    def span(first: int, end: int) -> str:
        return text[lines[first].start : lines[end - 1].end]

    merged: list[tuple[str, int, int]] = []
    for heading, first, end in _sections(lines):
        if merged and len(span(*merged[-1][1:]).strip()) < MIN_CHARS:
            prev_heading, prev_first, _ = merged.pop()
            merged.append((prev_heading or heading, prev_first, end))
        else:
            merged.append((heading, first, end))
    chunks: list[Chunk] = []
    for heading, first, end in merged:
        units = _units(text, lines[first:end])
        for i, j in _pieces(text, units, size, overlap):
            before, after = _before(units[i]), _after(text, units[j - 1])
            start, stop = units[i].start, units[j - 1].end
            content = before + text[start:stop] + after
            chunks.append(Chunk(len(chunks), heading, content, start, stop, len(before), len(after)))
    return chunks


def rebuild(chunks: list[Chunk]) -> str:
    """The document back from its chunks (overlaps and added lines dropped)."""
    out, pos = [], 0
    for c in sorted(chunks, key=lambda c: (c.start, c.end)):
        span = c.content[c.before : len(c.content) - c.after]
        if c.end > pos:
            out.append(span[max(pos - c.start, 0) :])
            pos = c.end
    return "".join(out)


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
                    "metadata": {
                        "document": doc["legacy_key"],
                        "chars": len(c.content),
                        "start": c.start,
                        "end": c.end,
                        "added_before": c.before,
                        "added_after": c.after,
                    },
                }
            )
    return rows
