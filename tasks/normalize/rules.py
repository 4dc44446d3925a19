"""The mapping rules of rules/*.yaml, loaded and validated once, then passed to the pure
normalizers: enum synonyms, functional-area inference, tenant assignment."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError
from core.settings import RULES_DIR
from core.tenants import TenantRules, load_tenants
from core.yamlfile import read_yaml


def enum_key(value: str) -> str:
    """The spelling-insensitive form used to match enum values and synonyms."""
    return re.sub(r"[\s_\-]+", " ", value.replace("\u00a0", " ")).strip().casefold()


@dataclass(frozen=True)
class EnumMap:
    name: str
    labels: tuple[str, ...]
    lookup: dict[str, str]
    source: str

    def map(self, value: str) -> str | None:
        return self.lookup.get(enum_key(value))

    def unknown_message(self, value: str) -> str:
        return (
            f"{self.source}: {self.name} {value!r} has no mapping; add it under {self.name}.synonyms "
            f"(known: {', '.join(self.labels)})"
        )


@dataclass(frozen=True)
class Keyword:
    """One whole-word keyword; lower case matches any case, a capital letter means as written."""

    text: str
    pattern: re.Pattern
    anchor: str = ""  # lower-case text any ASCII match contains (its first word): a cheap pre-check

    @classmethod
    def compile(cls, text: str) -> Keyword:
        prefix = text.endswith("*")
        body = re.escape(text.rstrip("*")).replace(r"\ ", r"\s+")
        flags = 0 if any(c.isupper() for c in text) else re.IGNORECASE
        tail = r"[\w-]*" if prefix else ""
        words = text.rstrip("*").lower().split()
        anchor = words[0] if words and words[0].isascii() else ""
        return cls(text, re.compile(r"(?<!\w)" + body + tail + r"(?!\w)", flags), anchor)

    def search(self, text: str, lowered: str | None = None) -> bool:
        """Whether the keyword matches `text`; lowered: text.lower() of an ASCII text, to skip the
        regex where the anchor is absent (exact: an ASCII text matches only with its anchor)."""
        if lowered is not None and self.anchor not in lowered:
            return False
        return self.pattern.search(text) is not None


@dataclass(frozen=True)
class AreaModel:
    """Settings of the area classifier (rules/functional_areas.yaml `model`)."""

    train_from: tuple[str, ...] = ()
    min_rows: int = 3
    remove_components: int = 1
    min_margin: float = 0.06


@dataclass(frozen=True)
class AreaRules:
    """rules/functional_areas.yaml: the evidence for a row's functional area, strongest first.

    explicit: entity -> (columns that name an area, the entity's own value -> area map; a value
    mapped to None names no area). descriptions: area -> prototype texts of the model."""

    fields: dict[str, tuple[str, ...]]
    areas: tuple[tuple[str, tuple[Keyword, ...]], ...]
    default: str
    explicit: dict[str, tuple[tuple[str, ...], dict[str, str | None]]] = field(default_factory=dict)
    descriptions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    model: AreaModel = AreaModel()
    confidence: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class KeywordTenantRule:
    columns: tuple[str, ...]
    words: tuple[Keyword, ...]
    tenants: tuple[str, ...]


@dataclass(frozen=True)
class EntityTenancy:
    label_key: str | None = None
    legacy_ids: str | None = None
    keywords: tuple[KeywordTenantRule, ...] = ()
    default: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rules:
    tenants: TenantRules
    enums: dict[str, EnumMap]
    areas: AreaRules
    tenancy: dict[str, EntityTenancy] = field(default_factory=dict)
    create_missing: dict[str, tuple[str, ...]] = field(default_factory=dict)  # junction -> origins
    fingerprint: str = ""  # sha256 of the files read (empty: unknown, so never reused from disk)

    def enum(self, name: str) -> EnumMap:
        return self.enums[name]


def _read(path: Path) -> dict:
    data = read_yaml(path, "rule file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _load_enums(path: Path) -> dict[str, EnumMap]:
    out = {}
    for name, spec in _read(path).items():
        labels = tuple(str(x) for x in (spec or {}).get("labels") or ())
        if not labels:
            raise ConfigError(f"{path}: {name} needs a list of labels")
        lookup = {enum_key(label): label for label in labels}
        for label, spellings in ((spec or {}).get("synonyms") or {}).items():
            if label not in labels:
                raise ConfigError(
                    f"{path}: {name}.synonyms maps to {label!r}, which is not one of its labels ({', '.join(labels)})"
                )
            for s in spellings or ():
                key = enum_key(str(s))
                if lookup.get(key, label) != label:
                    raise ConfigError(f"{path}: {name}: {s!r} maps to both {lookup[key]!r} and {label!r}")
                lookup[key] = label
        out[name] = EnumMap(name, labels, lookup, f"rules/{path.name}")
    return out


CONFIDENCE_KINDS = (
    "override",
    "explicit",
    "explicit_contradicted",
    "explicit_choice",
    "inherited",
    "inherited_contradicted",
    "model_max",
    "rule",
    "default",
)


def _load_areas(path: Path, labels: tuple[str, ...]) -> AreaRules:
    data = _read(path)

    def area_label(value, where: str) -> str:
        if value not in labels:
            raise ConfigError(f"{path}: {where}: {value!r} is not a functional area ({', '.join(labels)})")
        return value

    areas = []
    for area, words in (data.get("areas") or {}).items():
        areas.append((area_label(area, "areas"), tuple(Keyword.compile(str(w)) for w in words or ())))
    default = area_label(data.get("default"), "default")
    fields = {entity: tuple(cols) for entity, cols in (data.get("fields") or {}).items()}
    explicit = {}
    for entity, spec in (data.get("explicit") or {}).items():
        spec = spec or {}
        values = {
            enum_key(str(k)): (None if v is None else area_label(v, f"explicit.{entity}.values"))
            for k, v in (spec.get("values") or {}).items()
        }
        explicit[entity] = (tuple(spec.get("columns") or ()), values)
    descriptions = {
        area_label(area, "descriptions"): tuple(str(t) for t in texts or ())
        for area, texts in (data.get("descriptions") or {}).items()
    }
    m = data.get("model") or {}
    try:
        model = AreaModel(
            tuple(m.get("train_from") or ()),
            int(m.get("min_rows", 3)),
            int(m.get("remove_components", 1)),
            float(m.get("min_margin", 0.06)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: model: {exc}") from None
    confidence = {k: float(v) for k, v in (data.get("confidence") or {}).items()}
    unknown = sorted(set(confidence) - set(CONFIDENCE_KINDS))
    missing = sorted(set(CONFIDENCE_KINDS) - set(confidence))
    if unknown or missing or not all(0 <= v <= 1 for v in confidence.values()):
        raise ConfigError(
            f"{path}: confidence needs a value in 0..1 for each of {', '.join(CONFIDENCE_KINDS)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            + (f" (missing: {', '.join(missing)})" if missing else "")
        )
    return AreaRules(fields, tuple(areas), default, explicit, descriptions, model, confidence)


def _tenant_list(value, slugs: set[str], where: str) -> tuple[str, ...]:
    if value in (None, []):
        return ()
    if value == "all":
        return tuple(sorted(slugs))
    items = tuple(str(v) for v in (value if isinstance(value, list) else [value]))
    for slug in items:
        if slug not in slugs:
            raise ConfigError(f"{where}: unknown tenant {slug!r}; known: {', '.join(sorted(slugs))}, or all")
    return items


def _load_tenancy(path: Path, slugs: set[str]) -> dict[str, EntityTenancy]:
    out = {}
    for entity, spec in (_read(path).get("entities") or {}).items():
        spec = spec or {}
        where = f"{path}: entities.{entity}"
        keywords = tuple(
            KeywordTenantRule(
                tuple(r["columns"]),
                tuple(Keyword.compile(str(w)) for w in r["words"]),
                _tenant_list(r["tenants"], slugs, f"{where}.keywords"),
            )
            for r in spec.get("keywords") or ()
        )
        out[entity] = EntityTenancy(
            spec.get("label_key"),
            spec.get("legacy_ids"),
            keywords,
            _tenant_list(spec.get("default"), slugs, f"{where}.default"),
        )
    return out


def load_rules(rules_dir: Path | str | None = None, tenants_file: Path | str | None = None) -> Rules:
    """Read rules/*.yaml (or another folder with the same files)."""
    folder = Path(rules_dir) if rules_dir else RULES_DIR
    tenants = load_tenants(tenants_file or folder / "tenants.yaml")
    enums = _load_enums(folder / "enums.yaml")
    if "functional_area" not in enums:
        raise ConfigError(f"{folder / 'enums.yaml'}: needs a functional_area section")
    areas = _load_areas(folder / "functional_areas.yaml", enums["functional_area"].labels)
    tenancy = _load_tenancy(folder / "tenancy.yaml", {t.slug for t in tenants.tenants})
    refs = folder / "references.yaml"
    create = {
        j: tuple((spec or {}).get("create_missing") or ()) for j, spec in (_read(refs) if refs.exists() else {}).items()
    }
    read = [tenants_file or folder / "tenants.yaml", *(folder / f"{n}.yaml" for n in RULE_FILES)]
    digest = hashlib.sha256()
    for path in map(Path, read):
        digest.update(path.read_bytes() if path.exists() else b"-")
    return Rules(tenants, enums, areas, tenancy, create, fingerprint=digest.hexdigest())


RULE_FILES = ("enums", "functional_areas", "tenancy", "references")  # what load_rules reads besides tenants
