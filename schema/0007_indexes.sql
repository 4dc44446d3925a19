-- Lookup indexes (btree for filters and joins, GIN for array and jsonb containment).
-- Vector (HNSW) indexes are not here: the loader builds them after a bulk load.
CREATE INDEX agents_functional_area_idx      ON agents (tenant_id, functional_area);
CREATE INDEX agents_status_idx               ON agents (tenant_id, status);
CREATE INDEX agents_metadata_idx             ON agents USING gin (metadata jsonb_path_ops);
CREATE INDEX personas_functional_area_idx    ON personas (tenant_id, functional_area);
CREATE INDEX jtbd_functional_area_idx        ON jobs_to_be_done (tenant_id, functional_area);
CREATE INDEX jtbd_code_idx                   ON jobs_to_be_done (tenant_id, code);
CREATE INDEX prompts_category_idx            ON prompts (tenant_id, category);
CREATE INDEX prompts_tags_idx                ON prompts USING gin (tags);
CREATE INDEX prompts_metadata_idx            ON prompts USING gin (metadata jsonb_path_ops);
CREATE INDEX tools_tags_idx                  ON tools USING gin (tags);
CREATE INDEX capabilities_category_idx       ON capabilities (tenant_id, category);
CREATE INDEX knowledge_domains_parent_idx    ON knowledge_domains (parent_id);
CREATE INDEX knowledge_documents_domain_idx  ON knowledge_documents (domain_id);
CREATE INDEX knowledge_chunks_document_idx   ON knowledge_chunks (document_id);
-- Finds rows whose embedding is missing or stale (backfill-embeddings).
CREATE INDEX agents_content_sha_idx          ON agents (content_sha256);
CREATE INDEX personas_content_sha_idx        ON personas (content_sha256);
CREATE INDEX jtbd_content_sha_idx            ON jobs_to_be_done (content_sha256);
CREATE INDEX prompts_content_sha_idx         ON prompts (content_sha256);
CREATE INDEX tools_content_sha_idx           ON tools (content_sha256);
CREATE INDEX capabilities_content_sha_idx    ON capabilities (content_sha256);
CREATE INDEX knowledge_chunks_content_sha_idx ON knowledge_chunks (content_sha256);
