"""YAML files people edit (rules, tenants, manifests): read with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.errors import ConfigError


def read_yaml(path: Path, what: str, error: type[ConfigError] = ConfigError):
    """The parsed file; a missing file or bad YAML is `error` naming the file and what it is."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
