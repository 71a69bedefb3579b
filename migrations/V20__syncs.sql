-- Syncs of a tenant's folder (or a prefix of it) against its documents
-- (`docpipe sync`, `POST /v1/syncs`, Bedrock's StartIngestionJob): each is
-- worked a listing page at a time, `cursor` the last key listed, so a sync
-- resumes after any kill where it stopped; `counts` are Bedrock's
-- ingestion-job statistics so far. One sync of a scope runs at a time (and
-- one dry run, which changes nothing).
CREATE TABLE upload_pipeline.syncs (
    id                 uuid PRIMARY KEY,
    tenant             text NOT NULL,
    prefix             text NOT NULL,
    knowledge_base_id  text,
    data_source_id     text,
    dry_run            boolean NOT NULL DEFAULT false,
    state              text NOT NULL DEFAULT 'running'
                       CHECK (state IN ('running', 'complete', 'failed')),
    cursor             text,
    counts             jsonb NOT NULL DEFAULT '{}'::jsonb,
    error              text,
    started_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz
);
CREATE UNIQUE INDEX syncs_one_running_per_scope
    ON upload_pipeline.syncs (tenant, prefix, dry_run) WHERE state = 'running';
CREATE INDEX syncs_by_tenant ON upload_pipeline.syncs (tenant, started_at DESC);
