-- Indexes dropped for a bulk load (`docpipe ingest --defer-index`), kept
-- here with their definitions until they are built again, in the same
-- transactions as the DROP and the CREATE: an interrupted load cannot lose one.
CREATE TABLE upload_pipeline.deferred_indexes (
    name        text PRIMARY KEY,
    definition  text NOT NULL,
    deferred_at timestamptz NOT NULL DEFAULT now()
);
