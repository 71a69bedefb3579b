-- docpipe schema. `{embedding_dims}` is replaced with the configured
-- EMBEDDING_DIMS (a validated integer) when `docpipe migrate` applies this file.

CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS upload_pipeline;

-- One row per (tenant, key): the thing users search and delete.
CREATE TABLE upload_pipeline.documents (
    id             uuid PRIMARY KEY,
    tenant         text NOT NULL,
    source_key     text NOT NULL,
    -- The job for the newest content seen; older jobs are superseded by it.
    latest_job_id  uuid,
    -- The job whose chunks are in document_chunks.
    live_job_id    uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, source_key)
);

-- One row per (document, content): processing of one version of a document.
CREATE TABLE upload_pipeline.upload_jobs (
    id               uuid PRIMARY KEY,
    document_id      uuid NOT NULL REFERENCES upload_pipeline.documents (id) ON DELETE CASCADE,
    tenant           text NOT NULL,
    source_key       text NOT NULL,
    content_sha256   text NOT NULL,
    size_bytes       bigint NOT NULL,
    state            text NOT NULL,
    error_code       text,
    error_message    text,
    parsed_key       text,
    parsed_chars     bigint,
    chunk_count      integer,
    embedded_chunks  integer NOT NULL DEFAULT 0,
    token_count      bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    state_changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT upload_jobs_state_known CHECK (
        state IN ('queued', 'parsed', 'chunked', 'complete', 'failed', 'superseded'))
);
CREATE INDEX upload_jobs_state_idx ON upload_pipeline.upload_jobs (state, state_changed_at);
CREATE INDEX upload_jobs_document_idx ON upload_pipeline.upload_jobs (document_id);
CREATE INDEX upload_jobs_tenant_idx ON upload_pipeline.upload_jobs (tenant, created_at);

-- Audit trail: every state move and notable action, written in the same
-- transaction as the change it describes.
CREATE TABLE upload_pipeline.events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      uuid NOT NULL REFERENCES upload_pipeline.upload_jobs (id) ON DELETE CASCADE,
    from_state  text,
    to_state    text,
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_job_idx ON upload_pipeline.events (job_id, id);

-- Chunks of a job before their vectors exist. Emptied when the job finalizes.
CREATE TABLE upload_pipeline.document_chunk_buffer (
    job_id       uuid NOT NULL REFERENCES upload_pipeline.upload_jobs (id) ON DELETE CASCADE,
    chunk_index  integer NOT NULL,
    chunk_id     uuid NOT NULL UNIQUE,
    text         text NOT NULL,
    text_sha256  bytea NOT NULL,
    token_count  integer NOT NULL,
    char_start   integer NOT NULL,
    char_end     integer NOT NULL,
    PRIMARY KEY (job_id, chunk_index)
);

-- Vectors of a job's chunks, one row per chunk. Emptied when the job finalizes.
CREATE TABLE upload_pipeline.document_vector_buffer (
    job_id       uuid NOT NULL REFERENCES upload_pipeline.upload_jobs (id) ON DELETE CASCADE,
    chunk_index  integer NOT NULL,
    embedding    {vector_type}({embedding_dims}) NOT NULL,
    model        text NOT NULL,
    PRIMARY KEY (job_id, chunk_index)
);

-- The searchable chunks of each document's live job.
CREATE TABLE upload_pipeline.document_chunks (
    chunk_id     uuid PRIMARY KEY,
    document_id  uuid NOT NULL REFERENCES upload_pipeline.documents (id) ON DELETE CASCADE,
    job_id       uuid NOT NULL,
    tenant       text NOT NULL,
    source_key   text NOT NULL,
    chunk_index  integer NOT NULL,
    text         text NOT NULL,
    token_count  integer NOT NULL,
    char_start   integer NOT NULL,
    char_end     integer NOT NULL,
    model        text NOT NULL,
    embedding    {vector_type}({embedding_dims}) NOT NULL,
    UNIQUE (document_id, chunk_index)
);
CREATE INDEX document_chunks_tenant_idx ON upload_pipeline.document_chunks (tenant, model);
CREATE INDEX document_chunks_embedding_idx
    ON upload_pipeline.document_chunks USING hnsw (embedding {vector_ops});

-- Vectors already paid for, reused across jobs and tenants by text hash.
CREATE TABLE upload_pipeline.embedding_cache (
    text_sha256  bytea NOT NULL,
    model        text NOT NULL,
    dims         integer NOT NULL,
    embedding    {vector_type}({embedding_dims}) NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (text_sha256, model, dims)
);

-- What each job spent at external services, per tenant and day.
CREATE TABLE upload_pipeline.cost_ledger (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    day         date NOT NULL DEFAULT current_date,
    tenant      text NOT NULL,
    job_id      uuid NOT NULL,
    service     text NOT NULL,
    model       text NOT NULL,
    units       bigint NOT NULL,
    unit        text NOT NULL,
    usd         numeric(14, 6) NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cost_ledger_day_idx ON upload_pipeline.cost_ledger (day, tenant);
CREATE INDEX cost_ledger_job_idx ON upload_pipeline.cost_ledger (job_id);
