"""The schema files: ordered NNNN_name.sql migrations with checksums and {{placeholders}}."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import MigrationError, PreflightError
from core.settings import SCHEMA_DIR

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


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
