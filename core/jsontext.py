"""JSON text from outside (export files, JSON in cells), read with bounds: what Python's json
module accepts but nothing downstream can hold is named instead of crashing later.

- an integer literal of more than MAX_INT_DIGITS digits (Python refuses to convert it), or a
  number too large for a float (`1e400` would become Infinity, which is not JSON),
- NaN and Infinity (Python reads them; JSON and PostgreSQL do not),
- a lone UTF-16 surrogate escape (`"\\ud800"`: not text; UTF-8 cannot encode it),
- nesting deeper than the parser's recursion allows.
"""

from __future__ import annotations

import json
import math

MAX_INT_DIGITS = 4000


class BigNumber:
    """A number literal that cannot be converted (too many digits, or infinite as a float),
    kept as its text so the record holding it can be named."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text if len(self.text) <= 24 else f"{self.text[:20]}... ({len(self.text)} characters)"

    def reason(self) -> str:
        if self.text in ("NaN", "Infinity", "-Infinity"):
            return f"{self.text} is not a JSON number"
        if len(self.text) > MAX_INT_DIGITS:
            return f"a number of {len(self.text)} digits (at most {MAX_INT_DIGITS})"
        return f"the number {self} is out of range (a float holds about 1.8e308)"


def _int(text: str) -> int | BigNumber:
    return int(text) if len(text) <= MAX_INT_DIGITS else BigNumber(text)


def _float(text: str) -> float | BigNumber:
    value = float(text)
    return value if math.isfinite(value) else BigNumber(text)


def _refuse(value):
    if isinstance(value, BigNumber):
        raise ValueError(value.reason())
    raise TypeError(f"{type(value).__name__} is not JSON")


def parse(text: str):
    """json.loads that never raises for a long integer (BigNumber instead, see `problem`);
    json.JSONDecodeError for bad syntax, ValueError for nesting too deep."""
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=BigNumber)
    except RecursionError:
        raise ValueError("nested too deeply (more levels of arrays and objects than can be read)") from None


def problem(value) -> str | None:
    """Why a parsed JSON value cannot be stored (a BigNumber, a lone surrogate, too deep), or None."""
    try:
        json.dumps(value, ensure_ascii=False, default=_refuse).encode("utf-8")
    except UnicodeEncodeError as exc:  # a ValueError too: first
        return f"a lone UTF-16 surrogate (\\u{ord(exc.object[exc.start]):04x}) is not text; fix the export's encoding"
    except ValueError as exc:
        return str(exc)
    except RecursionError:
        return "nested too deeply (more levels of arrays and objects than can be read)"
    return None


def loads(text: str):
    """parse, then refuse (ValueError) what `problem` names."""
    value = parse(text)
    why = problem(value)
    if why:
        raise ValueError(why)
    return value


def ascii_dump(value, limit: int = 500) -> str:
    """A value as JSON text that can always be stored (ASCII escapes), cut at `limit`."""
    try:
        return json.dumps(value, default=str)[:limit]
    except (ValueError, RecursionError):
        return "(unreadable)"
