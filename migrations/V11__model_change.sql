-- Model changes: which model's vectors each tenant's searches read. A tenant
-- without a row searches the deployment's model (EMBEDDING_MODEL); during a
-- change (NEXT_EMBEDDING_*), a tenant's row names the next model from the
-- moment all its chunks hold that model's vectors, switched in the same
-- transaction as the vectors.
CREATE TABLE upload_pipeline.tenant_models (
    tenant       text PRIMARY KEY,
    model        text NOT NULL,
    switched_at  timestamptz NOT NULL DEFAULT now()
);
-- A change to another vector size keeps the next model's vectors in a
-- column of their own (`embedding_<dims>`, added by `docpipe migrate`), so
-- a chunk's vector is in one of the columns; the cache keeps vectors of any
-- size. (Neither change rewrites its table.)
ALTER TABLE upload_pipeline.document_chunks ALTER COLUMN embedding DROP NOT NULL;
ALTER TABLE upload_pipeline.embedding_cache ALTER COLUMN embedding TYPE {vector_type};
