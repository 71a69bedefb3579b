-- Metadata attributes users attach to documents, and search filters on them.
--
-- A document's metadata is its object's S3 user metadata with its sidecar's
-- attributes laid over it (a sidecar's name wins). Both are kept apart so
-- either can change alone; `metadata` is the merge, copied to each chunk so
-- a filter runs inside the search index's scan.
ALTER TABLE upload_pipeline.documents
    ADD COLUMN object_metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN metadata        jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Sidecars (`<key>.metadata.json`) by the key of the document they describe,
-- whether or not that document has arrived yet. `error` says why the latest
-- sidecar was not applied (its attributes are then the last good ones).
CREATE TABLE upload_pipeline.metadata_sidecars (
    source_key  text PRIMARY KEY,
    tenant      text NOT NULL,
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb,
    error       text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Each chunk: its document's media type and metadata, for filters. Chunks
-- made before this migration have neither until their document is ingested
-- again or its metadata changes.
ALTER TABLE upload_pipeline.document_chunks
    ADD COLUMN content_type text,
    ADD COLUMN metadata     jsonb NOT NULL DEFAULT '{}'::jsonb;
-- For filters the planner finds selective (`metadata @> …`): then it reads
-- the few matching chunks exactly instead of walking the HNSW graph.
CREATE INDEX document_chunks_metadata_idx
    ON upload_pipeline.document_chunks USING gin (metadata jsonb_path_ops);
