-- Org structure (functions > departments > roles > responsibilities), from the Notion exports.
-- Every tenant-scoped table has: a deterministic id (uuid5 of tenant, entity, legacy key),
-- tenant_id NOT NULL, the legacy key it came from, and metadata for legacy values with no column.
-- UNIQUE (tenant_id, id) lets junction tables reference (tenant_id, id), so a link can never
-- cross tenants.
CREATE TABLE org_functions (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    legacy_key      text NOT NULL,
    name            text NOT NULL,
    description     text,
    functional_area functional_area_type,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, legacy_key),
    UNIQUE (tenant_id, id)
);

CREATE TABLE org_departments (
    id                      uuid PRIMARY KEY,
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    legacy_key              text NOT NULL,
    name                    text NOT NULL,
    description             text,
    department_type         text,
    functional_area         functional_area_type,
    data_classification     data_classification,
    compliance_requirements text[] NOT NULL DEFAULT '{}',
    critical_systems        text[] NOT NULL DEFAULT '{}',
    metadata                jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, legacy_key),
    UNIQUE (tenant_id, id)
);

CREATE TABLE org_roles (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    legacy_key      text NOT NULL,
    name            text NOT NULL,
    description     text,
    functional_area functional_area_type,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, legacy_key),
    UNIQUE (tenant_id, id)
);

CREATE TABLE org_responsibilities (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    legacy_key  text NOT NULL,
    name        text NOT NULL,
    description text,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, legacy_key),
    UNIQUE (tenant_id, id)
);
