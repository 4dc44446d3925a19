-- Tenants are upserted from rules/tenants.yaml by bootstrap-schema.
-- legacy_ids: the tenant/organisation ids the old data uses for this tenant.
CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    slug        text          NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]*$'),
    name        text          NOT NULL,
    tier        tenant_tier   NOT NULL DEFAULT 'professional',
    status      tenant_status NOT NULL DEFAULT 'active',
    features    jsonb         NOT NULL DEFAULT '{}'::jsonb,
    legacy_ids  uuid[]        NOT NULL DEFAULT '{}',
    metadata    jsonb         NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now()
);
