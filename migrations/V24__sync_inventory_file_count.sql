-- How many files an inventory sync's report has, recorded at its start, so
-- that once they are all staged its slices list without reading the
-- manifest again.
ALTER TABLE upload_pipeline.syncs ADD COLUMN inventory_file_count integer NOT NULL DEFAULT 0;
