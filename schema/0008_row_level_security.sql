-- Row Level Security: a row is visible (and writable) only when its tenant is the session's
-- current tenant. current_tenant_id() reads the setting app.tenant_id (SET app.tenant_id = '<uuid>'),
-- or, on Supabase, the tenant_id claim of the request's JWT (request.jwt.claims). With neither
-- set it is NULL and nothing is visible. The table owner (the loader) is not subject to RLS.
CREATE FUNCTION current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(current_setting('app.tenant_id', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'tenant_id'
    )::uuid
$$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = current_tenant_id())
    WITH CHECK (id = current_tenant_id());

-- Every table of this schema with a tenant_id column gets the same policy.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN
        SELECT c.oid::regclass
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
        WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
        ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %s '
            'USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id())', t);
    END LOOP;
END
$$;
