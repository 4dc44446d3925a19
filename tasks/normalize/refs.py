"""How a reference finds the row it names (pure): exact identifiers first, then names.

A row is known by its legacy key and codes (slug, code, legacy id: `_codes`, compared exactly)
and by its names (`_aliases`: names, titles and the codes again, compared with common.ref_key,
which ignores case, spaces, '-' and '_'). A reference is looked up in tiers and the first tier
that knows it decides:

    code  only the exact identifiers (a Notion code list: 'ROLE-049')
    name  only the folded names ('Formulation Scientist')
    any   exact identifiers, then folded names ('regulatory_affairs' is a key of one row and
          the folded name of another: the key wins, the two are never merged)

A tier that finds several rows is ambiguous: the caller links nothing and reports the candidates.
"""

from __future__ import annotations

from collections import defaultdict

import polars as pl

from tasks.normalize.common import clean_text, ref_key

MATCHES = ("code", "name", "any")


class Index:
    def __init__(self, rows: pl.DataFrame):
        self.exact: dict[str, set[str]] = defaultdict(set)
        self.folded: dict[str, set[str]] = defaultdict(set)
        if rows.height == 0:
            return
        keys = rows["legacy_key"].to_list()
        codes = rows["_codes"].to_list() if "_codes" in rows.columns else [[] for _ in keys]
        names = rows["_aliases"].to_list() if "_aliases" in rows.columns else [[] for _ in keys]
        for key, row_codes, row_names in zip(keys, codes, names):
            for code in {key, *(row_codes or ())}:
                self.exact[code].add(key)
                self.folded[ref_key(code)].add(key)
            for name in row_names or ():
                self.folded[name].add(key)

    def add(self, key: str, name: str) -> None:
        """A row made during resolution (a created row) under its key and the name it stands for."""
        self.exact[key].add(key)
        self.folded[ref_key(name)].add(key)

    def lookup(self, ref: str | None, match: str = "any") -> list[str]:
        """The legacy keys `ref` names (sorted): [] none, one, or several (ambiguous)."""
        ref = clean_text(ref)
        if ref is None:
            return []
        exact = self.exact.get(ref, set())
        if match == "code" or (match == "any" and exact):
            return sorted(exact)
        return sorted(self.folded.get(ref_key(ref), set()))
