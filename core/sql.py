"""Splitting SQL scripts into statements, so a failure can name the statement and its line."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the statement's first character in its file


def split_statements(script: str) -> list[Statement]:
    """Split SQL into statements at top-level semicolons, respecting quotes, comments and
    dollar-quoted bodies, so a failure can name the statement that failed."""
    out: list[Statement] = []
    i, n, start = 0, len(script), 0
    while i < n:
        c = script[i]
        if c == "-" and script.startswith("--", i):
            j = script.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and script.startswith("/*", i):
            j = script.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in ("'", '"'):
            j = i + 1
            while j < n:
                if script[j] == c:
                    if j + 1 < n and script[j + 1] == c:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
        elif c == "$":
            m = re.match(r"\$(\w*)\$", script[i:])
            if m and not (i > 0 and (script[i - 1].isalnum() or script[i - 1] == "_")):
                tag = m.group(0)
                j = script.find(tag, i + len(tag))
                i = n if j < 0 else j + len(tag)
            else:
                i += 1
        elif c == ";":
            _add_statement(out, script, start, i)
            i += 1
            start = i
        else:
            i += 1
    _add_statement(out, script, start, n)
    return out


def _add_statement(out: list[Statement], script: str, start: int, end: int) -> None:
    chunk = script[start:end]
    body = _strip_comments(chunk).strip()
    if not body:
        return
    lead = len(chunk) - len(chunk.lstrip())
    # skip leading comment lines so the reported line is the statement's own
    text = chunk.strip()
    while text.startswith("--"):
        nl = text.find("\n")
        text = "" if nl < 0 else text[nl + 1 :].lstrip()
    offset = start + lead + (len(chunk.strip()) - len(text))
    out.append(Statement(text=text, line=script.count("\n", 0, offset) + 1))


def _strip_comments(s: str) -> str:
    return re.sub(r"--[^\n]*", "", s)
