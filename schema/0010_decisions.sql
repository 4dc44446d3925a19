-- Decisions a data engineer can check: where every inferred value came from, how sure vital-etl
-- is, and the evidence; personas linked to org roles; the review list of one tenant.

-- Where a value vital-etl decided came from, strongest first.
CREATE TYPE decision_source AS ENUM ('override', 'explicit', 'inherited', 'model', 'rule', 'default');

-- Every row that has a functional area records how it was decided.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['org_functions', 'org_departments', 'org_roles', 'capabilities', 'personas',
                             'jobs_to_be_done', 'agents', 'prompts'] LOOP
        EXECUTE format(
            'ALTER TABLE %I ADD COLUMN functional_area_source decision_source, '
            'ADD COLUMN functional_area_confidence real CHECK (functional_area_confidence BETWEEN 0 AND 1), '
            'ADD COLUMN functional_area_evidence jsonb', t);
    END LOOP;
END
$$;

-- persona <-> org role: by title, then by similarity within the same functional area
CREATE TABLE persona_roles (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    persona_id      uuid NOT NULL,
    role_id         uuid NOT NULL,
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, persona_id, role_id),
    FOREIGN KEY (tenant_id, persona_id) REFERENCES personas (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, role_id) REFERENCES org_roles (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX persona_roles_role_id_idx ON persona_roles (role_id);
ALTER TABLE persona_roles ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON persona_roles
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

-- What the last run of a tenant decided rather than read (vital-etl review export lists it,
-- lowest confidence first): inferred areas, tenants no source names, inferred links, rows
-- created for unresolved references, name matches. target_key is '' except for links.
CREATE TABLE etl.decisions (
    tenant_slug  text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('area', 'tenant', 'link', 'created', 'match')),
    entity       text        NOT NULL,
    legacy_key   text        NOT NULL,
    target_key   text        NOT NULL DEFAULT '',
    name         text,
    value        text,
    source       decision_source NOT NULL,
    confidence   real        NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    margin       real,
    evidence     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    reviewed     boolean     NOT NULL DEFAULT false,
    run_id       uuid,
    decided_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_slug, kind, entity, legacy_key, target_key)
);
CREATE INDEX decisions_tenant_confidence_idx ON etl.decisions (tenant_slug, confidence);
ALTER TABLE etl.decisions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON etl.decisions
    USING (tenant_slug = (SELECT etl.tenant_slug(current_tenant_id())))
    WITH CHECK (tenant_slug = (SELECT etl.tenant_slug(current_tenant_id())));
