-- A sync may take its listing from an S3 Inventory report instead of
-- ListObjectsV2 (buckets of tens of millions of objects). The report's
-- files are loaded, one per slice, into `sync_inventory` (its rows under
-- the sync's prefix only), which is then read in key order as a listing
-- is. `inventory_files`: the report's files loaded so far. `listed_at`:
-- when the report was taken; no document written after it is removed.
ALTER TABLE upload_pipeline.syncs
    ADD COLUMN inventory text,
    ADD COLUMN inventory_files integer NOT NULL DEFAULT 0,
    ADD COLUMN listed_at timestamptz;

-- Logged: a listing lost in a crash would read as every object deleted.
CREATE TABLE upload_pipeline.sync_inventory (
    sync_id  uuid NOT NULL REFERENCES upload_pipeline.syncs (id) ON DELETE CASCADE,
    key      text COLLATE "C" NOT NULL,
    size     bigint NOT NULL,
    etag     text NOT NULL,
    PRIMARY KEY (sync_id, key)
);
