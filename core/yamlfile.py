"""YAML files people edit (rules, tenants, manifests): the one reader, with errors that name the
file. It refuses what YAML allows but a person never means: a key written twice in one mapping
(the first value would be silently lost) and aliases that expand into a huge document (an
"alias bomb": `a: &a [x, x]`, `b: &b [*a, *a]`, ...)."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.errors import ConfigError

MAX_NODES = 100_000  # values in the document once every alias is expanded


class RefusedYAML(yaml.YAMLError):
    """Valid YAML that vital-etl refuses (a duplicate key, an alias bomb)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: SafeLoader itself reports it
            if first is not key_node:
                raise RefusedYAML(
                    f"duplicate key {key!r} (first on line {first.start_mark.line + 1}); "
                    "a key may appear once in a mapping: merge the two entries",
                    key_node.start_mark.line + 1,
                )
        return super().construct_mapping(node, deep=deep)


def expanded_size(node, limit: int = MAX_NODES) -> int:
    """How many values `node` holds with every alias expanded (counted once per shared node,
    so this is fast even for an alias bomb); stops counting past `limit`."""
    sizes: dict[int, int] = {}

    def size(n) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = 1  # a recursive alias counts once
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(c) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        sizes[id(n)] = total = min(total, limit + 1)
        return total

    return size(node) if node is not None else 0


def parse_yaml(text: str):
    """The document in `text`; yaml.YAMLError on bad YAML, a duplicate key or an alias bomb."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if expanded_size(node) > MAX_NODES:
            raise RefusedYAML(f"its aliases (*name) expand to more than {MAX_NODES:,} values; write the values out")
        return loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise RefusedYAML("nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml(path: Path, what: str, error: type[ConfigError] = ConfigError):
    """The parsed file; a missing, unreadable or non-UTF-8 file or bad YAML is `error` naming the
    file and what it is."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder; give the {what} file itself") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: not UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 1]!r}); save it as UTF-8"
        ) from None
    try:
        return parse_yaml(text)
    except RefusedYAML as exc:
        raise error(f"{path}: {f'line {exc.line}: ' if exc.line else ''}{exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {_describe(exc)}") from None


def _describe(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: where, then what."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = ", ".join(x for x in (exc.context, exc.problem) if x)
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
    return " ".join(str(exc).split())
