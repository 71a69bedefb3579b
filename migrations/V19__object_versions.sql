-- What a sync compares a bucket's listing with: the version (S3 ETag) of
-- each document's object and of each sidecar as last read. NULL: not known
-- yet (rows from before this migration): the next sync reads them once.
ALTER TABLE upload_pipeline.documents ADD COLUMN object_version text;
ALTER TABLE upload_pipeline.metadata_sidecars ADD COLUMN object_version text;
-- A sync walks a tenant's keys in byte order, as S3 lists them.
CREATE INDEX documents_tenant_key_bytes_idx
    ON upload_pipeline.documents (tenant, source_key COLLATE "C");
