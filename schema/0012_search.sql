-- Filtered vector search that works per tenant, and Row Level Security evaluated once per query.
--
-- 1. Policies in the initplan form: `tenant_id = (SELECT current_tenant_id())` is evaluated once
--    per query instead of once per row (the form Supabase's linter asks for). Every policy of the
--    catalogue and etl schemas that calls current_tenant_id() is rewritten in place.
-- 2. pgvector's iterative index scan (0.8+): an HNSW scan visits hnsw.ef_search candidates and the
--    RLS filter runs after it, so a tenant owning a small share of a table got fewer than k rows.
--    With iterative_scan the scan goes on until k rows pass the filter (relaxed_order: re-sort in
--    the query if strict order matters). Set as defaults of this database when the bootstrapping
--    role owns it; on Supabase set them for the API roles too (README "Vector search").
DO $$
DECLARE
    p record;
    qual text;
    chk text;
BEGIN
    FOR p IN
        SELECT pol.polname, c.oid::regclass AS tbl, pg_get_expr(pol.polqual, pol.polrelid) AS qual,
               pg_get_expr(pol.polwithcheck, pol.polrelid) AS chk
        FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid
        WHERE c.relnamespace IN (current_schema()::regnamespace, to_regnamespace('etl'))
          AND pg_get_expr(pol.polqual, pol.polrelid) LIKE '%current_tenant_id()%'
          AND pg_get_expr(pol.polqual, pol.polrelid) NOT LIKE '%SELECT current_tenant_id()%'
        ORDER BY 2, 1
    LOOP
        qual := replace(p.qual, 'current_tenant_id()', '(SELECT current_tenant_id())');
        chk := replace(p.chk, 'current_tenant_id()', '(SELECT current_tenant_id())');
        EXECUTE format('ALTER POLICY %I ON %s USING (%s)', p.polname, p.tbl, qual)
            || CASE WHEN chk IS NULL THEN '' ELSE format(' WITH CHECK (%s)', chk) END;
    END LOOP;
END
$$;

DO $$
BEGIN
    IF pg_has_role(current_user, (SELECT datdba FROM pg_database WHERE datname = current_database()), 'MEMBER')
    THEN
        EXECUTE format('ALTER DATABASE %I SET hnsw.iterative_scan = %L', current_database(), 'relaxed_order');
        EXECUTE format('ALTER DATABASE %I SET hnsw.ef_search = %L', current_database(), '100');
    ELSE
        RAISE NOTICE 'not the owner of database %: set hnsw.iterative_scan = relaxed_order and '
                     'hnsw.ef_search = 100 for the application roles (README "Vector search")', current_database();
    END IF;
END
$$;
