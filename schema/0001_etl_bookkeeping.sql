-- Bookkeeping for the ETL itself: runs, quarantined rows, the content-addressed
-- embedding cache and the legacy-key -> target-id map. (etl.schema_migrations,
-- the ledger, is created by the migration runner before any file is applied.)
CREATE SCHEMA IF NOT EXISTS etl;

CREATE TABLE etl.runs (
    id            uuid PRIMARY KEY,
    flow          text        NOT NULL,
    tenant_slug   text,
    parameters    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    counts        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status        text        NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'completed', 'failed')),
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX runs_tenant_started_idx ON etl.runs (tenant_slug, started_at DESC);

CREATE TABLE etl.quarantine (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        uuid REFERENCES etl.runs (id) ON DELETE CASCADE,
    tenant_slug   text,
    entity        text        NOT NULL,
    legacy_key    text,
    reason        text        NOT NULL,
    payload       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantine_tenant_entity_idx ON etl.quarantine (tenant_slug, entity);
CREATE INDEX quarantine_run_idx ON etl.quarantine (run_id);

-- Content-addressed: one vector per (model, sha256 of the embedded text), shared by tenants.
CREATE TABLE etl.embedding_cache (
    model          text        NOT NULL,
    content_sha256 text        NOT NULL,
    embedding      vector({{embedding_dim}}) NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, content_sha256)
);

CREATE TABLE etl.id_map (
    tenant_slug   text        NOT NULL,
    entity        text        NOT NULL,
    legacy_key    text        NOT NULL,
    id            uuid        NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_slug, entity, legacy_key)
);
CREATE INDEX id_map_id_idx ON etl.id_map (id);
