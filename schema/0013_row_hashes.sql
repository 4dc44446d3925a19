-- A re-run writes only what changed: etl.id_map keeps, per loaded row, a hash of the values the
-- loader last wrote (vector presence included). A row whose hash is unchanged, and which is
-- still in the target, is not sent again. NULL for rows loaded before this migration: they are
-- compared once, by value, in the database, and get their hash then.
ALTER TABLE etl.id_map ADD COLUMN IF NOT EXISTS row_hash text;

-- Where a quarantined row came from: its source and row number, as the reader saw them.
ALTER TABLE etl.quarantine ADD COLUMN IF NOT EXISTS source text, ADD COLUMN IF NOT EXISTS source_row bigint;
