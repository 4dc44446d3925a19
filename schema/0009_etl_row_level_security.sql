-- Row Level Security for the etl tables that hold tenant data, and the tenant taken from the JWT.
--
-- etl.runs, etl.quarantine (refused rows with their payloads) and etl.id_map belong to one tenant
-- each: a role granted SELECT on them sees only the current tenant's rows, as in the catalogue.
-- They are keyed by tenant slug; etl.tenant_slug() maps current_tenant_id() onto it.
-- etl.embedding_cache (content-addressed vectors shared by tenants) and etl.schema_migrations hold
-- no tenant data and stay shared. The loader owns the tables, so RLS does not restrict it.

-- The tenant_id claim of Supabase's request JWT wins over app.tenant_id. Members of the role
-- vital_tenant_from_jwt (when it exists) take the tenant from the JWT only, so SET app.tenant_id
-- chooses nothing for them. To turn that on for the API roles:
--   CREATE ROLE vital_tenant_from_jwt NOLOGIN;
--   GRANT vital_tenant_from_jwt TO authenticated, anon;
CREATE OR REPLACE FUNCTION current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'tenant_id', ''),
        CASE WHEN coalesce(pg_has_role(current_user, to_regrole('vital_tenant_from_jwt'), 'MEMBER'), false)
             THEN NULL
             ELSE nullif(current_setting('app.tenant_id', true), '')
        END
    )::uuid
$$;

-- The slug of a tenant id, readable by roles that cannot read the tenants table.
DO $$
BEGIN
    EXECUTE format(
        'CREATE FUNCTION etl.tenant_slug(tenant uuid) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER '
        'SET search_path = pg_catalog, pg_temp AS %L',
        format('SELECT slug FROM %I.tenants WHERE id = tenant', current_schema()));
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['etl.runs', 'etl.quarantine', 'etl.id_map'] LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %s '
            'USING (tenant_slug = (SELECT etl.tenant_slug(current_tenant_id()))) '
            'WITH CHECK (tenant_slug = (SELECT etl.tenant_slug(current_tenant_id())))', t);
    END LOOP;
END
$$;

-- A run records the process that runs it, so a later run can tell one whose process died
-- (SIGKILL, a lost machine) and mark it abandoned.
ALTER TABLE etl.runs
    ADD COLUMN host      text,
    ADD COLUMN pid       integer,
    ADD COLUMN pid_start bigint,
    DROP CONSTRAINT runs_status_check,
    ADD CONSTRAINT runs_status_check CHECK (status IN ('running', 'completed', 'failed', 'abandoned'));
