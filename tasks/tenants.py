"""The tenants of rules/tenants.yaml written into the target's `tenants` table."""

from __future__ import annotations

import json

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.connections import connect, target_dsn
from core.retry import IO_RETRIES
from core.tenants import TenantRules, load_tenants


def upsert_tenants(conn: psycopg.Connection, rules: TenantRules) -> dict[str, str]:
    """Insert or update the tenants; a row whose values are unchanged is not touched.

    Returns {slug: 'inserted' | 'updated' | 'unchanged'}."""
    result = {}
    for t in rules.tenants:
        row = conn.execute(
            """
            INSERT INTO tenants (id, slug, name, tier, status, features, legacy_ids, metadata)
            VALUES (%(id)s, %(slug)s, %(name)s, %(tier)s, %(status)s, %(features)s, %(legacy_ids)s::uuid[],
                    %(metadata)s)
            ON CONFLICT (slug) DO UPDATE SET
                name = EXCLUDED.name, tier = EXCLUDED.tier, status = EXCLUDED.status,
                features = EXCLUDED.features, legacy_ids = EXCLUDED.legacy_ids,
                metadata = EXCLUDED.metadata, updated_at = now()
            WHERE (tenants.name, tenants.tier, tenants.status, tenants.features, tenants.legacy_ids,
                   tenants.metadata)
                  IS DISTINCT FROM
                  (EXCLUDED.name, EXCLUDED.tier, EXCLUDED.status, EXCLUDED.features, EXCLUDED.legacy_ids,
                   EXCLUDED.metadata)
            RETURNING (xmax = 0) AS inserted
            """,
            {
                "id": t.id,
                "slug": t.slug,
                "name": t.name,
                "tier": t.tier,
                "status": t.status,
                "features": json.dumps(t.features),
                "legacy_ids": list(t.legacy_ids),
                "metadata": json.dumps({"labels": list(t.labels)}),
            },
        ).fetchone()
        result[t.slug] = "unchanged" if row is None else ("inserted" if row[0] else "updated")
    return result


@task(name="upsert-tenants", cache_policy=NO_CACHE, **IO_RETRIES)
def upsert_tenant_rows(tenants_file: str | None) -> dict[str, str]:
    with connect(target_dsn(), autocommit=True) as conn:
        return upsert_tenants(conn, load_tenants(tenants_file))
