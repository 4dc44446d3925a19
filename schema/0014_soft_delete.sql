-- Soft delete: migrate-tenant with prune="soft" hides the rows the sources no longer have
-- instead of deleting them (tasks/prune.py). Every tenant-scoped table gets `deleted_at`
-- (NULL: live): the catalogue tables, the chunks of a hidden document and the junction rows
-- of a hidden row are hidden with it, so neither a vector search nor a link leads to it.
--
-- Row Level Security hides a row whose deleted_at is set: the tenant_isolation policy of each
-- table now also requires `deleted_at IS NULL` (in the initplan form of 0012_search.sql, the
-- current tenant evaluated once per query). WITH CHECK is unchanged. The table owner (the
-- loader) is not subject to RLS and keeps seeing the row; when the row is in the sources
-- again, the loader's upsert sets deleted_at back to NULL.
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
        EXECUTE format('ALTER TABLE %s ADD COLUMN deleted_at timestamptz', t);
        EXECUTE format(
            'ALTER POLICY tenant_isolation ON %s '
            'USING (tenant_id = (SELECT current_tenant_id()) AND deleted_at IS NULL)', t);
    END LOOP;
END
$$;
