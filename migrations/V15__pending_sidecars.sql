-- Sidecars `POST /v1/uploads` wrote for an upload that may never come: once
-- the upload URL has expired (`expires_at`) and no document has arrived at
-- `document_key`, the sweeper removes the sidecar. A sidecar written to the
-- bucket directly is the user's own and is never removed.
CREATE TABLE upload_pipeline.pending_sidecars (
    sidecar_key   text PRIMARY KEY,
    document_key  text NOT NULL,
    tenant        text NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX pending_sidecars_expiry_idx ON upload_pipeline.pending_sidecars (expires_at);
