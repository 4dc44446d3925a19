"""rules/tenants.yaml: the two VITAL tenants, their legacy ids, and clear errors."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.identity import tenant_id
from core.tenants import load_tenants


def test_bundled_tenants():
    rules = load_tenants()
    assert [(t.slug, t.name) for t in rules.tenants] == [
        ("digital-health", "Digital Health Startups"),
        ("pharma", "Pharmaceuticals"),
    ]
    assert rules.by_slug("digital-health").legacy_ids == (
        "11111111-1111-1111-1111-111111111111",
        "590d9e40-b628-4678-8cec-839d0b4fe968",
        "684f6c2c-b50d-4726-ad92-c76c3b785a89",
    )
    assert rules.by_slug("pharma").legacy_ids == (
        "22222222-2222-2222-2222-222222222222",
        "f7aa6fd4-0af9-4706-8b31-034f1f7accda",
        "c6d221f8-1e8d-4dd9-86c5-d640ad6bf30b",
    )
    assert rules.platform_legacy_ids == ("00000000-0000-0000-0000-000000000000", "c1977eb4-cb2e-4cf7-8cf8-4ac71e27a244")
    assert rules.by_slug("pharma").id == tenant_id("pharma") != tenant_id("digital-health")


@pytest.mark.parametrize(
    "text, message",
    [
        ("tenants: []", "needs a non-empty list under 'tenants:'"),
        ("tenants: [{slug: a}]", "tenants[0]: each tenant needs 'slug' and 'name'"),
        (
            "tenants: [{slug: Bad_Slug, name: x}]",
            "tenants[0]: slug 'Bad_Slug' must be lower-case letters, digits and '-'",
        ),
        (
            "tenants: [{slug: a, name: x, tier: gold}]",
            "tenants[0]: tier 'gold' is not one of free, starter, professional, enterprise",
        ),
        ("tenants: [{slug: a, name: x, legacy_ids: [nope]}]", "tenants[0].legacy_ids: 'nope' is not a UUID"),
        (
            "tenants: [{slug: a, name: x, legacy_ids: ['11111111-1111-1111-1111-111111111111']},"
            " {slug: b, name: y, legacy_ids: ['11111111-1111-1111-1111-111111111111']}]",
            "tenants[1]: legacy id 11111111-1111-1111-1111-111111111111 is already used by tenant 'a'",
        ),
        ("tenants: [{slug: a, name: x}, {slug: a, name: y}]", "duplicate tenant slugs in ['a', 'a']"),
        ("tenants: [", "not valid YAML"),
    ],
)
def test_invalid_tenant_files_are_named(tmp_path, text, message):
    path = tmp_path / "tenants.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_tenants(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_unknown_tenant_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"^unknown tenant 'acme'; known: digital-health, pharma$"):
        load_tenants().by_slug("acme")
