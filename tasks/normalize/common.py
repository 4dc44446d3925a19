"""Small pure parsers for what the real exports contain: PostgreSQL array literals, JSON text
in cells, t/f booleans, numeric strings, literal \\n, NBSP, Notion "Title (url)" lists.

Each raises ValueError with a short reason on input it cannot read; the row is then
quarantined with that reason instead of being guessed at."""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from uuid import UUID

from core import jsontext

_SPACES = re.compile(r"[\u00a0\u2000-\u200b\u202f\u205f\u3000\ufeff]")
_NOTION_LINK = re.compile(r"\s*(.+?)\s*\((https?://[^)\s]*)\)\s*(?:,|$)")


def clean_text(value: str | None) -> str | None:
    """NBSP and other odd spaces to plain spaces, surrounding whitespace trimmed; '' -> None."""
    if value is None:
        return None
    value = _SPACES.sub(" ", value).strip()
    return value or None


def unescape_newlines(value: str | None) -> str | None:
    """Literal backslash-n (two characters, as in the agents export) to a real line break."""
    if value is None:
        return None
    return value.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\\t", "\t")


def parse_pg_array(value: str) -> list[str | None]:
    """A PostgreSQL array literal: {a,b,"c d","e\\"f",NULL} -> ['a', 'b', 'c d', 'e"f', None]."""
    s = value.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise ValueError(f"malformed array literal {value[:60]!r}: must start with '{{' and end with '}}'")
    body, items, i = s[1:-1], [], 0
    if not body.strip():
        return []
    while i <= len(body):
        while i < len(body) and body[i] == " ":
            i += 1
        if i < len(body) and body[i] == '"':
            i += 1
            buf = []
            while i < len(body) and body[i] != '"':
                if body[i] == "\\" and i + 1 < len(body):
                    i += 1
                buf.append(body[i])
                i += 1
            if i >= len(body):
                raise ValueError(f"malformed array literal {value[:60]!r}: unterminated quoted element")
            i += 1
            item: str | None = "".join(buf)
            while i < len(body) and body[i] == " ":
                i += 1
        else:
            j = i
            while j < len(body) and body[j] != ",":
                if body[j] in '{}"':
                    raise ValueError(f"malformed array literal {value[:60]!r}: unexpected {body[j]!r}")
                j += 1
            raw = body[i:j].strip()
            if raw == "":
                raise ValueError(f"malformed array literal {value[:60]!r}: empty element")
            item = None if raw.upper() == "NULL" else raw
            i = j
        items.append(item)
        if i < len(body) and body[i] != ",":
            raise ValueError(f"malformed array literal {value[:60]!r}: expected ',' after an element")
        i += 1
    return items


def parse_list(value: str | None) -> list[str]:
    """An array cell in any of the legacy forms: JSON array text, PostgreSQL literal, or empty.

    NULL elements and blank strings are dropped; elements are trimmed."""
    if value is None or not value.strip():
        return []
    s = value.strip()
    if s.startswith("["):
        try:
            data = jsontext.loads(s)
        except json.JSONDecodeError as exc:
            raise ValueError(f"malformed JSON array {s[:60]!r}: {exc.msg}") from None
        except ValueError as exc:
            raise ValueError(f"JSON array {s[:60]!r}: {exc}") from None
        if not isinstance(data, list):
            raise ValueError(f"expected a JSON array, got {type(data).__name__}")
        items = [x if isinstance(x, str) else json.dumps(x) for x in data if x is not None]
    elif s.startswith("{"):
        items = [x for x in parse_pg_array(s) if x is not None]
    else:
        raise ValueError(f"not an array: {s[:60]!r} (expected JSON [..] or a PostgreSQL {{..}} literal)")
    return [c for c in (clean_text(x) for x in items) if c]


def parse_uuid_list(value: str | None) -> list[str]:
    """parse_list, then every element must be a UUID (canonical lower-case form returned)."""
    out = []
    for item in parse_list(value):
        try:
            out.append(str(UUID(item)))
        except ValueError:
            raise ValueError(f"invalid UUID {item!r} in array") from None
    return out


_TRUE = {"t", "true", "yes", "y", "1", "on"}
_FALSE = {"f", "false", "no", "n", "0", "off"}


def parse_bool(value: str | None) -> bool | None:
    if value is None or not value.strip():
        return None
    v = value.strip().casefold()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value[:40]!r} (expected t/f, true/false, yes/no)")


def _decimal(value: str | None) -> Decimal | None:
    if value is None or not value.strip():
        return None
    try:
        d = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {value[:40]!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {value[:40]!r}")
    return d


INT_TYPES = {16: "a smallint", 32: "an integer", 64: "a bigint"}
FLOAT_MAX = Decimal("1.7976931348623157e308")


def parse_int(value: str | None, bits: int = 32) -> int | None:
    """A whole number that fits a `bits`-bit integer column. The range is checked on the
    Decimal before converting, so '1e99999999' is refused at once instead of built."""
    d = _decimal(value)
    if d is None:
        return None
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if not lo <= d <= hi:
        raise ValueError(f"{value[:40]!r} is out of range ({INT_TYPES.get(bits, 'the column')} holds {lo}..{hi})")
    if d != d.to_integral_value():
        raise ValueError(f"not a whole number: {value[:40]!r}")
    return int(d)


def parse_decimal(value: str | None, precision: int | None = None, scale: int = 0) -> float | None:
    """A number for a numeric(precision, scale) column (rounded to `scale` digits), or for a
    double precision one when precision is None; out of range is refused, never infinite."""
    d = _decimal(value)
    if d is None:
        return None
    limit = Decimal(10) ** (precision - scale) if precision else FLOAT_MAX
    if not -limit < d < limit or (precision and not -limit < round(d, scale) < limit):
        holds = f"numeric({precision},{scale}) holds less than {limit}" if precision else "a float holds about 1.8e308"
        raise ValueError(f"{value[:40]!r} is out of range ({holds} in absolute value)")
    return float(d)


_TS_FORMATS = (
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d",
    "%B %d, %Y %I:%M %p",
    "%B %d, %Y",
)


def parse_timestamp(value: str | None) -> datetime | None:
    """ISO-ish timestamps (with or without zone) and Notion's 'September 21, 2025 4:44 PM'."""
    if value is None or not value.strip():
        return None
    v = value.strip()
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        pass
    for fmt in _TS_FORMATS:
        try:
            return datetime.strptime(v, fmt)
        except ValueError:
            continue
    raise ValueError(f"not a timestamp: {v[:40]!r}")


def parse_json(value: str | None):
    """JSON text in a cell -> Python value; '' -> None."""
    if value is None or not value.strip():
        return None
    try:
        return jsontext.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON {value[:60]!r}: {exc.msg}") from None
    except ValueError as exc:
        raise ValueError(f"JSON {value[:60]!r}: {exc}") from None


def split_notion_links(value: str | None) -> list[str]:
    """Notion relation cells: 'A (https://www.notion.so/..), B, C (https://..)' -> titles.

    Titles may themselves contain commas; only the URL in parentheses ends an item."""
    if value is None or not value.strip():
        return []
    titles, pos, s = [], 0, value.strip()
    for m in _NOTION_LINK.finditer(s):
        if m.start() != pos:
            raise ValueError(f"malformed Notion link list near {s[pos : pos + 40]!r}")
        titles.append(clean_text(m.group(1)))
        pos = m.end()
    if pos != len(s):
        if titles:
            raise ValueError(f"malformed Notion link list near {s[pos : pos + 40]!r}")
        return [t for t in (clean_text(x) for x in s.split(",")) if t]  # plain titles, no URLs
    return [t for t in titles if t]


def split_codes(value: str | None) -> list[str]:
    """'RESP-001, RESP-002' -> ['RESP-001', 'RESP-002']."""
    if value is None:
        return []
    return [c for c in (clean_text(x) for x in value.split(",")) if c]


def parse_range(value: str | None) -> tuple[int | None, int | None]:
    """Free-text ranges: '10-15' -> (10, 15); '15+' -> (15, None); '7' -> (7, 7)."""
    if value is None or not value.strip():
        return None, None
    v = value.strip().replace(" ", "")

    def years(text: str) -> int:  # each end is a smallint column
        return parse_int(text, bits=16)

    m = re.fullmatch(r"(\d+)\s*[-–]\s*(\d+)\+?", v)
    if m:
        lo, hi = years(m.group(1)), years(m.group(2))
        if lo > hi:
            raise ValueError(f"range {value[:40]!r} runs backwards")
        return lo, hi
    m = re.fullmatch(r"(\d+)\+", v)
    if m:
        return years(m.group(1)), None
    if v.isdigit():
        return years(v), years(v)
    raise ValueError(f"not a range: {value[:40]!r} (expected '10-15', '15+' or '7')")


def ref_key(value: str) -> str:
    """How references are matched across entities: case, spacing, '-' and '_' ignored."""
    return re.sub(r"[\s_\-]+", " ", _SPACES.sub(" ", value)).strip().casefold()


_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_MD_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def markdown_title(text: str, path: str) -> str:
    """A Markdown document's title: its first real heading outside code fences (a line of only
    '=' or '-', a comment banner, is not one), else the file name without folder and extension."""
    fence = None
    for line in text.splitlines():
        m = _MD_FENCE.match(line)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence) and not line.strip()[len(marker) :].strip():
                fence = None
            continue
        if fence is None and (h := _MD_HEADING.match(line)) and any(c.isalnum() for c in h.group(2)):
            return clean_text(h.group(2)) or h.group(2)
    stem = path.rsplit("/", 1)[-1]
    return stem[:-3] if stem.lower().endswith(".md") else stem
