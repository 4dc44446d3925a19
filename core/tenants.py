"""The tenant model: definitions of rules/tenants.yaml, loaded and validated."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError
from core.identity import tenant_id
from core.settings import RULES_DIR
from core.yamlfile import read_yaml

TIERS = ("free", "starter", "professional", "enterprise")
STATUSES = ("active", "trial", "suspended", "inactive")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Tenant:
    slug: str
    name: str
    tier: str = "professional"
    status: str = "active"
    features: dict = field(default_factory=dict)
    legacy_ids: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    @property
    def id(self) -> uuid.UUID:
        return tenant_id(self.slug)


@dataclass(frozen=True)
class TenantRules:
    tenants: tuple[Tenant, ...]
    platform_legacy_ids: tuple[str, ...]

    def by_slug(self, slug: str) -> Tenant:
        for t in self.tenants:
            if t.slug == slug:
                return t
        raise ConfigError(f"unknown tenant {slug!r}; known: {', '.join(t.slug for t in self.tenants)}")


def _uuid_list(values, where: str) -> tuple[str, ...]:
    out = []
    for v in values or []:
        try:
            out.append(str(uuid.UUID(str(v))))
        except ValueError:
            raise ConfigError(f"{where}: {v!r} is not a UUID") from None
    return tuple(out)


def load_tenants(path: Path | str | None = None) -> TenantRules:
    """Read and validate the tenants file; every mistake is named with its place."""
    path = Path(path) if path else RULES_DIR / "tenants.yaml"
    data = read_yaml(path, "tenants file") or {}
    raw = data.get("tenants") if isinstance(data, dict) else None
    if not raw or not isinstance(raw, list):
        raise ConfigError(f"{path}: needs a non-empty list under 'tenants:'")
    tenants, seen_ids = [], {}
    for i, item in enumerate(raw):
        where = f"{path}: tenants[{i}]"
        if not isinstance(item, dict) or not item.get("slug") or not item.get("name"):
            raise ConfigError(f"{where}: each tenant needs 'slug' and 'name'")
        slug = str(item["slug"])
        if not _SLUG.match(slug):
            raise ConfigError(f"{where}: slug {slug!r} must be lower-case letters, digits and '-'")
        tier, status = item.get("tier", "professional"), item.get("status", "active")
        if tier not in TIERS:
            raise ConfigError(f"{where}: tier {tier!r} is not one of {', '.join(TIERS)}")
        if status not in STATUSES:
            raise ConfigError(f"{where}: status {status!r} is not one of {', '.join(STATUSES)}")
        legacy = _uuid_list(item.get("legacy_ids"), f"{where}.legacy_ids")
        for lid in legacy:
            if lid in seen_ids:
                raise ConfigError(f"{where}: legacy id {lid} is already used by tenant {seen_ids[lid]!r}")
            seen_ids[lid] = slug
        tenants.append(
            Tenant(
                slug=slug,
                name=str(item["name"]),
                tier=tier,
                status=status,
                features=dict(item.get("features") or {}),
                legacy_ids=legacy,
                labels=tuple(str(x) for x in item.get("labels") or ()),
            )
        )
    slugs = [t.slug for t in tenants]
    if len(set(slugs)) != len(slugs):
        raise ConfigError(f"{path}: duplicate tenant slugs in {slugs}")
    platform = _uuid_list((data.get("platform") or {}).get("legacy_ids"), f"{path}: platform.legacy_ids")
    return TenantRules(tuple(tenants), platform)
