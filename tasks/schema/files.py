"""The schema files: ordered NNNN_name.sql migrations with checksums and {{placeholders}}."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import MigrationError, PreflightError
from core.settings import SCHEMA_DIR
from core.sql import Statement, split_statements

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# statements that end, open or split a transaction: in a file they would break its atomicity
_TRANSACTION_CONTROL = re.compile(
    r"^(?:/\*.*?\*/\s*)*(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b",
    re.I | re.S,
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    text: str

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def checksum(self) -> str:
        """sha256 of the file as written (placeholders unrendered)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(self, params: dict) -> str:
        def sub(m: re.Match) -> str:
            key = m.group(1)
            if key not in params:
                raise MigrationError(
                    f"{self.filename}: unknown placeholder {{{{{key}}}}}; known: {', '.join(sorted(params))}",
                    file=self.filename,
                )
            return str(params[key])

        return _PLACEHOLDER.sub(sub, self.text)

    def statements(self, params: dict) -> list[Statement]:
        """The rendered file's statements; a transaction-control statement is refused, since the
        runner applies each file in one transaction of its own (with its ledger row) and a COMMIT
        inside would end it half-way."""
        statements = split_statements(self.render(params))
        for i, stmt in enumerate(statements, start=1):
            found = _TRANSACTION_CONTROL.match(stmt.text)
            if found:
                word = " ".join(found.group(1).upper().split())
                raise MigrationError(
                    f"{self.filename}: statement {i} of {len(statements)} (line {stmt.line}) is {word}: a schema "
                    "file may not control transactions (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...); bootstrap-schema "
                    "applies each file in one transaction of its own, with its ledger row, so the file stays "
                    f"all-or-nothing. Remove the {word} statement(s) from the file. Nothing was changed.",
                    file=self.filename,
                    statement=stmt.text,
                    line=stmt.line,
                )
        return statements


def discover(folder: Path | str | None = None) -> list[Migration]:
    """The ordered migrations of a folder of NNNN_name.sql files."""
    folder = Path(folder) if folder else SCHEMA_DIR
    if not folder.is_dir():
        raise PreflightError(f"schema folder {folder} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        m = _FILE_NAME.match(path.name)
        if not m:
            raise PreflightError(f"{path}: schema files are named NNNN_lower_snake.sql (e.g. 0009_add_x.sql)")
        version = int(m.group(1))
        if version in found:
            raise PreflightError(f"{path}: version {version} is also used by {found[version].filename}")
        found[version] = Migration(version, m.group(2), path, path.read_text(encoding="utf-8"))
    if not found:
        raise PreflightError(f"schema folder {folder} has no NNNN_name.sql files")
    return [found[v] for v in sorted(found)]
